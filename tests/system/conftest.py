"""Whole clusters of real processes on a real Docker engine."""

from tests.nodeagent.conftest import docker_engine
from tests.system.podnet import pod_cluster, pod_plane

__all__ = ["docker_engine", "pod_cluster", "pod_plane"]
