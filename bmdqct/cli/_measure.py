"""``bmdqct measure`` and ``bmdqct demo`` (see :mod:`bmdqct.cli`).

A thin shell: ``measure`` finds the cases with :func:`bmdqct.batch.find_cases`,
measures them with :func:`bmdqct.batch.run_cases` (resume, manifest, failure records,
output layout: see :mod:`bmdqct.batch`), prints one line per case and a summary, and
exits with 1 if a case failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_CASE_RULE = ("A case is one DICOM series folder or one volume file (.nii, .nii.gz, .mha, .mhd, .nrrd; any "
              "letter case). INPUT may be a case or a folder of cases: 'bmdqct measure X' and "
              "'bmdqct measure X/*' both measure every case of a 'bmdqct synth' folder X. A folder holding "
              "DICOM files or exactly one volume file is a case named by the folder (X/case_000/ct.nii.gz "
              "-> case_000, the id of X/reference.csv); other volume files are named by their file name "
              "without suffix. Not cases: non-image files (reference.csv, truth.json) and label maps named "
              "levels, classes, trabecular, labels, seg, mask or voi (or ending _levels, ...).")


def register(commands, common) -> None:
    """Add ``measure`` and ``demo`` to `commands` (an argparse subparsers action)."""
    measure = commands.add_parser(
        "measure", parents=[common], help="BMD of T12, L1, L2 and the ACR category for CT scans",
        description="Segment (or read labels), place the elliptical VOIs of Pan et al. (2020) in T12, L1 and "
                    "L2, convert HU to BMD with a calibration and classify the L1-L2 mean (ACR). Writes "
                    "OUT/<case>/{result.json, labels.nii.gz, voi.nii.gz, qc.png} (with --dicom-out also "
                    "seg.dcm and sr.dcm), OUT/results.csv and OUT/manifest.json ('bmdqct review OUT' "
                    "makes an HTML page of them). Finished cases are skipped when the command is run again. "
                    "Statuses: ok, no_measurement (no level could be measured; the reason says why) and "
                    "failed (the error); the exit code is 1 if any case failed. " + _CASE_RULE)
    measure.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="CT scans or folders of them: DICOM series folders or files, NIfTI, MHA/MHD or "
                              "NRRD (see the case rule above)")
    measure.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    cal = measure.add_mutually_exclusive_group()
    cal.add_argument("--calibration", metavar="CAL.json",
                     help='calibration file ({"slope": s, "intercept": i} at least); without a calibration '
                          "the report holds HU only")
    cal.add_argument("--calibration-store", metavar="DIR",
                     help="calibration store: pick, per scan, the calibration of its scanner and kVp "
                          "closest before the scan date")
    measure.add_argument("--fallback", metavar="RULE",
                         help="with --calibration-store, when no calibration of the scan's scanner and kVp "
                              "lies within --window-days before the scan: nearest-after, nearest, latest-before, "
                              "or a calibration JSON file (default: the case fails)")
    measure.add_argument("--window-days", type=int, default=60,
                         help="oldest store calibration accepted, days before the scan (default 60)")
    measure.add_argument("--labels", action="append", metavar="LABELMAP",
                         help="vertebra label map used instead of the segmentation model; repeat once per "
                              "INPUT, in the same order")
    measure.add_argument("--label-scheme", default="totalsegmentator",
                         choices=["totalsegmentator", "verse", "classes"],
                         help="label ids of --labels: TotalSegmentator 'total' (default), VerSe, or the "
                              "4 segmentation classes written by 'bmdqct segment'")
    measure.add_argument("--model", metavar="MODEL.keras", help="segmentation model (default: shipped weights)")
    measure.add_argument("--levels", nargs="+", default=["T12", "L1", "L2"], metavar="LEVEL",
                         help="levels to measure (default T12 L1 L2)")
    measure.add_argument("--convention", default="acr", choices=["acr", "virtuost"],
                         help="where BMD of exactly 80 and 120 mg/cm3 belongs (default acr: osteopenia)")
    measure.add_argument("--series", metavar="UID", dest="series_uid",
                         help="SeriesInstanceUID to read from each DICOM input that holds several series "
                              "(see 'bmdqct series PATH'; default: the CT series with the most slices)")
    measure.add_argument("--contrast-correction", action="store_true",
                         help="on a scan found contrast-enhanced, subtract the published phase-specific HU "
                              "offset before calibration and give the ACR category (without it such a scan "
                              "gets BMD but no category); bmdqct.measure.measure's contrast_correction")
    measure.add_argument("--dicom-out", action="store_true",
                         help="also write OUT/<case>/seg.dcm (DICOM Segmentation) and sr.dcm (TID 1500 "
                              "measurement report) into the source study, as new series; DICOM inputs only "
                              "(a NIfTI/MHA/NRRD case gets a note saying why not)")
    measure.add_argument("--overwrite", action="store_true", help="re-measure cases that have a result")
    measure.add_argument("--no-qc-picture", action="store_true", help="skip the QC picture")
    measure.add_argument("--no-progress", action="store_true", help="no progress bar")
    measure.set_defaults(func=_run_measure)

    demo = commands.add_parser(
        "demo", parents=[common],
        help="synthesize a phantom and a subject scan, calibrate, measure, report",
        description="End-to-end demonstration on synthetic data: a Mindways-style phantom scan is "
                    "calibrated into a calibration store, a low-dose chest CT of a synthetic subject "
                    "on the same scanner is segmented and measured like any scan (the synthetic truth "
                    "is printed for comparison, never used by the measurement).")
    demo.add_argument("-o", "--output", default="bmdqct-demo", help="output folder (default bmdqct-demo)")
    demo.add_argument("--seed", type=int, default=2020, help="seed of the synthetic subject (default 2020)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(func=_run_demo)


# --------------------------------------------------------------------------- measure


def _run_measure(args) -> int:
    from ..batch import find_cases, run_cases
    from ..calibration import read_calibration
    from ..errors import InputError

    out = Path(args.output)
    # every check on the inputs comes before the output folder is created
    cases = find_cases(args.inputs, labels=args.labels, exclude=[out])
    calibration = None
    if args.calibration:
        calibration = read_calibration(args.calibration)   # a bad file stops the run before any case
    elif args.calibration_store:
        store = Path(args.calibration_store)
        if not store.is_dir():
            raise InputError(f"calibration store {store} is not a folder; create one with "
                             "'bmdqct calibrate ... --store DIR' or pass --calibration CAL.json")
        calibration = store
    if args.fallback is not None and not args.calibration_store:
        raise InputError("--fallback applies to --calibration-store only")
    out = _prepare_output(out)
    summary = run_cases(
        cases, out, calibration=calibration, calibration_fallback=args.fallback, model=args.model,
        label_scheme=args.label_scheme, levels=tuple(args.levels), convention=args.convention,
        window_days=args.window_days, overwrite=args.overwrite,
        picture=None if args.no_qc_picture else _write_qc_picture, progress=not args.no_progress,
        on_record=_print_record, command=sys.argv, series_uid=args.series_uid,
        contrast_correction=args.contrast_correction, dicom_out=args.dicom_out)
    _print_summary(summary)
    return 1 if summary.failed else 0


def _write_qc_picture(result, ct, path) -> None:
    """The QC picture of `result` as PNG at `path` (the picture writer of bmdqct.batch.run_cases)."""
    import matplotlib.pyplot as plt

    from ..plotting.qc import plot_qc

    fig = plot_qc(result, ct)
    try:
        fig.savefig(path, dpi=110, format="png")
    finally:
        if hasattr(fig, "number"):
            plt.close(fig)


def _print_record(record) -> None:
    print(_one_line(record))
    for note in record.notes:
        print(f"  note: {note}")


def _print_summary(summary) -> None:
    c = summary.counts
    no_measurement = f", {c['no_measurement']} without measurement" if c["no_measurement"] else ""
    print(f"{c['ok']} ok, {c['failed']} failed{no_measurement}, {c['skipped']} skipped; "
          f"results in {summary.results_csv}")


# --------------------------------------------------------------------------- demo


def _run_demo(args) -> int:
    """Phantom scan -> calibration store; subject scan -> measure; print the report."""
    import numpy as np

    from ..batch import Case, run_cases
    from ..calibration import add_to_store, calibrate_phantom, read_store
    from ..io import write_dicom_series
    from ..measure import report_text
    from ..segment import load_model
    from ..synthetic import synthesize_ldct, synthesize_phantom_scan

    t0 = time.perf_counter()
    out = _prepare_output(Path(args.output))
    scanner = {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 64", "device_serial": "SYN-0001",
               "station": "SYNTH1"}
    kvp = 120.0
    # 1. the monthly phantom scan of this scanner (its default bone line at 120 kV) -> calibration store
    phantom_scan, phantom_truth = synthesize_phantom_scan("mindways-model3-ct", args.seed + 1, kvp=kvp,
                                                          scanner=scanner, study_date="2024-03-01")
    calibration = calibrate_phantom(phantom_scan, phantom_truth.certificate)
    store = out / "calibrations"
    if not store.is_dir() or calibration.id not in {c.id for c in read_store(store)}:   # a re-run keeps it
        add_to_store(calibration, store)
    print(f"phantom scan calibrated: bmd = {calibration.slope:.4f} * HU + {calibration.intercept:.2f} "
          f"(R2 {calibration.r_squared:.4f}); stored in {store}")
    # 2. a screening scan of a synthetic subject on the same scanner, two weeks later
    volume, truth = synthesize_ldct(args.seed, kvp=kvp, scanner=scanner, study_date="2024-03-15",
                                    cranial="T6", caudal="L3", pixel_mm=1.25, slice_mm=2.0, shape=(288, 288))
    # written as a DICOM series, as scanners deliver it (scanner, kVp and date in the tags)
    subject = out / "scans" / "demo_subject"
    if not subject.is_dir():
        staging = out / "scans" / f".demo_subject.tmp{os.getpid()}"
        write_dicom_series(volume, staging)
        os.replace(staging, subject)
    print(f"subject scan written: {subject}/ ({volume!r}, DICOM)")
    # 3. measure it like any scan: segmentation model, calibration store, outputs
    model = load_model(None)
    summary = run_cases([Case("demo_subject", subject)], out, calibration=store, model=model,
                        picture=_write_qc_picture, progress=not args.no_progress, on_record=_print_record,
                        command=sys.argv)
    _print_summary(summary)
    result_path = out / "demo_subject" / "result.json"
    if summary.failed or not result_path.exists():
        print("demo: the measurement failed; see the error above", file=sys.stderr)
        return 1
    result = json.loads(result_path.read_text(encoding="utf-8"))
    print()
    print(report_text(result))
    truth_line = ", ".join(f"{n} {truth.density_mg_cm3[n]:.1f}" for n in ("T12", "L1", "L2")
                           if n in truth.density_mg_cm3)
    true_mean = np.mean([truth.density_mg_cm3[n] for n in ("L1", "L2") if n in truth.density_mg_cm3])
    print(f"synthetic truth (never used by the measurement): {truth_line} mg/cm3; L1-L2 {true_mean:.1f}")
    print(f"outputs in {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


# --------------------------------------------------------------------------- helpers


def _prepare_output(out: Path) -> Path:
    from ..errors import InputError

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".bmdqct-write-test-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise InputError(f"output folder {out} is not writable ({err.strerror or err}); choose another "
                         "folder with -o") from err
    return out


def _one_line(record) -> str:
    """The line printed for a finished case (a bmdqct.batch.CaseRecord)."""
    if record.skipped:
        return f"{record.case}: skipped ({record.status}, finished earlier; --overwrite re-measures)"
    if record.status == "failed":
        return f"{record.case}: FAILED - {record.reason}"
    if record.status == "no_measurement":
        return f"{record.case}: NO MEASUREMENT - {record.reason}"
    used = "-".join(record.levels_used)
    if record.bmd_l1_l2_mg_cm3 is not None:
        value = f"{used} {record.bmd_l1_l2_mg_cm3:.1f} mg/cm3 {record.category}"
    else:
        value = f"{used} {record.mean_hu_l1_l2:.1f} HU (no calibration)"
    flags = f" [{', '.join(record.flags)}]" if record.flags else ""
    return f"{record.case}: ok  {value}{flags}"
