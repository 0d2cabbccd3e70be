"""Pass rates compared with Fisher's exact test (``_judge/stats.py``)."""

from __future__ import annotations

import math

import pytest

from pytest_cekura_pipecat._judge.stats import Counts, compare_rates, fisher_lower


def test_fisher_matches_the_hypergeometric_tail_by_hand() -> None:
    # 10/10 before, 7/10 now: the only tables as extreme put all 3 failures now.
    assert fisher_lower(Counts(10, 10), Counts(7, 10)) == pytest.approx(
        math.comb(17, 7) / math.comb(20, 10)
    )
    assert fisher_lower(Counts(10, 10), Counts(7, 10)) == pytest.approx(0.10526, abs=1e-5)
    assert fisher_lower(Counts(10, 10), Counts(2, 10)) == pytest.approx(66 / 184756)
    # A known value (R: fisher.test(matrix(c(8,2,3,7),2), alternative="greater")).
    assert fisher_lower(Counts(8, 10), Counts(3, 10)) == pytest.approx(0.03489, abs=1e-5)
    assert fisher_lower(Counts(5, 10), Counts(10, 10)) == pytest.approx(1.0)


def test_compare_rates_says_regression_no_change_or_inconclusive() -> None:
    inconclusive = compare_rates(Counts(10, 10), Counts(7, 10))
    assert inconclusive.verdict == "inconclusive"
    assert inconclusive.describe() == (
        "inconclusive: passed 7/10 runs against 10/10 in the baseline "
        "(Fisher's exact test, one-sided p = 0.105)"
    )
    regression = compare_rates(Counts(10, 10), Counts(2, 10))
    assert (regression.verdict, f"{regression.p_value:.2g}") == ("regression", "0.00036")
    assert compare_rates(Counts(6, 10), Counts(6, 10)).verdict == "no change"
    assert compare_rates(Counts(3, 5), Counts(7, 10)).verdict == "no change"
    assert compare_rates(Counts(0, 0), Counts(1, 10)).verdict == "inconclusive"
    assert compare_rates(Counts(3, 3), Counts(0, 3)).verdict == "regression"  # p = 0.05


def test_counts_refuse_more_passes_than_runs() -> None:
    with pytest.raises(ValueError, match=r"passed=3 is not within 0\.\.runs=2"):
        Counts(3, 2)
