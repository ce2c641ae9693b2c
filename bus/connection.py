"""Connecting to NATS, and announcing and discovering components as NATS micro services.

A connection, once made, reconnects forever with jittered back-off capped at RECONNECT_CAP: an
outage of any length ends for every component within about a second of the server's return.
nats-py still closes a connection for good on some server errors; `fail_when_closed` turns that
into the end of the service, so its supervisor restarts it instead of leaving it alive and deaf.

A connection made with a credential file (bus/credentials.py) uses its identity's own inbox prefix.
A server that refuses the credential ends the connection for good, at once and without a storm
of attempts: waiting cannot cure it. A request the server's permissions deny does not wait for its
timeout either: nats-server says so asynchronously (`-ERR 'Permissions Violation for Publish to
"..."'`), and `request` races the reply against that error for its subject (`Denied`).

Every component registers a micro service (`steer-api`, `steer-scheduler`, ...), so standard NATS
tooling (`nats micro ls`) and `steer status` can list, ping and read the stats of each live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.client import Server
from nats.aio.transport import TcpTransport
from nats.micro.service import Service, ServiceConfig

from bus import credentials as bus_credentials
from bus import subjects, tlsclient
from bus.backoff import Backoff
from bus.errors import Forbidden, Unavailable

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
VERSION = "0.1.0"

# Reconnecting: the first attempt within RECONNECT_FIRST of a drop, then doubling, never more than
# RECONNECT_CAP apart, so a component is back within about a second of its server's return.
RECONNECT_FIRST = 0.05
RECONNECT_CAP = 1.0
WAIT_CAP = 1.0  # the same for a service waiting for its first connection
# A link that died silently (no reset from the peer) is noticed after this many unanswered pings.
PING_INTERVAL = 5
MAX_OUTSTANDING_PINGS = 3


@dataclass(frozen=True)
class Credentials:
    """How to authenticate: a .creds file, a user/password pair, or a token (all optional);
    and `tls`, the CA that verifies the servers and the client certificate (bus/tlsclient.py)."""

    creds_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: tlsclient.TlsOptions = tlsclient.TlsOptions()


_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE)


class Denied(Forbidden):
    """The server's permissions refused a publish or a subscription of this connection."""

    def __init__(self, identity: str, action: str, subject: str) -> None:
        who = f'user "{identity}"' if identity else "this connection"
        verb = "publish to" if action == "publish" else "subscribe to"
        super().__init__(f'{who} may not {verb} "{subject}"')
        self.identity = identity
        self.action = action
        self.subject = subject


def _is_refusal(err: BaseException) -> bool:
    """Whether `err` is the server refusing who we are (not a permission on one subject)."""
    return isinstance(err, nats.errors.AuthorizationError) or "authorization violation" in str(err).lower()


