"""Properties of the rate arithmetic (engine/metrics.py, the contract's four rates): a rate is its
numerator over its denominator exactly, ``None`` (unknown) when the denominator is zero and never 0 or 1
in its place; for the counts of whole command lifecycles every rate lies in [0, 1]."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from engine.metrics import COUNT_NAMES, CommandCounts, ratio

counts = st.builds(CommandCounts, **{name: st.integers(0, 10**9) for name in COUNT_NAMES})

#: what each rate divides (seed 000: successRate over finished commands, errorRate over all commands)
DEFINITIONS = {
    "successRate": lambda c: (c.succeeded, c.succeeded + c.failed),
    "approvalRate": lambda c: (c.approved, c.proposed),
    "rollbackRate": lambda c: (c.rolledBack, c.succeeded),
    "errorRate": lambda c: (c.failed, c.total),
}

#: the status paths a command can take (engine/domain.py's lifecycle)
PATHS = [("proposed",), ("proposed", "rejected"), ("proposed", "approved"),
         ("proposed", "approved", "succeeded"), ("proposed", "approved", "failed"),
         ("proposed", "approved", "succeeded", "rolled_back"), ("succeeded",), ("failed",),
         ("succeeded", "rolled_back")]


@given(numerator=st.integers(0, 10**12), denominator=st.integers(0, 10**12))
def test_ratio_is_exact_or_unknown(numerator, denominator):
    r = ratio(numerator, denominator)
    if denominator == 0:
        assert r is None
    else:
        assert r == float(Fraction(numerator, denominator))  # the nearest float to the exact fraction


@given(c=counts)
def test_each_rate_is_its_numerator_over_its_denominator(c):
    rates = c.rates()
    assert set(rates) == set(DEFINITIONS)
    for name, parts in DEFINITIONS.items():
        numerator, denominator = parts(c)
        assert rates[name] == (None if denominator == 0 else numerator / denominator), name


@given(paths=st.lists(st.sampled_from(PATHS), max_size=50))
def test_rates_of_whole_lifecycles_lie_between_0_and_1(paths):
    by_status = {s: sum(s in p for p in paths) for s in
                 ("proposed", "approved", "rejected", "succeeded", "failed", "rolled_back")}
    c = CommandCounts.from_status_counts({**by_status, "total": len(paths)})
    rates = c.rates()
    for name, value in rates.items():
        assert value is None or 0.0 <= value <= 1.0, (name, value, c)
    assert (rates["errorRate"] is None) == (not paths)
    assert (rates["successRate"] is None) == (c.succeeded + c.failed == 0)
    assert c.to_json() == {**{k: by_status.get(k, 0) for k in ("proposed", "approved", "rejected", "succeeded",
                                                               "failed")},
                           "total": len(paths), "rolledBack": by_status["rolled_back"]}
