"""Does an agent that says 0.9 succeed nine times in ten? Stated confidence against observed outcomes.

Every grant records the confidence the agent stated and, later, its outcome. Per agent and command
type the stated confidences fall into ten bins (0.0–0.1 … 0.9–1.0, the last one closed); each bin
shows how many outcomes it holds, their mean stated confidence and the share that succeeded. The
Brier score is the mean squared gap between stated confidence and outcome (0 is perfect, 0.25 is a
coin toss stated as 0.5); the expected calibration error (ECE) is the outcome-weighted mean gap
between a bin's stated mean and its observed success.

A policy with ``calibrated = true`` judges the bin's observed success instead of the stated number,
once the bin holds ``MIN_OUTCOMES``; before that the stated confidence is used, and the gate says so.
Outcomes: ``succeeded`` is a success; ``failed``, ``rolled_back`` and ``expired`` (nobody knows it
worked) are not; ``released`` grants never acted and are left out. No outcomes → null figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.clock import Clock
from engine.domain import GrantStatus
from storage import calibration_repo
from storage.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

BINS = 10
MIN_OUTCOMES = 10
LOOKBACK = timedelta(days=90)


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    stated_mean: float | None
    observed: float | None  # the share that succeeded; None when the bin is empty

    @property
    def label(self) -> str:
        return f"{self.low:.1f}–{self.high:.1f}"

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "count": self.count, "statedMean": _round(self.stated_mean),
                "observed": _round(self.observed)}


@dataclass(frozen=True)
class Calibration:
    agent: str
    command_type: str | None  # None: every type of the agent
    outcomes: int
    succeeded: int
    bins: tuple[CalibrationBin, ...]
    brier: float | None
    ece: float | None
    min_outcomes: int = MIN_OUTCOMES

    def bin_for(self, confidence: float) -> CalibrationBin:
        return self.bins[bin_index(confidence, len(self.bins))]

    def judge(self, stated: float) -> tuple[float, str]:
        """The confidence a calibrated policy compares with its threshold, and a sentence saying which."""
        return judge_bin(self.agent, self.command_type, self.bin_for(stated), stated, self.min_outcomes)

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "commandType": self.command_type, "outcomes": self.outcomes,
                "succeeded": self.succeeded, "brier": _round(self.brier), "ece": _round(self.ece),
                "minOutcomes": self.min_outcomes, "bins": [b.to_json() for b in self.bins]}


def judge_bin(agent: str, command_type: str | None, b: CalibrationBin, stated: float,
              min_outcomes: int) -> tuple[float, str]:
    who = agent + (f" ({command_type})" if command_type else "")
    if b.count < min_outcomes or b.observed is None:
        return stated, (f"{who} has {b.count} outcome{'' if b.count == 1 else 's'} at stated {b.label} "
                        f"(calibration needs {min_outcomes}): the stated confidence {stated:.2f} is used")
    succeeded = round(b.observed * b.count)
    return b.observed, (f"calibrated confidence {b.observed:.2f} (stated {stated:.2f}): {who} succeeded "
                        f"{succeeded} of {b.count} at stated {b.label}")


def bin_index(confidence: float, bins: int = BINS) -> int:
    """0 for [0, 0.1), …, bins-1 for [0.9, 1.0] (1.0 belongs to the last bin)."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence {confidence!r} is outside 0..1")
    return min(int(confidence * bins), bins - 1)


def calibrate(agent: str, command_type: str | None, outcomes: Iterable[tuple[float, bool]], *,
              bins: int = BINS, min_outcomes: int = MIN_OUTCOMES) -> Calibration:
    """The calibration of (stated confidence, succeeded) pairs."""
    stated: list[list[float]] = [[] for _ in range(bins)]
    hits = [0] * bins
    squared = 0.0
    n = succeeded = 0
    for confidence, success in outcomes:
        i = bin_index(confidence, bins)
        stated[i].append(confidence)
        hits[i] += success
        squared += (confidence - (1.0 if success else 0.0)) ** 2
        n += 1
        succeeded += success
    made = []
    gap = 0.0
    for i in range(bins):
        count = len(stated[i])
        mean: float | None = None
        observed: float | None = None
        if count:
            # the mean of the bin's values lies between their least and greatest; float summing can land a
            # hair outside (three 0.7s average to 0.6999999999999998, below the bin): clamp it back
            values = stated[i]
            mean = min(max(math.fsum(values) / count, min(values)), max(values))
            observed = hits[i] / count
            gap += count * abs(observed - mean)
        made.append(CalibrationBin(i / bins, (i + 1) / bins, count, mean, observed))
    return Calibration(agent, command_type, n, succeeded, tuple(made), squared / n if n else None,
                       gap / n if n else None, min_outcomes)


class CalibrationBook:
    """Calibration read from the store's grants (the last ``LOOKBACK``, newest 20,000 outcomes)."""

    def __init__(self, store: Store, clock: Clock, *, min_outcomes: int = MIN_OUTCOMES) -> None:
        self.store = store
        self.clock = clock
        self.min_outcomes = min_outcomes

    def report(self, agent: str | None = None, *, by_type: bool = True) -> list[Calibration]:
        """One calibration per agent (and command type, with ``by_type``), agents in name order."""
        with self.store.read() as conn:
            rows = calibration_repo.judged_grants(conn, since=self.clock.now() - LOOKBACK, agent=agent)
        groups: dict[tuple[str, str | None], list[tuple[float, bool]]] = defaultdict(list)
        for who, ctype, confidence, status in rows:
            groups[(who, ctype if by_type else None)].append((confidence, status == GrantStatus.SUCCEEDED))
        return [calibrate(who, ctype, pairs, min_outcomes=self.min_outcomes)
                for (who, ctype), pairs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]

    def of(self, conn: Connection, agent: str, command_type: str) -> Calibration:
        """The calibration the gate uses: this agent on this type, read on the caller's connection."""
        return calibration_in(conn, agent, command_type, self.clock.now(), min_outcomes=self.min_outcomes)


def calibrated_in(conn: Connection, agent: str, command_type: str, stated: float, now: datetime, *,
                  min_outcomes: int = MIN_OUTCOMES) -> tuple[float, str]:
    """What the gate judges for a calibrated policy: one bin's counts (one indexed aggregate), not the history."""
    i = bin_index(stated)
    low, high = i / BINS, (i + 1) / BINS
    count, succeeded = calibration_repo.bin_counts(conn, agent=agent, command_type=command_type, since=now - LOOKBACK,
                                                   low=low, high=high, closed=i == BINS - 1)
    b = CalibrationBin(low, high, count, None, succeeded / count if count else None)
    return judge_bin(agent, command_type, b, stated, min_outcomes)


def calibration_in(conn: Connection, agent: str, command_type: str, now: datetime, *,
                   min_outcomes: int = MIN_OUTCOMES) -> Calibration:
    """This agent on this type over the ``LOOKBACK`` before ``now``, read on ``conn`` (the gate's)."""
    rows = calibration_repo.judged_grants(conn, since=now - LOOKBACK, agent=agent, command_type=command_type)
    return calibrate(agent, command_type, ((c, s == GrantStatus.SUCCEEDED) for _, _, c, s in rows),
                     min_outcomes=min_outcomes)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
