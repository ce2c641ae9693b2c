"""Which failed API requests a client sends again, and for how long it keeps trying.

In a NATS cluster a server can die under a client's feet. For a few seconds afterwards requests
fail in ways that say nothing about the request itself: no API replica answers (those connected
to the dead server are reconnecting), the API answers `Unavailable` (the stream that holds the
bucket is electing a new leader), or nothing answers at all (the request or its reply went
through the dead server). nats-py retries none of these, so the client does, with jittered
back-off, for a bounded time:

- `Unavailable` is always retried: the request was not carried out (nothing was written);
  except `ReplyLost` (the connection went while the reply was awaited), which is a Timeout.
- `Timeout` is retried only where sending again cannot do harm: reads, and creates, which carry
  the uid the client chose for the new object (`CREATE_UID_HEADER`), so the API recognises a
  create whose first attempt was stored and answers with that object instead of AlreadyExists.
  An update, patch or delete that timed out may have been applied; the caller decides (a
  compare-and-set sent again would answer Conflict for its own write).
- Nothing is retried over a connection that is closed for good.
"""

from __future__ import annotations

from bus.errors import SteerError, Timeout, Unavailable

# The first retry comes quickly (a replica reconnects within a second), later ones at most
# RETRY_CAP apart, and a request is given up after RETRY_WITHIN (its last error is raised).
RETRY_FIRST = 0.05
RETRY_CAP = 1.0
RETRY_WITHIN = 15.0
SAFE_AFTER_TIMEOUT = frozenset({"get", "list", "create"})


class ReplyLost(Unavailable):
    """The request went out, and its connection was lost before the reply came: it may have been
    carried out, so it is sent again only where a Timeout would be."""


def retryable(verb: str, err: SteerError) -> bool:
    """Whether a request of `verb` that failed with `err` may be sent again."""
    if isinstance(err, ReplyLost):
        return verb in SAFE_AFTER_TIMEOUT
    if isinstance(err, Unavailable):
        return True
    return isinstance(err, Timeout) and verb in SAFE_AFTER_TIMEOUT
