"""``bmdqct flags [CODE ...] [--json]``: what each QC flag code means and what to do (see :mod:`bmdqct.cli`).

The codes appear in ``result.json`` (``qc.flags``), in the ``flags`` column of
``results.csv`` (``code:level``, separated by ``;``) and on the QC picture.
"""

from __future__ import annotations

import argparse
import json
import textwrap


def register(commands, common) -> None:
    """Add ``flags`` to `commands` (an argparse subparsers action)."""
    flags = commands.add_parser(
        "flags", parents=[common], help="explain the QC flag codes of a report",
        description="Print each QC flag code that bmdqct writes (result.json 'qc.flags', the 'flags' column "
                    "of results.csv as code:level), its meaning and what to do about it.")
    flags.add_argument("codes", nargs="*", metavar="CODE",
                       help="codes to explain, e.g. 'partial' or 'partial:T12' (default: all)")
    flags.add_argument("--json", action="store_true", help="print JSON instead of text")
    flags.set_defaults(func=_run_flags)


def _run_flags(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..qc import FLAG_GLOSSARY

    codes = [c.split(":", 1)[0] for c in args.codes] or sorted(FLAG_GLOSSARY)
    unknown = [c for c in codes if c not in FLAG_GLOSSARY]
    if unknown:
        raise InputError(f"unknown QC flag code(s) {', '.join(unknown)}; known codes: "
                         f"{', '.join(sorted(FLAG_GLOSSARY))}")
    if args.json:
        print(json.dumps({c: {"meaning": FLAG_GLOSSARY[c][0], "action": FLAG_GLOSSARY[c][1]} for c in codes},
                         indent=2))
        return 0
    for code in codes:
        meaning, action = FLAG_GLOSSARY[code]
        print(code)
        print(textwrap.fill(meaning, width=88, initial_indent="  meaning: ", subsequent_indent=" " * 11))
        print(textwrap.fill(action, width=88, initial_indent="  to do:   ", subsequent_indent=" " * 11))
    return 0
