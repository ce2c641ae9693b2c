"""`steer`, the command-line tool. It talks to the cluster only through `bus`."""
