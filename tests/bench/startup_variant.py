"""`govcon` (as `python -m console` runs it) with one of its start-up optimisations taken out, for
tests/bench/bench_startup.py (issue 17 pt 4: keep an optimisation only if it still pays for itself).

    python tests/bench/startup_variant.py VARIANT [govcon arguments ...]

VARIANT is one of:
- ``as-is``: govcon unchanged (the baseline each variant is compared with, launched the same way);
- ``no-gc-pause``: the collector stays on during start-up (console/startup.py's pause is not taken);
- ``eager-imports``: every module of console/, screens/, engine/ and storage/ (but the alembic migrations) is imported first, as if
  the function-level imports were at the top of their modules.

The variants are made here by replacing one function from outside, at the edge of the program, so the
product carries no switch for them.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

VARIANTS = ("as-is", "no-gc-pause", "eager-imports")
ROOT = Path(__file__).resolve().parents[2]


def _import_everything() -> None:
    for package in ("storage", "engine", "screens", "console"):
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=package + "."):
            if info.name.endswith("__main__") or info.name.startswith("storage.migrations"):
                continue
            importlib.import_module(info.name)


def main() -> int:
    variant, sys.argv = sys.argv[1], ["govcon", *sys.argv[2:]]
    if variant not in VARIANTS:
        raise SystemExit(f"startup_variant: unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    from console import startup
    if variant == "no-gc-pause":
        startup.pause = lambda: None
    else:
        startup.pause()  # what console/__main__.py does first; the patches below import heavy modules
    if variant == "eager-imports":
        _import_everything()
    from console.__main__ import run
    return run()


if __name__ == "__main__":
    sys.exit(main())
