"""The pod network of a node: what the agent programs in the kernel (docs/networking.md)."""
