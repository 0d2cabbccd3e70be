"""Watch: the one reader of results.

Enters: the slots the fire stage produced, the client and the read budget.
Leaves: each slot's final ``CekuraRun`` (published per case as it ends), the live counts the
progress line shows, and ``end_call`` for runs left live.
May import: ``_fire``, ``_config``, ``_api`` and the boundary modules.
"""
