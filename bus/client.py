"""The typed API client: request/reply to the API service over NATS.

Every call has a timeout; error replies come back as the same `bus.errors` exception the API
raised. Reads go through the API too (a node agent has no JetStream access); watches read the
store directly (see `bus.store.Store.watch`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import kinds, subjects
from bus.backoff import Backoff
from bus.codec import encode
from bus.connection import Denied, link
from bus.errors import (
    BadRequest,
    Forbidden,
    Internal,
    NotFound,
    Status,
    SteerError,
    Timeout,
    TooLarge,
    Unavailable,
    from_status,
)
from bus.meta import Resource
from bus.protocol import (
    CREATE_UID_HEADER,
    ERROR_CODE_HEADER,
    WARNING_HEADER,
    DeleteRequest,
    GetRequest,
    ListRequest,
    ObjectList,
    PatchRequest,
    PropagationPolicy,
)
from bus.retrying import RETRY_CAP, RETRY_FIRST, RETRY_WITHIN, ReplyLost, retryable

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)

DEFAULT_TIMEOUT = 10.0
_status_decoder = msgspec.json.Decoder(Status)
_list_decoder = msgspec.json.Decoder(ObjectList)


class Client:
    """Talks to the API service. `node` makes requests on the node-scoped subjects instead.

    A request that fails for a reason that passes (no API replica answers, the store is
    electing a leader) is sent again with jittered back-off for up to `retry_within` seconds
    (0: never); `bus.retrying` says which failures of which verbs.
    """

    def __init__(
        self,
        nc: NATS,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        node: str = "",
        retry_within: float = RETRY_WITHIN,
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.node = node
        self.retry_within = retry_within
        self.retries = 0  # requests sent again so far (for benchmarks and tests)
        # What to do with a reply's warning (the CLI prints it, as kubectl prints "Warning:").
        self.on_warning: Callable[[str], None] = self._log_warning
        self._warned: set[str] = set()

    def _log_warning(self, text: str) -> None:
        """Each warning once (a component lists again and again; the cause is the same)."""
        if text not in self._warned:
            if len(self._warned) >= 1000:
                self._warned.clear()
            self._warned.add(text)
            log.warning("API: %s", text)

    def _subject(self, verb: subjects.ApiVerb, info: kinds.KindInfo, namespace: str) -> str:
        ns = namespace if info.namespaced else ""
        if self.node:
            return subjects.node(self.node, verb, info.plural, ns)
        return subjects.api(verb, info.plural, ns)

    async def request(
        self,
        verb: subjects.ApiVerb,
        info: kinds.KindInfo,
        namespace: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The raw reply body, or the error the reply stands for; sent again while it fails
        in a way that passes and may be retried (see the class docstring)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_within
        backoff = Backoff(first=RETRY_FIRST, cap=RETRY_CAP)
        while True:
            try:
                return await self._request_once(verb, info, namespace, body, headers)
            except (Unavailable, Timeout) as err:
                delay = backoff.next()
                if self.nc.is_closed or not retryable(verb, err) or loop.time() + delay > give_up:
                    raise
                log.debug("%s %s: %s; sending it again in %.2fs", verb, info.plural, err.message, delay)
                self.retries += 1
                await asyncio.sleep(delay)

    async def _request_once(
        self,
        verb: subjects.ApiVerb,
        info: kinds.KindInfo,
        namespace: str,
        body: bytes,
        headers: dict[str, str] | None,
    ) -> bytes:
        """One round trip."""
        subject = self._subject(verb, info, namespace)
        limit = self.nc.max_payload
        if len(body) > limit:
            raise TooLarge(too_large(len(body), limit))
        try:
            msg = await self._round_trip(subject, body, headers)
        except Denied as denied:
            raise Forbidden(forbidden_message(denied.identity, verb, info, namespace)) from None
        except nats.errors.NoRespondersError:
            raise Unavailable("no API server is running (nothing answers on the bus)") from None
        except nats.errors.TimeoutError:
            raise Timeout(f"the API did not answer within {self.timeout:g}s") from None
        except nats.errors.MaxPayloadError:
            raise TooLarge(too_large(len(body), limit)) from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise Unavailable("not connected to NATS") from None
        if msg.headers and ERROR_CODE_HEADER in msg.headers:
            try:
                status = _status_decoder.decode(msg.data)
            except msgspec.DecodeError:
                raise Internal(f"malformed error reply on {subject}") from None
            raise from_status(status)
        if msg.headers and WARNING_HEADER in msg.headers:
            self.on_warning(msg.headers[WARNING_HEADER])
        return msg.data

    async def _round_trip(self, subject: str, body: bytes, headers: dict[str, str] | None) -> Msg:
        """`nc.request`, except that a request whose connection is lost while it waits fails at
        once: its reply went into a dead link, or would come back over one, and the caller's
        next try (over the new connection, or buffered until there is one) should not wait out
        the timeout first. A node agent back from a network cut renews its Lease and lists its
        pods at once, not a request timeout later."""
        state = link(self.nc)
        lost = False
        try:
            async with asyncio.timeout(None) as waiting:

                def on_lost() -> None:
                    nonlocal lost
                    lost = True
                    waiting.reschedule(asyncio.get_running_loop().time())

                state.on_disconnect(on_lost)
                try:
                    return await self.nc.request(subject, body, timeout=self.timeout, headers=headers)
                finally:
                    state.forget(on_lost)
        except TimeoutError:
            if not lost:
                raise  # nats-py's own: no reply within the timeout
            raise ReplyLost("the connection to NATS was lost while waiting for the reply") from None

    # -- untyped, by kind (the CLI works with whatever kind the user names)

    async def create_raw(self, info: kinds.KindInfo, namespace: str, obj: Any) -> Resource:
        # The uid of the new object, chosen here so that a retry is known for the same create.
        uid = {CREATE_UID_HEADER: str(uuid.uuid4())}
        data = await self.request("create", info, namespace, _encode(obj), headers=uid)
        return _decode(info, data)

    async def update_raw(self, info: kinds.KindInfo, namespace: str, obj: Any) -> Resource:
        data = await self.request("update", info, namespace, _encode(obj))
        return _decode(info, data)

    async def get_kind(self, info: kinds.KindInfo, name: str, namespace: str = "default") -> Resource:
        data = await self.request("get", info, namespace, encode(GetRequest(name=name)))
        return _decode(info, data)

    async def list_kind(
        self,
        info: kinds.KindInfo,
        namespace: str = "default",
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 0,
        view: str = "",
    ) -> tuple[list[Resource], str]:
        """Objects of a kind in `namespace` (`*` for all) and the list's resourceVersion.

        The API serves a long list in pages (each fits in one reply; `page_size` caps the items of
        each, 0 for as many as fit); they are fetched here one after the other and joined.
        """
        items: list[Resource] = []
        version = ""
        async for page, page_version in self.list_pages(
            info,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            page_size=page_size,
            view=view,
        ):
            items += page
            version = version or page_version
        return items, version

    async def list_pages(
        self,
        info: kinds.KindInfo,
        namespace: str = "default",
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 0,
        view: str = "",
    ) -> AsyncIterator[tuple[list[Resource], str]]:
        """Each page of a list with its resourceVersion, as the API serves them (`limit`/`continue`)."""
        token = ""
        seen: set[str] = set()
        while True:
            request = ListRequest(
                label_selector=label_selector,
                field_selector=field_selector,
                limit=page_size,
                continue_=token,
                view=view,
            )
            data = await self.request("list", info, namespace, encode(request))
            try:
                listing = _list_decoder.decode(data)
            except msgspec.DecodeError as err:
                raise Internal(f"malformed {info.kind}List in reply: {err}") from None
            yield [_decode(info, raw) for raw in listing.items], listing.metadata.resource_version
            token = listing.metadata.continue_
            if not token:
                return
            if token in seen:  # a server that repeats itself would keep us here forever
                raise Internal(f"the API repeated a continue token listing {info.plural}")
            seen.add(token)

    async def patch_kind(
        self, info: kinds.KindInfo, name: str, patch: dict[str, Any], namespace: str = "default"
    ) -> Resource:
        """A JSON merge patch (RFC 7386), applied on the latest version with compare-and-set."""
        data = await self.request("patch", info, namespace, encode(PatchRequest(name=name, patch=patch)))
        return _decode(info, data)

    async def delete_kind(
        self,
        info: kinds.KindInfo,
        name: str,
        namespace: str = "default",
        *,
        resource_version: str = "",
        grace_period_seconds: int | None = None,
        propagation_policy: PropagationPolicy = "Background",
    ) -> Resource:
        """Delete (or begin deleting); returns the object's final or terminating state."""
        request = DeleteRequest(
            name=name,
            resource_version=resource_version,
            grace_period_seconds=grace_period_seconds,
            propagation_policy=propagation_policy,
        )
        data = await self.request("delete", info, namespace, encode(request))
        return _decode(info, data)

    # -- typed

    async def get(self, cls: type[R], name: str, namespace: str = "default") -> R:
        return await self.get_kind(kinds.BY_KIND[cls.__name__], name, namespace)  # type: ignore[return-value]

    async def exists(self, cls: type[Resource], name: str, namespace: str = "default") -> bool:
        """Whether the object is stored now (a live read, for a cache that may lag)."""
        try:
            await self.get(cls, name, namespace)
        except NotFound:
            return False
        return True

    async def list(
        self,
        cls: type[R],
        namespace: str = "default",
        *,
        label_selector: str = "",
        field_selector: str = "",
        view: str = "",
    ) -> list[R]:
        """Objects of a kind; `view="network"` lists pods as the network sees them (bus/podview.py)."""
        info = kinds.BY_KIND[cls.__name__]
        items, _ = await self.list_kind(
            info, namespace, label_selector=label_selector, field_selector=field_selector, view=view
        )
        return items  # type: ignore[return-value]

    async def create(self, obj: R) -> R:
        info = kinds.of(obj)
        return await self.create_raw(info, obj.metadata.namespace or "default", obj)  # type: ignore[return-value]

    async def update(self, obj: R) -> R:
        """Replace the object; a stale `metadata.resourceVersion` raises Conflict."""
        info = kinds.of(obj)
        return await self.update_raw(info, obj.metadata.namespace or "default", obj)  # type: ignore[return-value]

    async def update_status(self, obj: R) -> R:
        """Write only `status`, as Kubernetes' status subresource does."""
        info = kinds.of(obj)
        data = await self.request("status", info, obj.metadata.namespace or "default", _encode(obj))
        return _decode(info, data)  # type: ignore[return-value]

    async def patch(self, cls: type[R], name: str, patch: dict[str, Any], namespace: str = "default") -> R:
        return await self.patch_kind(kinds.BY_KIND[cls.__name__], name, patch, namespace)  # type: ignore[return-value]

    async def delete(self, cls: type[R], name: str, namespace: str = "default", **options: Any) -> R:
        info = kinds.BY_KIND[cls.__name__]
        return await self.delete_kind(info, name, namespace, **options)  # type: ignore[return-value]


