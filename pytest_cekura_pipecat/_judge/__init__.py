"""Judge: a case's final runs become its verdict; gating says whether it blocks.

Enters: a ``Case`` and its ``CekuraRun`` values, quarantines and a baseline.
Leaves: ``verdict.CaseVerdict`` and the gate's decision. Pure functions: no I/O (the canary
waits on the watcher's published runs like any item).
May import: ``_watch``, ``_fire``, ``_config``, ``_api`` and the boundary modules.
"""
