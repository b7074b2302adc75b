"""``bmdqct review OUT``: an HTML page to review a finished ``bmdqct measure`` folder (see :mod:`bmdqct.cli`).

A thin shell around :func:`bmdqct.review.write_review`.
"""

from __future__ import annotations

import argparse


def register(commands, common) -> None:
    """Add ``review`` to `commands` (an argparse subparsers action)."""
    review = commands.add_parser(
        "review", parents=[common], help="HTML page to review the cases of a 'bmdqct measure' output folder",
        description="Write OUT/review.html: one static page (no server, no network) with a row per case of "
                    "OUT/results.csv: the QC thumbnail, BMD per level, the L1-L2 BMD, the category, the status, "
                    "the QC flags (hover for their meaning) and links to each result.json and picture. Click a "
                    "column header to sort, type in the box to filter. Open it in any web browser.")
    review.add_argument("output", metavar="OUT", help="output folder of 'bmdqct measure -o OUT'")
    review.add_argument("--title", help="page title (default: 'bmdqct cohort review: <folder name>')")
    review.set_defaults(func=_run_review)


def _run_review(args: argparse.Namespace) -> int:
    from ..review import write_review

    page = write_review(args.output, title=args.title)
    print(f"review page: {page}")
    return 0
