"""Public hooks of pytest-cekura-pipecat. Implement them in a ``conftest.py`` or a plugin.

Added to pytest with ``pytest_addhooks``; every hook receives the plugin's public models
(``Case``, ``CekuraRun``, ``Room``) and may be implemented with any subset of its arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._api.run import CekuraRun
    from ._config.case import Case, Room


@pytest.hookspec(firstresult=True)
def pytest_cekura_room(case: Case, config: pytest.Config) -> Room | tuple[str, str | None] | None:
    """Provide the Daily room (URL and meeting token) for one run of ``case``.

    Called once per run entry, before firing, for cases whose bot is not in a static room
    (``case.pipecat_room_url`` is None: no layer set one, or a nearer layer chose a start
    URL); calls for one batch run concurrently in threads, so the hook may
    be slow (create a Daily room, start a Pipecat Cloud session). Return a ``Room``, a
    ``(url, token)`` tuple, or None to let the next implementation answer. The token is
    treated as a secret.
    """


def pytest_cekura_entry(case: Case, entry: dict[str, Any]) -> None:
    """Last chance to change one outgoing entry of a start request, in place.

    ``entry`` is the JSON object that will be sent (``scenario``, ``pipecat_room_url``,
    ``pipecat_token``, ``publish_data_message``), after ``${VAR}`` expansion and the room
    hook. Called once per run, in the process that fires.
    """


@pytest.hookspec(firstresult=True)
def pytest_cekura_verdict(case: Case, runs: Sequence[CekuraRun]) -> bool | None:
    """Override the pass/fail decision of a case whose runs all finished.

    Return True (pass), False (fail) or None to keep the default rule (a run passes when
    it ``completed`` with ``success: true``; the case passes when ``min_passes`` runs did).
    Runs that errored still make the case error when the override is None.
    """


def pytest_cekura_run_finished(case: Case, run: CekuraRun) -> None:
    """Observe every finished run (export it, post to Slack, record metrics).

    Called once per run, in the process that ran the case, when its verdict is known.
    """
