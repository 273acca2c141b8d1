"""A pytest-driven benchmark harness: which language model to run, and at what cost."""

__version__ = "0.1.0"
