"""``bmdqct measure`` and ``bmdqct demo`` (see :mod:`bmdqct.cli`)."""

from __future__ import annotations

import sys


def register(commands, common) -> None:
    """Add ``measure`` and ``demo`` to `commands` (an argparse subparsers action)."""
    demo = commands.add_parser("demo", parents=[common],
                               help="synthesize a phantom and a subject scan, calibrate, measure")
    demo.add_argument("-o", "--output", default="bmdqct-demo", help="output folder")
    demo.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    print("bmdqct demo: not available yet (the measurement pipeline has not landed)",
          file=sys.stderr)
    return 0
