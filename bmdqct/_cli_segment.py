"""``bmdqct`` subcommands of the segment topic (see :mod:`bmdqct.cli`)."""

from __future__ import annotations


def register(commands, common) -> None:
    """Add this topic's subcommands to `commands` (an argparse subparsers action)."""
