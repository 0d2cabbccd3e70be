"""Cekura cases written as ordinary pytest tests, beside the cases in cekura.toml.

The marker fires the evaluator with the other cases (same batch); the ``cekura_run``
fixture hands the finished run to the test, which can assert things of its own.
"""

import pytest


@pytest.mark.cekura(scenario=101)
def test_books_a_table(cekura_run):
    assert cekura_run.passed
    assert cekura_run.transcript  # fetched lazily, in one bulk request for all runs


@pytest.mark.xfail(reason="known bug #42: the bot books after closing time", strict=True)
@pytest.mark.cekura(scenario=102)
def test_refuses_late_booking():
    """The evaluation fails today; xfail keeps the suite green until the bot is fixed."""
