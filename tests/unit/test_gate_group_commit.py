"""engine.gate.GroupCommit: concurrent callers share one write, each gets its own answer, in order."""

from __future__ import annotations

import threading
import time

import pytest

from engine.gate import GroupCommit


def test_concurrent_callers_are_written_in_groups_and_answered_each():
    groups: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        groups.append(list(items))
        time.sleep(0.02)  # a slow commit: the callers arriving meanwhile queue for the next group
        return [i * 10 for i in items]

    gc = GroupCommit(write, max_group=8)
    answers: dict[int, int] = {}
    start = threading.Barrier(20)

    def ask(i: int) -> None:
        start.wait()
        answers[i] = gc.submit(i)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert answers == {i: i * 10 for i in range(20)}
    assert sorted(i for g in groups for i in g) == list(range(20))  # each written once
    assert max(len(g) for g in groups) > 1 and all(len(g) <= 8 for g in groups)
    assert len(groups) < 20


def test_a_caller_alone_is_a_group_of_one_and_errors_reach_every_caller_of_the_group():
    gc = GroupCommit(lambda items: [x + 1 for x in items])
    assert gc.submit(1) == 2

    def broken(items):
        raise RuntimeError("store gone")

    with pytest.raises(RuntimeError, match="store gone"):
        GroupCommit(broken).submit(1)
