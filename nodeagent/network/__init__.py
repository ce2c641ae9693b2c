"""The pod network of one node: addresses, namespaces, links (and, with them, Services and DNS).

See docs/networking.md for the model.
"""
