"""The one place that knows Cekura's HTTP API.

Enters: a base URL, an API key, a request (start these entries, read this result).
Leaves: typed models of Cekura's answers (``models``), the plain run the rest of the plugin
hands on (``run.CekuraRun``), and one exception per kind of failure.
May import: the boundary modules (``_text``, ``_redact``, ``_errors``, ``_version``).
"""
