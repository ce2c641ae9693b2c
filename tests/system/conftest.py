"""Whole clusters of real processes on a real Docker engine."""

from tests.nodeagent.conftest import docker_engine

__all__ = ["docker_engine"]
