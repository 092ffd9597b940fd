"""Assay: run untrusted code safely and fast, and keep every result."""

from importlib.metadata import version

__version__ = version("assay")

__all__ = ["__version__"]
