"""Request and reply bodies of the API verbs (see docs/protocol.md).

`create`, `update` and `status` carry the object itself; the other verbs carry one of these.
Every error reply is a Kubernetes `Status` (bus.errors) with the NATS micro error headers set.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from bus.meta import Int64, ListMeta

ERROR_CODE_HEADER = "Nats-Service-Error-Code"
ERROR_HEADER = "Nats-Service-Error"

# Kubernetes caps a stored object at about 1.5 MiB (etcd's request limit); we keep to 1 MiB,
# below the 4 MiB max_payload of nats.conf so the API can answer with a clear error.
MAX_OBJECT_BYTES = 1024 * 1024

# Node agents keep their heartbeat Lease here (Kubernetes: kube-node-lease).
NODE_LEASE_NAMESPACE = "steer-node-lease"
# Leader-election Leases of the control plane (Kubernetes: kube-system).
SYSTEM_NAMESPACE = "steer-system"
# Header of a node feed message: ADDED, MODIFIED or DELETED.
FEED_EVENT_HEADER = "Steer-Event"
# Header of a successful reply that has something to say besides (Kubernetes' Warning header).
WARNING_HEADER = "Steer-Warning"
# Header of a create request: the uid (a UUID) the client chose for the new object, so that a
# create it sends again after a timeout or an outage is recognised as the same one (see
# docs/protocol.md, "Retrying").
CREATE_UID_HEADER = "Steer-Create-Uid"

PropagationPolicy = Literal["Background", "Foreground", "Orphan"]
# Finalizers the API adds for a Foreground or Orphan delete; the garbage collector removes them
# once the dependents are gone (Foreground) or released (Orphan). Kubernetes' names.
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"


class Request(msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True, forbid_unknown_fields=True):
    pass


class GetRequest(Request):
    name: str


class ListRequest(Request):
    """`limit` caps the items of one page (0: as many as fit in a reply); `continue` is the token
    of the page before, from its `metadata.continue`, with the same selectors. `view: network`
    lists pods as the network sees them (bus/podview.py)."""

    label_selector: str = ""
    field_selector: str = ""
    limit: Int64 = 0
    continue_: str = msgspec.field(default="", name="continue")
    view: str = ""


class PatchRequest(Request):
    name: str
    patch: dict[str, Any]


class DeleteRequest(Request):
    name: str
    resource_version: str = ""
    grace_period_seconds: Int64 | None = None
    propagation_policy: PropagationPolicy = "Background"


class ObjectList(msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True):
    """`PodList`, `DeploymentList`, ...: items stay raw so each is decoded by its kind."""

    kind: str
    api_version: str
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[msgspec.Raw] = []
