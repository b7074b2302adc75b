"""The ``bmdqct`` command: one program, argparse subcommands.

Each topic registers its subcommands from a private module ``bmdqct/cli/_<topic>.py``
that exposes ``register(commands, common)``; heavy imports (TensorFlow, matplotlib)
happen inside the subcommand functions, so ``bmdqct --help`` starts fast.
Exit codes: 0 success, 1 a bmdqct error (bad input data), 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import BMDQCTError

__all__ = ["main"]

_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)
#: Loggers of libraries that warn about internals a user cannot act on (shown with -vv).
_NOISY_LOGGERS = ("absl", "tensorflow", "keras", "h5py")

# Topic modules, in the order their subcommands appear in --help.
_TOPICS = (
    "_measure",
    "_review",
    "_io",
    "_synthetic",
    "_segment",
    "_calibration",
    "_agreement",
    "_flags",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bmdqct`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=_LEVELS[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.verbose < 2:
        _quiet_third_party()
    try:
        return int(args.func(args) or 0)
    except BMDQCTError as err:
        print(f"bmdqct: error: {err}", file=sys.stderr)
        return 1


def _quiet_third_party() -> None:
    """Below -vv, keep TensorFlow's and absl's Python-side warnings off stderr.

    (Their C-level start-up lines are captured by ``bmdqct.segment`` and logged at DEBUG.)
    """
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    verbose_help = "-v for INFO, -vv for DEBUG log messages (stderr)"
    # subcommands get their own -v; SUPPRESS keeps `bmdqct -v info X` from being reset to 0
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help=verbose_help)
    parser = argparse.ArgumentParser(
        prog="bmdqct",
        description="Vertebral trabecular BMD (mg/cm3) from routine and low-dose chest CT.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=verbose_help)
    parser.add_argument("--version", action="version", version=f"bmdqct {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for topic in _TOPICS:
        importlib.import_module(f"bmdqct.cli.{topic}").register(commands, common)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
