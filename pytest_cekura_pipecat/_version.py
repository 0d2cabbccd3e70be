"""The plugin's version: one place, read by the package, the client's User-Agent and reports."""

__version__ = "0.1.0"
