"""Fault drills: `python -m bench.drills.<drill>` from the repository root."""
