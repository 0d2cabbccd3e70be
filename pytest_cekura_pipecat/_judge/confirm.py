"""A red you can trust: confirmation runs, and pass rates compared with the baseline's.

``confirm = N``: a case whose failure would block is fired N more runs before its verdict
stands. If one of them passes the case is ``flaky`` (it does not block); if none does, the
failure is ``confirmed`` and blocks. Errored confirmation runs are no recovery.

A case of several runs (``repeat``) against a baseline report that has its runs too: its
pass rate is compared with the baseline's (``stats.py``), errored runs left out. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .._api.run import CekuraRun
from .._config.case import Case
from .stats import Counts, RateComparison, compare_rates
from .verdict import RunJudgement, judge_run

ConfirmVerdict = Literal["flaky", "confirmed"]


@dataclass(frozen=True)
class Confirmation:
    """The confirmation runs of a failing case: ``fired`` runs, ``passed`` of them passed."""

    fired: int
    passed: int
    runs: tuple[CekuraRun, ...] = ()
    judged: tuple[RunJudgement, ...] = ()

    @property
    def verdict(self) -> ConfirmVerdict:
        return "flaky" if self.passed else "confirmed"

    def describe(self) -> str:
        """One line: what the confirmation runs said."""
        if self.passed:
            return (
                f"flaky: {self.passed} of {self.fired} confirmation run(s) passed after the failure"
            )
        return f"confirmed failure: none of {self.fired} confirmation run(s) passed"


def confirmation(case: Case, runs: Sequence[CekuraRun]) -> Confirmation:
    """The confirmation of ``case`` from its confirmation runs (each judged like any run of
    the case: Cekura's verdict and the case's thresholds)."""
    judged = tuple(judge_run(case, run) for run in runs)
    passed = sum(j.outcome == "passed" for j in judged)
    return Confirmation(len(runs), passed, tuple(runs), judged)


@dataclass(frozen=True)
class Compared:
    """A case's pass rate compared with the baseline's; ``errored``: the run ids (or
    places) of this session's runs left out."""

    comparison: RateComparison
    errored: tuple[str, ...] = ()
    baseline_errored: int = 0

    def describe(self) -> str:
        text = self.comparison.describe()
        left_out = []
        if self.errored:
            left_out.append(f"errored run(s) {', '.join(self.errored)}")
        if self.baseline_errored:
            left_out.append(f"{self.baseline_errored} errored run(s) of the baseline")
        return text + (f"; left out: {'; '.join(left_out)}" if left_out else "")


def counted(runs: Sequence[CekuraRun], judged: Sequence[RunJudgement]) -> tuple[Counts, list[str]]:
    """This session's runs as counts (errored runs left out) and the errored runs' names."""
    passed = failed = 0
    errored: list[str] = []
    for index, (run, judgement) in enumerate(zip(runs, judged, strict=True), 1):
        if judgement.outcome == "passed":
            passed += 1
        elif judgement.outcome == "failed":
            failed += 1
        else:
            errored.append(f"run {run.run_id}" if run.run_id is not None else f"#{index}")
    return Counts(passed, passed + failed), errored


def compare_with(
    case: Case,
    runs: Sequence[CekuraRun],
    judged: Sequence[RunJudgement],
    before: Counts | None,
    before_errored: int = 0,
) -> Compared | None:
    """The comparison of a case of several runs with its runs in the baseline; None when it
    does not apply (one run, no judgements, no baseline runs of the case)."""
    if case.repeat < 2 or before is None or before.runs < 2 or len(judged) != len(runs):
        return None
    now, errored = counted(runs, judged)
    return Compared(compare_rates(before, now), tuple(errored), before_errored)
