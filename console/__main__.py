"""`python -m console` and the installed `govcon` command."""

import sys

from console import startup


def run() -> int:
    if sys.argv[1:2] == ["gate"]:  # agents' hot path: in client mode, an ask needs only the socket
        from console import gate_cli
        code = gate_cli.run(sys.argv[1:])
        if code is not None:
            return code
    startup.pause()  # before the heavy imports: see console/startup.py
    from console.cli import main
    return main()


if __name__ == "__main__":
    sys.exit(run())
