"""What a NATS failure means on the bus: the steersman error it stands for.

nats-py raises its own errors (timeouts, no responders, a closed or reconnecting connection);
callers of the store and of the readers under it catch `bus.errors` only.
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

from bus.errors import Internal, SteerError, Timeout, Unavailable


def translate(err: BaseException) -> SteerError:
    """The bus error a NATS failure stands for."""
    match err:
        case SteerError():
            return err
        case nats.errors.TimeoutError() | asyncio.TimeoutError():
            return Timeout("the store did not answer in time")
        case nats.js.errors.NoStreamResponseError():
            # A write nobody took: in a cluster, the stream's leader died and another is being
            # elected (nothing was written; the write may be sent again).
            return Unavailable("the store cannot take writes now (its stream has no leader); try again")
        case nats.errors.NoRespondersError() | nats.js.errors.ServiceUnavailableError():
            return Unavailable("JetStream is not available")
        case nats.errors.ConnectionClosedError() | nats.errors.ConnectionReconnectingError():
            return Unavailable("not connected to NATS")
        case nats.errors.OutboundBufferLimitError():
            return Unavailable("NATS connection is saturated")
        case nats.js.errors.NotFoundError():
            # A stream or bucket that is not there (yet): the API creates them when it starts.
            # (nats-py raises some of these without a description.)
            what = getattr(err, "description", None) or "stream or consumer"
            return Unavailable(f"not found in JetStream: {what}")
    return Internal(f"store error: {err!r}")
