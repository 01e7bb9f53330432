"""Benchmarks and fault drills (bench/RESULTS.md): run each from the repository root as
`python -m bench.<script>` or `python -m bench.drills.<drill>`."""
