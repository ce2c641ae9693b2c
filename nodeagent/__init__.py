"""The node agent: registers its Node, runs the pods bound to it, and reports their status."""
