"""The Governance facade's parts are one per facade, whichever threads ask first (how and when they are
built is the facade's business: the start-up benchmark measures that)."""

from __future__ import annotations

import threading

from engine.governance import Governance


def test_parts_built_on_first_use_are_built_once_under_concurrent_first_use(store, clock):
    gov = Governance(store, clock)
    start = threading.Barrier(16)
    seen: list[tuple[int, int, int]] = []

    def first_use() -> None:
        start.wait()
        seen.append((id(gov.gate), id(gov.policies), id(gov.ingestor)))

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1
    assert gov.gate.policy is gov.policies
    assert len(gov.ingestor.listeners) == 1  # the breakers' listener, added once


def test_the_kill_switch_and_alerting_parts_are_one_each(store, clock):
    gov = Governance(store, clock)
    assert gov.notifier is gov.notifier and gov.overrides is gov.overrides and gov.breakers is gov.breakers
