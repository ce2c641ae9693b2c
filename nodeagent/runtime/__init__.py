"""Container runtimes behind one protocol: docker, process and fake."""

from nodeagent.runtime.base import (
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    ContainerStats,
    ExecResult,
    ImageNeverPullError,
    ImagePullError,
    PortBinding,
    Runtime,
    RuntimeFailure,
    Sandbox,
    SandboxSpec,
    StartError,
)

__all__ = [
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerSpec",
    "ContainerStats",
    "ExecResult",
    "ImageNeverPullError",
    "ImagePullError",
    "PortBinding",
    "Runtime",
    "RuntimeFailure",
    "Sandbox",
    "SandboxSpec",
    "StartError",
]
