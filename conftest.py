"""Project-wide pytest defaults only. The harness plugin itself is registered through the
`pytest11` entry point in pyproject.toml, so it works wherever the package is installed."""
