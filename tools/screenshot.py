"""Export the console's dashboard as docs/screenshot.svg for the README (`make screenshot`).

The store is the deterministic one the console's snapshot tests use (tests/pilot/seed.py: a fixed clock,
fixed ids, three days of seeded history, an open breaker event, a pending proposal, readiness history),
built in a scratch directory; the app runs headless at 120x40 until its first complete dashboard (live
panes, readiness and the three trend plots) has been painted, and Textual exports that screen as SVG.
Two runs write the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "screenshot.svg"
SIZE = (120, 40)
MAX_ROUNDS = 200


async def _shoot(db: Path, out: Path, size: tuple[int, int]) -> None:
    from console.app import make_app
    from tests.pilot.seed import OPERATOR, seeded_gov

    gov = seeded_gov(str(db))
    try:
        app = make_app(gov, operator=OPERATOR, scheduler=False)
        async with app.run_test(size=size) as pilot:
            for _ in range(MAX_ROUNDS):
                await pilot.pause()
                await app.workers.wait_for_complete()
                if getattr(app.screen, "completed_at", None) is not None:
                    break
            else:
                raise SystemExit(f"screenshot: the dashboard did not complete after {MAX_ROUNDS} rounds")
            for _ in range(3):  # tables measure their rows when idle; let that paint too
                await pilot.pause()
                await app.workers.wait_for_complete()
            app.save_screenshot(filename=out.name, path=str(out.parent))
    finally:
        gov.store.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT.relative_to(ROOT)}")
    parser.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}", help="COLUMNSxROWS (default 120x40)")
    args = parser.parse_args(argv)
    try:
        cols, rows = (int(n) for n in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r}: expected COLUMNSxROWS, e.g. 120x40")
    os.environ.pop("NO_COLOR", None)  # the README shows the colours, whoever runs this
    sys.path.insert(0, str(ROOT))     # tests.pilot.seed, when run as `python tools/screenshot.py`
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="govcon-screenshot-") as tmp:
        asyncio.run(_shoot(Path(tmp) / "governance.db", out, (cols, rows)))
    print(f"wrote {out} ({cols}x{rows})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
