"""Report: every output rendered from one typed record per case.

Enters: the per-case records pytest's reports carry (so they survive ``-n``).
Leaves: the terminal table, the JSON report, the step summary, the PR comment, GitHub
annotations, JUnit properties and the live progress line.
May import: ``_judge`` and every stage before it, and the boundary modules.
"""