class Link:
    """What the users of one connection learn of its state.

    nats-py takes one callback per connection event; a process has many users of its connection
    (every watch, the node agent's feeds, the node lifecycle controller), so the connection's
    callbacks are fanned out here. `generation` counts reconnects: a watch that saw generation N
    and finds N+1 knows its server-side consumer may be gone. `closed` is set when the connection
    is closed for good: by `close()` (`deliberate`), or by nats-py after a server error such as
    "Maximum Control Line Exceeded" or an authorization violation, after which it never
    reconnects (`reason` says why).
    """

    def __init__(self) -> None:
        self.generation = 0
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.deliberate = False
        self.reason = ""
        self.identity = ""  # from the credential file, if any
        self._on_reconnect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self._on_close: list[Callable[[], None]] = []

    def on_reconnect(self, handler: Callable[[], None]) -> None:
        """`handler()` after every reconnect; it must be quick (set a flag, wake a task)."""
        self._on_reconnect.append(handler)

    def on_disconnect(self, handler: Callable[[], None]) -> None:
        self._on_disconnect.append(handler)

    def on_close(self, handler: Callable[[], None]) -> None:
        """`handler()` once, when the connection is closed for good."""
        self._on_close.append(handler)

    def forget(self, handler: Callable[[], None]) -> None:
        """Stop telling `handler` anything (a watch that ended)."""
        for handlers in (self._on_reconnect, self._on_disconnect, self._on_close):
            with contextlib.suppress(ValueError):
                handlers.remove(handler)

    def _tell(self, handlers: list[Callable[[], None]]) -> None:
        for handler in list(handlers):
            try:
                handler()
            except Exception:  # one user's bug must not stop the others hearing of it
                log.exception("connection state handler failed")

    def reconnected(self) -> None:
        self.generation += 1
        self.connected.set()
        self._tell(self._on_reconnect)

    def disconnected(self) -> None:
        self.connected.clear()
        self._tell(self._on_disconnect)

    def closed_for_good(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.reason = reason
        self.connected.clear()
        self.closed.set()
        self._tell(self._on_close)


_links: weakref.WeakKeyDictionary[NATS, Link] = weakref.WeakKeyDictionary()


def link(nc: NATS) -> Link:
    """The state of connection `nc` (one made elsewhere gets a Link that never changes)."""
    found = _links.get(nc)
    if found is None:
        found = _links[nc] = Link()
        if nc.is_connected:
            found.connected.set()
    return found


class ConnectionClosed(Unavailable):
    """The connection is closed for good: nothing sent over it will ever work again, so retrying
    is pointless (a service ends, for its supervisor to start it again)."""

    def __init__(self, state: Link) -> None:
        super().__init__(f"the connection to NATS was closed for good ({state.reason})")


class _NotConnected(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def connect(
    servers: str | list[str] = DEFAULT_URL,
    *,
    name: str,
    credentials: Credentials | None = None,
    connect_timeout: float = 5.0,
    wait: bool = False,
    ping_interval: float = PING_INTERVAL,
    max_outstanding_pings: int = MAX_OUTSTANDING_PINGS,
) -> NATS:
    """A connection that reconnects forever once established.

    Without `wait` (the CLI), a clear Unavailable error if no server answers now. With `wait` (a
    service started before its bus), one log line, then attempts with back-off until a server
    answers; only a refused authorization is an error then, since waiting cannot cure it.

    A link that dies silently is given up, and a new connection tried, when a ping is due and
    `max_outstanding_pings` pings sent every `ping_interval` seconds are unanswered.
    """
    urls = [s.strip() for s in servers.split(",")] if isinstance(servers, str) else servers
    where = ", ".join(urls)
    creds = credentials or Credentials()
    # Read (and checked) once: a missing or malformed file is the caller's error, named, at once.
    credential = bus_credentials.load(creds.creds_file) if creds.creds_file else None
    backoff = Backoff(first=0.1, cap=WAIT_CAP)
    waiting = False
    while True:
        try:
            pings = (ping_interval, max_outstanding_pings)
            nc = await _connect_once(urls, name, creds, credential, connect_timeout, pings)
        except _NotConnected as failed:
            if _is_refusal(failed.cause):
                raise bus_credentials.CredentialsError(_refused(where, credential)) from None
            message = f"cannot connect to NATS at {where}: {_describe(failed.cause)}"
            if not wait or _cannot_cure(failed.cause):
                raise Unavailable(message) from None
            if not waiting:
                log.warning("%s; waiting for it (retrying every %gs at most)", message, WAIT_CAP)
                waiting = True
            await asyncio.sleep(backoff.next())
            continue
        if waiting:
            log.info("connected to NATS at %s", where)
        return nc


def _refused(where: str, credential: bus_credentials.Credential | None) -> str:
    if credential is None:
        return (
            f"NATS at {where} refused an anonymous connection: it requires credentials "
            "(--creds FILE or STEER_CREDS)"
        )
    return (
        f"NATS at {where} refused the credentials in {credential.path} "
        f'(identity "{credential.identity}"): wrong, or revoked'
    )


async def _connect_once(
    urls: list[str],
    name: str,
    creds: Credentials,
    credential: bus_credentials.Credential | None,
    connect_timeout: float,
    pings: tuple[float, int],
) -> NATS:
    nc = _Connection()
    state = Link()
    state.identity = credential.identity if credential else ""
    failures: list[BaseException] = []
    reconnecting = Backoff(first=RECONNECT_FIRST, cap=RECONNECT_CAP)

    def next_server(servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        # The server tried least often since it last answered (the pool is shuffled, so ties
        # spread), after a jittered delay: a cluster's clients do not all knock at once, and no
        # wait is ever longer than RECONNECT_CAP, however long the outage.
        return min(servers, key=lambda s: s.reconnects), reconnecting.next()

    async def on_reconnected() -> None:
        log.info("reconnected to NATS at %s", _url(nc))
        state.reconnected()

    async def on_disconnected() -> None:
        reconnecting.reset()
        if not nc.is_closed:
            log.warning("disconnected from NATS; reconnecting")
        state.disconnected()

    async def on_closed() -> None:
        error = nc.last_error
        if error is not None and _is_refusal(error) or refused:
            state.closed_for_good(_refused(", ".join(urls), credential))
        else:
            state.closed_for_good(_describe(error) if error is not None else "closed")

    refused: list[BaseException] = []

    async def on_error(err: Exception) -> None:
        failures.append(err)
        del failures[:-5]
        if _is_refusal(err):
            refused.append(err)
            # Once connected, nats-py would retry a refused credential forever. One more
            # round over the servers at most (the refusal may have been one server's), then
            # the connection closes for good and says why.
            nc.options["max_reconnect_attempts"] = 1
            log.error("%s", _refused(", ".join(urls), credential))
            # nats-py leaves the socket of a refused attempt open (it warns when collected).
            transport = getattr(nc, "_transport", None)
            if transport is not None:
                transport.close()
            return
        if (violation := _VIOLATION.search(str(err))) is not None:
            nc.denied(violation.group(1).lower(), violation.group(2))
            log.warning("%s", Denied(state.identity, violation.group(1).lower(), violation.group(2)).message)
            return
        log.debug("nats: %r", err)

    options: dict[str, Any] = {
        "servers": urls,
        "name": name,
        "connect_timeout": connect_timeout,
        "allow_reconnect": True,
        # One round over the servers for the first connection (see below for afterwards).
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
        "reconnect_to_server_handler": next_server,
        "ping_interval": pings[0],
        "max_outstanding_pings": pings[1],
        **(credential.connect_options() if credential else {}),
        "user": creds.user,
        "password": creds.password,
        "token": creds.token,
        "reconnected_cb": on_reconnected,
        "disconnected_cb": on_disconnected,
        "closed_cb": on_closed,
        "error_cb": on_error,
    }
    if creds.tls.given:
        options["tls"] = tlsclient.context(creds.tls)
        if creds.tls.hostname:
            options["tls_hostname"] = creds.tls.hostname
    nc.tls_asked = tlsclient.wanted(creds.tls, urls)
    nc.tls_client_cert = bool(creds.tls.cert_file)
    try:
        # Bounded: a server that accepts but never answers must not hold us forever.
        await asyncio.wait_for(nc.connect(**options), timeout=2 * connect_timeout + 1.0)
    except (TimeoutError, OSError, nats.errors.Error) as err:
        with contextlib.suppress(Exception):
            await nc.close()
        refusal = [f for f in (err, *failures) if _is_refusal(f)]
        cause = refusal[0] if refusal else err if not failures else failures[-1]
        raise _NotConnected(cause) from None
    # Connected: from now on nats-py reconnects forever, pacing itself by `next_server`.
    nc.options["max_reconnect_attempts"] = -1
    _links[nc] = state
    state.connected.set()
    return nc


class TlsNotOffered(nats.errors.Error):
    def __str__(self) -> str:
        return "TLS was asked for (tls:// or --tls-* options) but the server does not require TLS"


class TlsMisfit(nats.errors.Error):
    """A TLS handshake that failed, in words (bus/tlsclient.py); `curable` if waiting may help
    (the link broke), not when a certificate does not fit."""

    def __init__(self, why: str, *, curable: bool) -> None:
        super().__init__(why)
        self.why = why
        self.curable = curable

    def __str__(self) -> str:
        return self.why


class _Connection(NATS):
    """nats-py's client with one fix. A flush waits for a PONG; if the flush is cancelled first
    (the task that flushed was stopped, or nats-py's own reconnect was), its waiter stays queued,
    and the PONG that later answers it raised InvalidStateError in the read loop, which then ended:
    the connection stayed up but read nothing until three pings had gone unanswered (about 15 s),
    and a stopping service waited out its drain. (nats.py #624 is the same fault in the flusher.)
    Every PONG still answers the oldest ping, waited for or not.

    And one addition: a request denied by the server's permissions fails at once with `Denied`
    (the server's asynchronous `-ERR` for its subject), instead of waiting out its timeout."""

    def __init__(self) -> None:
        super().__init__()
        self._denial_waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    def denied(self, action: str, subject: str) -> None:
        """The server refused `action` ("publish" or "subscription") on `subject`."""
        # nats-py lowercases the server's error message, subject included.
        for waiter in self._denial_waiters.pop((action, subject.lower()), []):
            if not waiter.done():
                waiter.set_result(None)

    @contextlib.contextmanager
    def watching_denial(self, action: str, subject: str) -> Iterator[asyncio.Future[None]]:
        """A future set if the server denies `action` on `subject` while the block runs."""
        key = (action, subject.lower())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._denial_waiters.setdefault(key, []).append(waiter)
        try:
            yield waiter
        finally:
            waiters = self._denial_waiters.get(key, [])
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                self._denial_waiters.pop(key, None)
            waiter.cancel()

    async def request(self, subject: str, *args: Any, **kwargs: Any) -> Any:
        with self.watching_denial("publish", subject) as denial:
            asking = asyncio.ensure_future(super().request(subject, *args, **kwargs))
            try:
                await asyncio.wait((asking, denial), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not asking.done():
                    asking.cancel()
                    await asyncio.wait((asking,))  # its end, without swallowing our own cancellation
            if asking.done() and not asking.cancelled():
                return asking.result()
            raise Denied(link(self).identity, "publish", subject)

    async def _process_pong(self) -> None:
        if self._pongs:
            future = self._pongs.pop(0)
            if not future.done():
                future.set_result(True)
            self._pongs_received += 1
            self._pings_outstanding = 0

    # -- TLS: whether it was asked for, and with a client certificate (set by _connect_once)
    tls_asked = False
    tls_client_cert = False

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        """With TLS asked for, a server that does not offer it is refused before anything
        (credentials above all) is sent in plain text: nats-py upgrades a connection only when
        the server requires TLS, and otherwise carries on unencrypted, whatever the URL said."""
        if initial_connection and self.tls_asked and not info.get("tls_required"):
            raise TlsNotOffered()
        await super()._process_info(info, initial_connection)

    async def _process_connect_init(self) -> None:
        """A failed TLS handshake fails the attempt, in words, instead of hanging it.

        asyncio closes the socket when `start_tls` fails, but tells the TLS protocol it had
        swapped in, not the stream the transport still holds, so nats-py's `wait_closed` on that
        stream never returned: a client without the right CA hung for good instead of hearing
        "certificate verify failed". The stream is closed here and dropped, so nothing waits on it.
        """
        try:
            await super()._process_connect_init()
        except (OSError, TimeoutError) as err:
            transport = self._transport
            if isinstance(transport, TcpTransport):
                with contextlib.suppress(Exception):
                    transport.close()
                transport._io_writer = transport._io_reader = None
            why = tlsclient.explain(err, asked=self.tls_asked, client_cert=self.tls_client_cert)
            if why is None:
                raise
            raise TlsMisfit(why, curable=not tlsclient.cannot_cure(err)) from err


def _cannot_cure(err: BaseException) -> bool:
    """A refused authorization, or TLS that does not fit: no amount of waiting changes them."""
    if isinstance(err, TlsMisfit):
        return not err.curable
    return isinstance(err, nats.errors.AuthorizationError | TlsNotOffered)


def _describe(err: BaseException) -> str:
    return str(err).strip() or type(err).__name__


def _url(nc: NATS) -> str:
    url = nc.connected_url
    return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else "?"


async def subscribe_checked(nc: NATS, subject: str, **options: Any) -> Any:
    """Subscribe, and make sure the server took it: Denied at once if its permissions refuse
    it (a plain subscribe would just never receive anything). A blip of the bus meanwhile is no
    failure: the subscription stands, and nats-py makes it again after the reconnect."""
    if not isinstance(nc, _Connection):
        return await nc.subscribe(subject, **options)
    with nc.watching_denial("subscription", subject) as denial:
        sub = await nc.subscribe(subject, **options)
        # nats-server sends its -ERR for a refused SUB just after the PONG of the next PING:
        # after a second round trip, it has surely been read.
        try:
            await nc.flush()
            await nc.flush()
        except (TimeoutError, nats.errors.Error) as err:
            log.debug("could not confirm the subscription to %s now (%s)", subject, err)
        if denial.done() and not denial.cancelled():
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            raise Denied(link(nc).identity, "subscription", subject)
    return sub


async def fail_when_closed(nc: NATS) -> None:
    """Raise ConnectionClosed when `nc` is closed for good other than by `close()`.

    Run it in a service's task group: a connection nats-py will never reopen (after a server
    error such as "Maximum Control Line Exceeded") then ends the service, and `run_service`
    exits non-zero so that its supervisor starts it again. Alive but deaf is never a state.
    """
    state = link(nc)
    await state.closed.wait()
    if not state.deliberate:
        raise ConnectionClosed(state)


async def close(nc: NATS, *, drain_for: float = 5.0) -> None:
    """Drain the connection (in-flight messages are finished), but never wait longer than
    `drain_for`: a shutdown must not hang on a peer that stopped reading."""
    state = link(nc)
    state.deliberate = True
    try:
        async with asyncio.timeout(drain_for):
            await nc.drain()
    except (TimeoutError, nats.errors.Error) as err:
        log.debug("drain did not finish (%s); closing", err or "timeout")
    if not nc.is_closed:
        # While reconnecting, nats-py flushes what it buffered into a socket that may be dead
        # (and then skips its callbacks).
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.close()
    state.closed_for_good("closed")


async def announce(
    nc: NATS, component: str, *, description: str, metadata: dict[str, str] | None = None
) -> Service:
    """Register `component` as a NATS micro service (ping, info and stats answer from now on).

    Never fails because the bus is away for a moment: the service's subscriptions are made at
    once and only its closing flush waits for the server, so a flush that times out (the link
    cut just then) leaves them standing, and nats-py makes them again on the server after the
    reconnect. A component must not die, or stop starting up, over its own announcement."""
    config = ServiceConfig(
        name=subjects.service_name(component),
        version=VERSION,
        description=description,
        metadata=metadata or {},
    )
    service = Service(nc, config)
    try:
        await service.start()
    except (TimeoutError, nats.errors.Error) as err:
        log.info("announced %s; the server confirms it once it answers again (%s)", component, err)
    return service


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    id: str
    version: str
    started: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(int(e.get("num_requests", 0)) for e in self.endpoints)

    @property
    def errors(self) -> int:
        return sum(int(e.get("num_errors", 0)) for e in self.endpoints)


async def discover(nc: NATS, *, wait: float = 0.5) -> list[ComponentInfo]:
    """Every live steersman component, from the replies to a micro-service STATS broadcast."""
    found: list[ComponentInfo] = []
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish("$SRV.STATS", b"", reply=inbox)
        async for info in _replies(sub, wait):
            name = str(info.get("name", ""))
            if not name.startswith(subjects.service_name("")):
                continue
            found.append(
                ComponentInfo(
                    name=name,
                    id=str(info.get("id", "")),
                    version=str(info.get("version", "")),
                    started=str(info.get("started", "")),
                    metadata=dict(info.get("metadata") or {}),
                    endpoints=list(info.get("endpoints") or []),
                )
            )
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return sorted(found, key=lambda c: (c.name, c.metadata.get("instance", ""), c.id))


async def _replies(sub: Any, wait: float) -> AsyncIterator[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (remaining := deadline - loop.time()) > 0:
        try:
            msg = await sub.next_msg(timeout=remaining)
        except nats.errors.TimeoutError:
            return
        try:
            yield json.loads(msg.data)
        except ValueError:
            continue
