"""The package version (single source: pyproject.toml must match)."""

__version__ = "0.1.0"
