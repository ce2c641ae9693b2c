"""Fuzzing the services with hypothesis: strategies, the harness that checks the invariants, and
the bounded suite runs. `bench/fuzz.py` runs the same targets for much longer."""