def forbidden_message(identity: str, verb: str, info: kinds.KindInfo, namespace: str) -> str:
    """kubectl's words for a request NATS permissions refused."""
    who = f'user "{identity}"' if identity else "this connection"
    if not info.namespaced or not namespace:
        where = "at the cluster scope"
    elif namespace == subjects.ALL:
        where = "across all namespaces"
    else:
        where = f'in the namespace "{namespace}"'
    return f"{who} cannot {verb} {info.qualified_plural} {where}"


def too_large(size: int, limit: int) -> str:
    return f"request is {size} bytes; the server accepts at most {limit} bytes (its max_payload)"


def _encode(obj: Any) -> bytes:
    try:
        return encode(obj)
    except (TypeError, msgspec.EncodeError) as err:
        raise BadRequest(f"cannot encode object: {err}") from None


_decoders: dict[type[Resource], msgspec.json.Decoder[Any]] = {}


def _decode(info: kinds.KindInfo, data: bytes | msgspec.Raw) -> Resource:
    decoder = _decoders.get(info.type)
    if decoder is None:
        decoder = _decoders[info.type] = msgspec.json.Decoder(info.type)
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as err:
        raise Internal(f"malformed {info.kind} in reply: {err}") from None


__all__ = ["Client", "SteerError"]
