"""The pod network of a node: addresses, links, and the nftables rules of Services."""
