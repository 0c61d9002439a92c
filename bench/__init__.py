"""Benchmarks (DESIGN.md §6): each measures a target against a baseline in the same run on the
same machine; `python -m bench.run --db URL` prints the table and records it in
docs/benchmarks.md."""
