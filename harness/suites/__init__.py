"""Benchmark suites: pure Python, one module each: load items, build prompts, score answers."""
