"""Task files (TOML or YAML): suites without Python, run with every harness feature.

`pytest benchmarks --task tasks/gsm8k.yaml` (or a folder of task files, or several, comma-separated).
The test and its parametrization live in harness/run/task_cases.py; this line is all a project needs.
"""

from harness.run.task_cases import pytest_generate_tests, test_task  # noqa: F401
