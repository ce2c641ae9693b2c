"""The service proxy every node agent runs (docs/nodeagent.md, "Service proxy")."""

from nodeagent.proxy.balancing import POLICIES, Policy
from nodeagent.proxy.serving import ProxyConfig, ServiceProxy

__all__ = ["POLICIES", "Policy", "ProxyConfig", "ServiceProxy"]
