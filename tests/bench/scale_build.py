"""Build a scale store (180 days of simulator history ending at the bench END) once into a cache dir.

    python -m tests.bench.scale_build DIR COMMANDS_PER_HOUR   # 78 -> ~1M events, 780 -> ~10M

The history is ingested through the real Ingestor in day-sized slices so memory stays bounded.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

from engine.clock import ManualClock
from engine.governance import Governance
from engine.simulator import generate_history
from storage.migrate import head_revision
from storage.store import Store
from tests.bench.conftest import END, HISTORY_DAYS


def build(directory: Path, per_hour: int) -> Path:
    path = directory / f"scale-{head_revision()}-{per_hour}.db"
    if path.exists():
        return path
    tmp = path.with_suffix(".building")
    store = Store(f"sqlite:///{tmp}")
    gov = Governance(store, ManualClock(END))
    gov.init_store("bench", phase_started=END - timedelta(days=HISTORY_DAYS + 20))
    started = time.perf_counter()
    accepted = 0
    day = END - timedelta(days=HISTORY_DAYS)
    part = 0
    while day < END:
        part += 1
        nxt = min(day + timedelta(days=10), END)
        result = gov.ingestor.ingest_objects(generate_history(day, nxt, commands_per_hour=per_hour,
                                                                   seed=part, id_prefix=f"h{part}"))
        accepted += result.accepted
        print(f"{nxt:%Y-%m-%d} {accepted:,} events {time.perf_counter() - started:.0f} s", flush=True)
        day = nxt
    store.dispose()
    tmp.rename(path)
    return path


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), int(sys.argv[2])))
