"""Benchmarks; run each as a script: `python bench/<name>.py` (see its docstring)."""
