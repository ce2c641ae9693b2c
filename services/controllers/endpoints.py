"""The endpoints controller: each Service with a selector gets an Endpoints object of its name.

Level-based and keyed by the Service (`namespace/name`): a change to a Service, to its
Endpoints, or to any pod its selector picks (before or after the change) reconciles it, and
the reconcile recomputes the whole set from the informer caches (`endpointsubsets.py`), writing
only when it differs. Writes are compare-and-set on the Endpoints' resourceVersion.

- The Endpoints carry the Service's labels and a controller ownerReference to it, so that the
  garbage collector removes them too; the reconcile of a Service that is gone deletes them at
  once (after a live read confirms the Service is gone: the cache may lag behind a new one).
- A Service without a selector gets no managed Endpoints (Kubernetes' rule: its Endpoints are
  the user's to write), and the condition `EndpointsManaged=False` (reason `NoSelector`) on its
  status says so.
- A pod that declares no container port for a targetPort is left out of that port, and a
  Warning event `TargetPortNotFound` on the Service names the pod (once per pod and port).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import msgspec

from bus.client import Client
from bus.controller import Controller, Result
from bus.errors import AlreadyExists, Conflict, NotFound
from bus.events import now
from bus.informer import Informer, key_of
from bus.meta import ObjectMeta, OwnerReference, Resource
from bus.recorder import Recorder
from bus.resources import Endpoints, Pod, Service
from bus.resources.networking import EndpointSubset, ServiceCondition
from bus.workloads import controller_of
from services.controllers.endpointsubsets import MissingPort, endpoint_subsets, selects

log = logging.getLogger(__name__)

COMPONENT = "endpoint-controller"
MANAGED_CONDITION = "EndpointsManaged"
NO_SELECTOR = "NoSelector"
PORT_NOT_FOUND = "TargetPortNotFound"


def service_keys(services: Informer[Service]) -> Callable[[Resource], list[str]]:
    """Map a pod to the Services whose selector picks it."""

    def keys(obj: Resource) -> list[str]:
        assert isinstance(obj, Pod)
        return [key_of(svc) for svc in services.in_namespace(obj.metadata.namespace) if selects(svc, obj)]

    return keys


def owner_reference(service: Service) -> OwnerReference:
    return OwnerReference(
        api_version="v1",
        kind="Service",
        name=service.metadata.name,
        uid=service.metadata.uid,
        controller=True,
    )


def managed(endpoints: Endpoints) -> bool:
    """Whether this controller wrote the Endpoints (user-written ones are left alone)."""
    ref = controller_of(endpoints)
    return ref is not None and ref.kind == "Service" and ref.name == endpoints.metadata.name


def no_selector_condition(service: Service) -> ServiceCondition:
    return ServiceCondition(
        type=MANAGED_CONDITION,
        status="False",
        observed_generation=service.metadata.generation,
        reason=NO_SELECTOR,
        message=(
            "the Service has no selector, so no Endpoints are managed for it: create an Endpoints "
            f'object named "{service.metadata.name}" to give it backends'
        ),
    )


class EndpointsReconciler:
    def __init__(
        self, client: Client, services: Informer[Service], endpoints: Informer[Endpoints], pods: Informer[Pod]
    ) -> None:
        self.client = client
        self.services, self.endpoints, self.pods = services, endpoints, pods
        self.recorder = Recorder(client, component=COMPONENT)
        self._warned: dict[str, set[MissingPort]] = {}

    async def reconcile(self, key: str) -> Result:
        namespace, _, name = key.partition("/")
        service = self.services.get(key)
        if service is None:
            self._warned.pop(key, None)
            await self._delete_orphan(namespace, name)
            return Result()
        if service.metadata.deletion_timestamp is not None:
            return Result()  # being deleted: the garbage collector takes its Endpoints
        await self._set_condition(service)
        if not service.spec.selector:
            return Result()
        pods = self.pods.in_namespace(namespace)
        subsets, missing = endpoint_subsets(service, pods)
        await self._warn(service, missing)
        await self._write(service, subsets)
        return Result()

    async def _write(self, service: Service, subsets: list[EndpointSubset]) -> None:
        current = self.endpoints.get(key_of(service))
        if current is None:
            meta = ObjectMeta(
                name=service.metadata.name,
                namespace=service.metadata.namespace,
                labels=dict(service.metadata.labels),
                owner_references=[owner_reference(service)],
            )
            try:
                await self.client.create(Endpoints(metadata=meta, subsets=subsets))
                return
            except AlreadyExists:  # the cache has not seen it yet
                current = await self.client.get(Endpoints, service.metadata.name, service.metadata.namespace)
        try:
            await self._update(current, service, subsets)
        except Conflict:  # the cache was behind: once more from a live read
            live = await self.client.get(Endpoints, service.metadata.name, service.metadata.namespace)
            await self._update(live, service, subsets)

    async def _update(self, current: Endpoints, service: Service, subsets: list[EndpointSubset]) -> None:
        refs = [ref for ref in current.metadata.owner_references if not ref.controller]
        refs.append(owner_reference(service))
        meta = msgspec.structs.replace(
            current.metadata, labels=dict(service.metadata.labels), owner_references=refs
        )
        if meta == current.metadata and subsets == current.subsets:
            return
        await self.client.update(msgspec.structs.replace(current, metadata=meta, subsets=subsets))

    async def _delete_orphan(self, namespace: str, name: str) -> None:
        """Delete the managed Endpoints of a Service that is gone (confirmed by a live read)."""
        endpoints = self.endpoints.get(f"{namespace}/{name}")
        if endpoints is None or not managed(endpoints):
            return
        if await self.client.exists(Service, name, namespace):
            return  # the cache is behind, and the Service's arrival reconciles again
        with contextlib.suppress(NotFound):
            await self.client.delete(
                Endpoints, name, namespace, resource_version=endpoints.metadata.resource_version
            )

    async def _set_condition(self, service: Service) -> None:
        """`EndpointsManaged=False` on a Service without a selector; no such condition otherwise."""
        others = [c for c in service.status.conditions if c.type != MANAGED_CONDITION]
        wanted = others
        if not service.spec.selector:
            condition = no_selector_condition(service)
            previous = next((c for c in service.status.conditions if c.type == MANAGED_CONDITION), None)
            same = previous is not None and previous.status == condition.status
            condition.last_transition_time = previous.last_transition_time if same and previous else now()
            wanted = [*others, condition]
        if wanted == service.status.conditions:
            return
        # Compare-and-set: a Service changed meanwhile is reconciled again. Deleted: nothing to say.
        with contextlib.suppress(NotFound):
            await self.client.update_status(
                msgspec.structs.replace(
                    service, status=msgspec.structs.replace(service.status, conditions=wanted)
                )
            )

    async def _warn(self, service: Service, missing: list[MissingPort]) -> None:
        """One Warning event per pod and port left out, when first seen."""
        key = key_of(service)
        seen = self._warned.get(key, set())
        self._warned[key] = set(missing)
        for problem in missing:
            if problem not in seen:
                await self.recorder.warning(service, PORT_NOT_FOUND, problem.describe())


def endpoints_controller(
    client: Client,
    services: Informer[Service],
    endpoints: Informer[Endpoints],
    pods: Informer[Pod],
    *,
    workers: int = 1,
) -> Controller:
    """The controller, wired to its informers."""
    controller = Controller(
        "endpoints", EndpointsReconciler(client, services, endpoints, pods), workers=workers
    )
    controller.watch(services)
    controller.watch(endpoints)
    controller.watch(pods, service_keys(services))
    return controller
