"""Benchmarks of the running stack (`python -m bench` or `team-memory bench`)."""
