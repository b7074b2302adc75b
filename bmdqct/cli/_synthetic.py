"""``bmdqct`` subcommands of the synthetic topic (see :mod:`bmdqct.cli`).

* ``bmdqct synth -n 20 -o DIR [--seed S] [--coarse] [...]``: a synthetic screening
  cohort: per case ``DIR/<case>/ct.nii.gz``, ``levels.nii.gz`` (VerSe ids),
  ``classes.nii.gz`` (4 classes), ``trabecular.nii.gz`` and ``truth.json``; plus
  ``DIR/reference.csv`` (simulated QCT reference, the layout ``bmdqct agreement``
  reads) and ``DIR/truth.csv`` (true values and scan settings).
* ``bmdqct synth --phantom NAME -o DIR [--kvp KV] [--date D]``: a QA scan of a calibration
  phantom (``DIR/phantom_scan/``, DICOM) and its example certificate (``DIR/certificate.json``).
"""

from __future__ import annotations

import argparse
import json


def register(commands, common) -> None:
    """Add this topic's subcommands to `commands` (an argparse subparsers action)."""
    synth = commands.add_parser(
        "synth", parents=[common], help="write a synthetic LDCT cohort with ground truth",
        description="Draw a synthetic low-dose chest CT screening cohort (sex, age, BMD per level, "
                    "scanner, kVp, dose) and write each scan as NIfTI with its label maps and truth "
                    "JSON, plus the simulated QCT reference table.")
    synth.add_argument("-n", "--number", type=_positive_int, default=20, help="number of cases (default 20)")
    synth.add_argument("-o", "--output", required=True, help="output folder (created)")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    synth.add_argument("--shape", type=int, default=512, help="in-plane pixels (default 512)")
    synth.add_argument("--pixel-mm", type=float, default=None,
                       help="pixel size in mm (default: fit the body, 0.6-0.9 mm at 512)")
    synth.add_argument("--slice-mm", type=float, default=1.0, help="slice spacing in mm (default 1.0)")
    synth.add_argument("--cranial", default="C7", help="first level in the scan (default C7)")
    synth.add_argument("--caudal", default="L2", help="last level in the scan (default L2)")
    synth.add_argument("--coarse", action="store_true",
                       help="quick coarse scans: 192x192 pixels of 2 mm, 2-mm slices")
    synth.add_argument("--fracture-rate", type=float, default=0.0,
                       help="probability of a wedge fracture at T11-L2 (default 0)")
    synth.add_argument("--sclerotic-rate", type=float, default=0.0,
                       help="probability of a sclerotic bone island at T12-L2 (default 0)")
    synth.add_argument("--no-scans", action="store_true", help="write only the cohort tables")
    synth.add_argument("--progress", action="store_true", help="show a progress bar")
    phantom = synth.add_argument_group(
        "phantom scan (for 'bmdqct calibrate')",
        "--phantom NAME writes instead a QA scan of that calibration phantom as a DICOM series "
        "(DIR/phantom_scan/, scanner, kVp and date in the tags) and its EXAMPLE certificate "
        "(DIR/certificate.json); then: bmdqct calibrate DIR/phantom_scan --phantom NAME "
        "--certificate DIR/certificate.json --store STORE")
    phantom.add_argument("--phantom", metavar="NAME", choices=_phantom_names(),
                         help="phantom model: " + ", ".join(_phantom_names()))
    phantom.add_argument("--kvp", type=float, default=120.0, help="tube voltage of the phantom scan (default 120)")
    phantom.add_argument("--date", default="2024-01-15", help="acquisition date YYYY-MM-DD (default 2024-01-15)")
    phantom.add_argument("--scanner", default="SYN-0001", choices=_scanner_serials(), metavar="SERIAL",
                         help="scanner of the synthetic site (its serial, as in a synth case's ct.json): "
                              + ", ".join(_scanner_serials()) + " (default SYN-0001)")
    synth.set_defaults(func=_run_synth)


def _scanner_serials() -> tuple[str, ...]:
    from ..synthetic.cohort import SCANNER_FLEET

    return tuple(s["device_serial"] for s in SCANNER_FLEET)


def _phantom_names() -> tuple[str, ...]:
    from ..calibration import PHANTOMS

    return tuple(PHANTOMS)


def _run_phantom(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..io import write_dicom_series
    from ..synthetic import synthesize_phantom_scan

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    from ..synthetic.cohort import SCANNER_FLEET

    scanner = next(s for s in SCANNER_FLEET if s["device_serial"] == args.scanner)
    volume, truth = synthesize_phantom_scan(args.phantom, args.seed, kvp=args.kvp, scanner=scanner,
                                            study_date=args.date)
    scan = out / "phantom_scan"
    if scan.exists():
        from ..errors import InputError

        raise InputError(f"{scan} exists already; choose another -o folder")
    staging = out / f".phantom_scan.tmp{os.getpid()}"
    write_dicom_series(volume, staging)
    os.replace(staging, scan)
    certificate = truth.certificate.to_json(out / "certificate.json")
    print(f"phantom scan of {args.phantom} ({volume.shape}, {args.kvp:g} kVp, {args.date}) -> {scan}/")
    print(f"its EXAMPLE certificate -> {certificate}")
    print(f"next: bmdqct calibrate {scan} --phantom {args.phantom} --certificate {certificate} --store STORE")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _run_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.phantom:
        return _run_phantom(args)

    import numpy as np
    from tqdm import tqdm

    from ..io import write_nifti
    from ..synthetic import synthesize_cohort

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cohort = synthesize_cohort(args.number, seed=args.seed, fracture_rate=args.fracture_rate,
                               sclerotic_rate=args.sclerotic_rate)
    reference = cohort.to_csv(out / "reference.csv")
    truth_csv = cohort.to_csv(out / "truth.csv", truth=True)
    print(f"cohort of {len(cohort)} (seed {args.seed}): prevalence of osteoporosis "
          f"{cohort.prevalence()['osteoporosis']:.0%}; reference -> {reference}; truth -> {truth_csv}")
    if args.no_scans:
        return 0
    grid = {"shape": args.shape, "pixel_mm": args.pixel_mm, "slice_mm": args.slice_mm,
            "cranial": args.cranial, "caudal": args.caudal}
    if args.coarse:
        grid.update(shape=192, pixel_mm=2.0, slice_mm=2.0)
    for subject in tqdm(cohort.subjects, disable=not args.progress, desc="synth"):
        volume, truth = cohort.synthesize(subject.case, **grid)
        folder = out / subject.case
        folder.mkdir(exist_ok=True)
        # real CT stores integer HU; rounding adds an SD of 0.29 HU
        write_nifti(volume.with_hu(np.round(volume.hu)), folder / "ct.nii.gz", sidecar=True)   # + ct.json
        write_nifti(truth.levels, folder / "levels.nii.gz")
        write_nifti(truth.classes, folder / "classes.nii.gz")
        write_nifti(truth.trabecular, folder / "trabecular.nii.gz")
        summary = truth.to_dict()
        summary["case"] = subject.case
        summary["reference_mg_cm3"] = {k: (None if v != v else v) for k, v in subject.reference_mg_cm3.items()}
        (folder / "truth.json").write_text(json.dumps(summary, indent=2, default=_json_default))
        print(f"{subject.case}: {volume.shape} at {volume.spacing[1]:.2f} mm, {truth.kvp:g} kVp, "
              f"L1 {truth.density_mg_cm3.get('L1', float('nan')):.1f} mg/cm3 -> {folder}")
    return 0


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
