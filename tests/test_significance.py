"""The change between two periods and its significance (CONTRACT section 2), held to scipy and to docs/metrics.md.

The reference is scipy's Pearson chi-square test of the 2x2 table (resolved / not resolved by period) without
continuity correction: for two proportions it is the same test as the pooled two-sided z-test (χ² = z²), computed
another way, so agreeing to 1e-9 checks the formula and its numerics, not a copy of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, norm

from metrics.query import Counts
from metrics.significance import (
    best_first_key,
    change_between,
    far_less_data,
    two_proportion_p_value,
    versus_rest,
    worst_first_key,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def scipy_p_value(resolved_a: int, matured_a: int, resolved_b: int, matured_b: int) -> float:
    table = [[resolved_a, matured_a - resolved_a], [resolved_b, matured_b - resolved_b]]
    return float(chi2_contingency(table, correction=False).pvalue)


@st.composite
def two_periods(draw: st.DrawFn) -> tuple[int, int, int, int]:
    matured_a = draw(st.integers(1, 5000))
    matured_b = draw(st.integers(1, 5000))
    return draw(st.integers(0, matured_a)), matured_a, draw(st.integers(0, matured_b)), matured_b


@given(two_periods())
def test_p_value_matches_scipy(periods: tuple[int, int, int, int]) -> None:
    resolved_a, matured_a, resolved_b, matured_b = periods
    ours = two_proportion_p_value(*periods)
    assert ours is not None
    pooled = (resolved_a + resolved_b) / (matured_a + matured_b)
    if pooled in (0.0, 1.0):
        assert ours == 1.0  # the contract's rule; scipy refuses a table with an empty column
        return
    assert ours == pytest.approx(scipy_p_value(*periods), abs=1e-9)


@pytest.mark.parametrize(
    "periods",
    [
        (0, 10, 0, 20),  # both rates 0: pooled 0
        (10, 10, 20, 20),  # both rates 100%: pooled 1
        (0, 1, 1, 1),  # one of each, opposite outcomes
        (0, 50, 50, 50),  # 0% against 100%
        (1, 1000, 999, 1000),
        (7530, 10000, 7300, 10000),
    ],
)
def test_zero_full_and_extreme_rates(periods: tuple[int, int, int, int]) -> None:
    resolved_a, matured_a, resolved_b, matured_b = periods
    ours = two_proportion_p_value(*periods)
    pooled = (resolved_a + resolved_b) / (matured_a + matured_b)
    if pooled in (0.0, 1.0):
        assert ours == 1.0
    else:
        assert ours == pytest.approx(scipy_p_value(*periods), abs=1e-9)
        # and the z-test as the contract words it, through scipy's normal distribution
        rate_a, rate_b = resolved_a / matured_a, resolved_b / matured_b
        z = (rate_a - rate_b) / (pooled * (1 - pooled) * (1 / matured_a + 1 / matured_b)) ** 0.5
        assert ours == pytest.approx(2 * norm.sf(abs(z)), abs=1e-9)


def test_empty_periods_have_no_change() -> None:
    for now, before in ((Counts(0, 0, 5), Counts(10, 5)), (Counts(10, 5), Counts()), (Counts(), Counts())):
        change = change_between(now, before)
        assert (change.points, change.p_value, change.significant) == (None, None, None)
    assert two_proportion_p_value(0, 0, 3, 4) is None


def test_same_rates_at_zero_and_full_are_not_significant() -> None:
    for now, before in ((Counts(10, 0), Counts(20, 0)), (Counts(10, 10), Counts(20, 20))):
        change = change_between(now, before)
        assert (change.points, change.p_value, change.significant) == (0.0, 1.0, False)


def test_the_issue_example_is_noise() -> None:
    """Maria from 75.3% to 73.0% on 1,250 contacts a period: down 2.3 points, p ≈ 0.19, not significant."""
    change = change_between(Counts(1250, 912), Counts(1250, 941))
    assert change.points == pytest.approx(-2.32)
    assert change.significant is False and change.p_value == pytest.approx(0.1854, abs=1e-4)


def test_docs_worked_example() -> None:
    """docs/metrics.md works one change through by hand; the page and the code must agree to 1e-9."""
    text = DOCS.read_text()
    match = re.search(
        r"now (\d+) of (\d+), before (\d+) of (\d+).*?z = ([−-]?[\d.]+).*?p = (\d\.\d+)", text.replace("\n", " ")
    )
    assert match is not None, "docs/metrics.md lost its significance example"
    resolved_a, matured_a, resolved_b, matured_b = (int(match.group(i)) for i in range(1, 5))
    p_value = two_proportion_p_value(resolved_a, matured_a, resolved_b, matured_b)
    assert p_value == pytest.approx(float(match.group(6)), abs=1e-9)
    assert p_value == pytest.approx(scipy_p_value(resolved_a, matured_a, resolved_b, matured_b), abs=1e-9)


def test_far_less_data_only_when_the_data_starts_inside_the_previous_period() -> None:
    now, thin = Counts(1000, 800), Counts(100, 90)
    assert far_less_data(now, thin, data_since_us=50, before_since_us=0)
    assert not far_less_data(now, thin, data_since_us=0, before_since_us=0)  # a real drop in volume
    assert not far_less_data(now, Counts(900, 700), data_since_us=50, before_since_us=0)
    assert not far_less_data(now, thin, data_since_us=None, before_since_us=0)


def test_ranking_does_not_let_a_tiny_sample_top_the_list() -> None:
    """The issue's case: 18 contacts at a low rate against 1,900 clearly below the team."""
    tiny = Counts(18, 11)  # 61%, but anything from 39% to 80%
    large = Counts(1900, 1330)  # 70%, 68% to 72%
    fine = Counts(2000, 1700)  # 85%
    ordered = sorted([("tiny", tiny), ("large", large), ("fine", fine)], key=lambda row: worst_first_key(row[1]))
    assert [name for name, _ in ordered] == ["large", "tiny", "fine"]
    assert sorted([tiny, large, Counts()], key=worst_first_key)[-1] == Counts()  # no data last
    best = sorted([("tiny", Counts(4, 4)), ("fine", fine)], key=lambda row: best_first_key(row[1]))
    assert [name for name, _ in best] == ["fine", "tiny"]  # 4 of 4 is not proof of the best agent


def test_rows_are_flagged_against_the_rest_of_the_scope() -> None:
    scope = Counts(4000, 3200)
    assert versus_rest(Counts(1000, 700), scope) == "below"  # 70% against 2,500 of 3,000 (83%)
    assert versus_rest(Counts(1000, 900), scope) == "above"
    assert versus_rest(Counts(10, 7), scope) is None  # 70% on 10 contacts: not significant
    assert versus_rest(Counts(), scope) is None
