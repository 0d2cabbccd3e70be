"""Roles: the process's part in the session, chosen once (single process, xdist controller,
xdist worker), and the I/O loop and shared directory that wire the stages together.

Enters: the session's values. Leaves: nothing but calls into the stages.
May import: every stage and the boundary modules; only the pytest face imports it.
"""
