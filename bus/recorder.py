"""Recording events, as every component does (Started, Killing, BackOff, Scheduled,
FailedScheduling, SuccessfulCreate, ...). An event that cannot be recorded is logged and dropped:
events are a record, never a reason to stop the work they describe."""

from __future__ import annotations

import logging

from bus.client import Client
from bus.errors import SteerError
from bus.events import make_event, reference
from bus.meta import Resource

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, client: Client, *, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host

    async def normal(self, obj: Resource, reason: str, message: str, *, field_path: str = "") -> None:
        await self._record(obj, reason, message, "Normal", field_path)

    async def warning(self, obj: Resource, reason: str, message: str, *, field_path: str = "") -> None:
        await self._record(obj, reason, message, "Warning", field_path)

    async def _record(self, obj: Resource, reason: str, message: str, type_: str, field_path: str) -> None:
        involved = reference(obj)
        involved.field_path = field_path
        event = make_event(
            involved, reason=reason, message=message, type=type_, component=self.component, host=self.host
        )
        try:
            await self.client.create(event)
        except SteerError as err:
            log.warning("could not record %s event for %s: %s", reason, obj.metadata.name, err)
