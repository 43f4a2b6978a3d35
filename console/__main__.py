"""`python -m console` and the installed `govcon` command."""

import sys

from console import startup


def run() -> int:
    startup.pause()  # before the heavy imports: see console/startup.py
    from console.cli import main
    return main()


if __name__ == "__main__":
    sys.exit(run())
