"""Fire: selected cases become entries, entries become batched start requests, requests
become slots (one per run of a case).

Enters: ``Case`` values, the client, the policy (batch size, caps, waves), the ledger.
Leaves: ``plan.Slot`` and ``plan.Plan`` values (what was fired, what was refused and why).
Also here: the bot the session starts (``bot``), rooms from a start URL (``rooms``,
``bot_rooms``), the ledger of fired runs and the recovery of an unknown start.
May import: ``_config``, ``_api`` and the boundary modules.
"""
