"""The labels every container a node agent starts carries, in any runtime.

They say whose container it is: a restarted agent adopts its own containers by them, agents
sharing a Docker engine tell theirs apart by them, and `steer down` finds every container the
nodes of a local cluster made by them. Defined here, in the shared layer, because the node agent
writes them and the CLI reads them.
"""

from __future__ import annotations

LABEL_NODE = "steersman.io/node"
LABEL_POD_UID = "steersman.io/pod-uid"
LABEL_POD_NAMESPACE = "steersman.io/pod-namespace"
LABEL_POD_NAME = "steersman.io/pod-name"
LABEL_CONTAINER = "steersman.io/container"
LABEL_ATTEMPT = "steersman.io/attempt"
