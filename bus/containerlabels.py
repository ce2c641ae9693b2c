"""The labels every container a node agent starts carries, in any runtime.

They say whose container it is: a restarted agent adopts its own containers by them, agents
sharing a Docker engine tell theirs apart by them, and `steer down` finds every container the
nodes of a local cluster made by them. Defined here, in the shared layer, because the node agent
writes them and the CLI reads them. The last two hold what only the agent reads back after a
restart of its own (nodeagent/adoption.py): the host ports the container was started with, and
the restart back-off reached when it started.
"""

from __future__ import annotations

LABEL_NODE = "steersman.io/node"
LABEL_POD_UID = "steersman.io/pod-uid"
LABEL_POD_NAMESPACE = "steersman.io/pod-namespace"
LABEL_POD_NAME = "steersman.io/pod-name"
LABEL_CONTAINER = "steersman.io/container"
LABEL_ATTEMPT = "steersman.io/attempt"
LABEL_PORTS = "steersman.io/host-ports"  # JSON: [{"containerPort", "hostPort", "name", "protocol"}]
LABEL_RESTART_DELAY = "steersman.io/restart-delay"  # seconds; absent: no failure counted yet
LABEL_SANDBOX = "steersman.io/sandbox"  # "true" on a pod's sandbox (the holder of its namespaces)
