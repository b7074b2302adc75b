"""``bmdqct`` subcommands of the io topic (see :mod:`bmdqct.cli`).

* ``bmdqct info PATH [--series-uid UID] [--json]``: geometry and scanner metadata of a CT.
* ``bmdqct series PATH [--json]``: the DICOM series under a folder.
"""

from __future__ import annotations

import argparse
import json


def register(commands, common) -> None:
    """Add this topic's subcommands to `commands` (an argparse subparsers action)."""
    info = commands.add_parser(
        "info", parents=[common], help="show the geometry and scanner metadata of a CT",
        description="Read a CT (DICOM folder or file, NIfTI, MHA/MHD, NRRD) as bmdqct does and "
                    "print its canonical geometry, HU range and scanner metadata.")
    info.add_argument("path", help="DICOM folder or file, .nii/.nii.gz, .mha/.mhd or .nrrd")
    info.add_argument("--series-uid", help="SeriesInstanceUID to read (see `bmdqct series`)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_run_info)

    series = commands.add_parser(
        "series", parents=[common], help="list the DICOM series under a folder",
        description="List the DICOM series found recursively under a folder; the first CT "
                    "series listed is the one `bmdqct info` and `bmdqct measure` read.")
    series.add_argument("path", help="folder (searched recursively) or DICOM file")
    series.add_argument("--json", action="store_true", help="print JSON instead of a table")
    series.set_defaults(func=_run_series)


def _info(volume) -> dict:
    import numpy as np

    corners = volume.index_to_world(np.array([[0, 0, 0], [n - 1 for n in volume.shape]]))
    geometry = {
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 6) for s in volume.spacing],
        "orientation": "".join(volume.orientation),
        "first_voxel_lps_mm": [round(float(v), 4) for v in corners[0]],
        "last_voxel_lps_mm": [round(float(v), 4) for v in corners[1]],
        "min_hu": float(volume.hu.min()),
        "max_hu": float(volume.hu.max()),
    }
    metadata = {}
    for key, value in volume.metadata.items():
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        metadata[key] = value
    return {"geometry": geometry, "metadata": metadata}


def _run_info(args: argparse.Namespace) -> int:
    from ..io import load_ct

    info = _info(load_ct(args.path, series_uid=args.series_uid))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for section, values in info.items():
        print(f"[{section}]")
        width = max(len(k) for k in values)
        for key, value in values.items():
            if key == "input_affine" and value is not None:
                value = "; ".join(" ".join(f"{v:.6g}" for v in row) for row in value)
            print(f"  {key:<{width}}  {'-' if value is None else value}")
    return 0


def _run_series(args: argparse.Namespace) -> int:
    from ..io import list_series

    series = list_series(args.path)
    rows = [{"uid": s.uid, "modality": s.modality, "n_slices": s.n_slices, "n_files": s.n_files,
             "size": f"{s.rows}x{s.cols}", "plane": s.plane, "kvp": s.kvp,
             "slice_thickness_mm": s.slice_thickness_mm, "description": s.description,
             "folder": str(s.folder)} for s in series]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("uid", "modality", "n_slices", "size", "plane", "kvp", "slice_thickness_mm",
               "description", "folder")
    table = [[("-" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for line in table:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
    return 0
