"""The Governance facade's parts are one per facade and wired to each other: the gate decides with the
facade's own policies, grants and leases, and the ingestor hands outcomes to the same grants."""

from __future__ import annotations

import threading

from engine.governance import Governance


def test_every_thread_sees_the_same_parts(store, clock):
    gov = Governance(store, clock)
    start = threading.Barrier(16)
    seen: list[tuple[int, int, int]] = []

    def use() -> None:
        start.wait()
        seen.append((id(gov.gate), id(gov.policies), id(gov.ingestor)))

    threads = [threading.Thread(target=use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1


def test_the_parts_are_wired_to_each_other(store, clock):
    gov = Governance(store, clock)
    assert gov.gate.policy is gov.policies and gov.gate.actions is gov.actions
    assert gov.actions.policies is gov.policies
    assert gov.ingestor.command_hooks == [gov.actions]
    assert len(gov.ingestor.listeners) == 1  # the breakers judge once per stored batch
    assert gov.overrides._gate() is gov.gate  # a drill asks the facade's gate


def test_no_breaker_listener_when_ingest_does_not_evaluate(store, clock):
    assert Governance(store, clock, evaluate_on_ingest=False).ingestor.listeners == []
