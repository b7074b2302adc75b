"""``bmdqct measure`` and ``bmdqct demo`` (see :mod:`bmdqct.cli`).

Output layout of ``bmdqct measure INPUT... -o OUT``::

    OUT/results.csv            one row per case (columns: RESULTS_COLUMNS)
    OUT/manifest.json          the run: inputs, versions, model and calibration ids, timings, statuses
    OUT/<case>/result.json     the Result (bmdqct.measure.Result.to_dict)
    OUT/<case>/labels.nii.gz   per-level vertebral bodies (VerSe ids) on the input grid
    OUT/<case>/voi.nii.gz      VOI masks (VerSe id of each level) on the input grid
    OUT/<case>/qc.png          QC picture (bmdqct.plotting.qc.plot_qc)
    OUT/<case>/error.json      only for a failed case: the error

Every file is written to a temporary name and renamed, so an interrupted run
never leaves a half-written file; ``result.json`` is written last and marks a
finished case, which a re-run skips (``--overwrite`` re-measures).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io as _io
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path

logger = logging.getLogger(__name__)

#: Columns of ``OUT/results.csv`` (team contract).
RESULTS_COLUMNS = ("case", "status", "error", "category", "bmd_l1_l2_mg_cm3", "levels_used",
                   "T12_hu_mean", "T12_bmd_mg_cm3", "L1_hu_mean", "L1_bmd_mg_cm3", "L2_hu_mean",
                   "L2_bmd_mg_cm3", "flags")
MANIFEST_FORMAT = "bmdqct-run/1"


def register(commands, common) -> None:
    """Add ``measure`` and ``demo`` to `commands` (an argparse subparsers action)."""
    measure = commands.add_parser(
        "measure", parents=[common], help="BMD of T12, L1, L2 and the ACR category for CT scans",
        description="Segment (or read labels), place the elliptical VOIs of Pan et al. (2020) in T12, L1 and "
                    "L2, convert HU to BMD with a calibration and classify the L1-L2 mean (ACR). Writes "
                    "OUT/<case>/{result.json, labels.nii.gz, voi.nii.gz, qc.png}, OUT/results.csv and "
                    "OUT/manifest.json. Finished cases are skipped when the command is run again.")
    measure.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="CT scans: DICOM folders or files, NIfTI, MHA/MHD or NRRD")
    measure.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    cal = measure.add_mutually_exclusive_group()
    cal.add_argument("--calibration", metavar="CAL.json",
                     help='calibration file ({"slope": s, "intercept": i} at least); without a calibration '
                          "the report holds HU only")
    cal.add_argument("--calibration-store", metavar="DIR",
                     help="calibration store: pick, per scan, the calibration of its scanner and kVp "
                          "closest before the scan date")
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
    from ..calibration import read_calibration
    from ..errors import InputError

    inputs = [Path(p) for p in args.inputs]
    if args.labels is not None and len(args.labels) != len(inputs):
        raise InputError(f"--labels needs one label map per INPUT: got {len(args.labels)} label maps for "
                         f"{len(inputs)} inputs")
    out = _prepare_output(Path(args.output))
    calibration = None
    if args.calibration:
        calibration = read_calibration(args.calibration)   # a bad file stops the run before any case
    elif args.calibration_store:
        store = Path(args.calibration_store)
        if not store.is_dir():
            raise InputError(f"calibration store {store} is not a folder; create one with "
                             "'bmdqct calibrate ... --store DIR' or pass --calibration CAL.json")
        calibration = store
    labels = [Path(p) for p in args.labels] if args.labels else [None] * len(inputs)
    model = args.model
    if args.labels is None:
        from ..segment import load_model

        model = load_model(None if args.model is None else Path(args.model))
    summary = run_cases(
        list(zip(_case_names(inputs), inputs, labels)), out, calibration=calibration, model=model,
        label_scheme=args.label_scheme, levels=tuple(args.levels), convention=args.convention,
        window_days=args.window_days, overwrite=args.overwrite, qc_picture=not args.no_qc_picture,
        progress=not args.no_progress, argv=sys.argv)
    return 1 if summary["failed"] else 0


def run_cases(cases, out: Path, *, calibration=None, model=None, label_scheme="totalsegmentator",
              levels=("T12", "L1", "L2"), convention="acr", window_days=60, overwrite=False,
              qc_picture=True, progress=True, argv=None, echo=True) -> dict:
    """Measure `cases` [(case, input, labels or None)] into `out`; returns the run summary."""
    from tqdm import tqdm

    from .._version import __version__
    from ..measure import _versions

    started = _dt.datetime.now(_dt.timezone.utc)
    records = []
    rows = {}
    for case, path, label_path in tqdm(cases, desc="measure", unit="case", disable=not progress,
                                       file=sys.stderr):
        t0 = time.perf_counter()
        record = {"case": case, "input": str(path), "labels": None if label_path is None else str(label_path)}
        case_dir = out / case
        done = case_dir / "result.json"
        if done.exists() and not overwrite:
            try:
                result_dict = json.loads(done.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                result_dict = None
            if result_dict is not None:
                rows[case] = _csv_row(case, "skipped", "", result_dict)
                record.update(status="skipped", seconds=0.0, result=str(done),
                              model_id=result_dict.get("provenance", {}).get("model_id"),
                              calibration_id=result_dict.get("provenance", {}).get("calibration_id"))
                records.append(record)
                if echo:
                    print(f"{case}: skipped (finished earlier; --overwrite re-measures)")
                continue
        try:
            result = _measure_case(case, path, label_path, case_dir, calibration=calibration, model=model,
                                   label_scheme=label_scheme, levels=levels, convention=convention,
                                   window_days=window_days, qc_picture=qc_picture)
        except Exception as err:  # noqa: BLE001 - a failed case is recorded and the run goes on
            message = f"{type(err).__name__}: {err}"
            logger.debug("case %s failed:\n%s", case, traceback.format_exc())
            rows[case] = _csv_row(case, "failed", message, None)
            record.update(status="failed", error=message, seconds=round(time.perf_counter() - t0, 3))
            records.append(record)
            try:
                case_dir.mkdir(parents=True, exist_ok=True)
                _write_text(case_dir / "error.json", json.dumps(
                    {"case": case, "input": str(path), "error": message, "type": type(err).__name__,
                     "traceback": traceback.format_exc()}, indent=2) + "\n")
            except OSError:
                pass
            if echo:
                print(f"{case}: FAILED - {message}")
            continue
        result_dict = result.to_dict()
        rows[case] = _csv_row(case, "ok", "", result_dict)
        record.update(status="ok", seconds=round(time.perf_counter() - t0, 3),
                      result=str(case_dir / "result.json"),
                      model_id=result.provenance.get("model_id"),
                      calibration_id=result.provenance.get("calibration_id"),
                      timings_s=dict(result.provenance.get("timings_s", {})))
        records.append(record)
        if echo:
            print(_one_line(result))
    _write_results_csv(out / "results.csv", rows)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "failed", "skipped")}
    previous = _read_json(out / "manifest.json")
    history = list(previous.get("history", [])) if previous else []
    if previous:
        earlier = {r.get("case"): r for r in previous.get("cases", [])}
        for record in records:  # a skipped case keeps the record of the run that measured it
            old = earlier.get(record["case"])
            if record["status"] == "skipped" and old and old.get("status") in ("ok", "skipped"):
                record.update({k: v for k, v in old.items() if k not in ("status", "seconds")})
                record["measured_in_run"] = old.get("measured_in_run", previous.get("started"))
        history.append({k: previous.get(k) for k in ("started", "finished", "command", "counts")})
    manifest = {
        "format": MANIFEST_FORMAT,
        "command": list(argv) if argv else None,
        "started": started.isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 3),
        "output": str(out),
        "versions": {"python": platform.python_version(),
                     **_versions(("bmdqct", "numpy", "scipy", "scikit-image", "nibabel", "SimpleITK", "pydicom",
                                  "matplotlib", "tensorflow", "keras"))},
        "bmdqct_version": __version__,
        "model_id": getattr(model, "model_id", None if model is None else str(model)),
        "calibration": _calibration_record(calibration),
        "options": {"levels": list(levels), "convention": convention, "label_scheme": label_scheme,
                    "window_days": window_days, "overwrite": overwrite},
        "counts": counts,
        "cases": records,
        "history": history,
    }
    _write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    if echo:
        print(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped; "
              f"results in {out / 'results.csv'}")
    return counts


def _measure_case(case, path, label_path, case_dir: Path, *, calibration, model, label_scheme, levels,
                  convention, window_days, qc_picture):
    import numpy as np

    from ..io import load_ct, write_nifti
    from ..measure import _atomic_write, measure
    from ..volume import LabelVolume

    ct = load_ct(path)
    result = measure(ct, calibration=calibration, labels=label_path, label_scheme=label_scheme, model=model,
                     levels=levels, convention=convention, calibration_window_days=window_days, case=case)
    case_dir.mkdir(parents=True, exist_ok=True)
    stale = case_dir / "error.json"
    if stale.exists():
        stale.unlink()
    _atomic_write(case_dir / "labels.nii.gz", lambda tmp: write_nifti(result.labels.labels, tmp, like=ct))
    voi_ids = np.zeros(ct.shape, np.int16)
    for name, voi in result.vois.items():
        voi_ids[voi.slices][voi.box_mask] = result.labels.levels[name].label_id
    voi_labels = LabelVolume(voi_ids, ct.affine, {n: result.labels.levels[n].label_id for n in result.vois})
    _atomic_write(case_dir / "voi.nii.gz", lambda tmp: write_nifti(voi_labels, tmp, like=ct))
    if qc_picture:
        from ..plotting.qc import plot_qc

        fig = plot_qc(result, ct)
        _atomic_write(case_dir / "qc.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    result.to_json(case_dir / "result.json")   # last: marks the case finished
    return result


# --------------------------------------------------------------------------- demo


def _run_demo(args) -> int:
    """Phantom scan -> calibration store; subject scan -> measure; print the report."""
    import numpy as np

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
    counts = run_cases([("demo_subject", subject, None)], out, calibration=store, model=model,
                       progress=not args.no_progress, argv=sys.argv)
    result_path = out / "demo_subject" / "result.json"
    if counts["failed"] or not result_path.exists():
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


def _case_names(inputs) -> list[str]:
    """Case name of each input: its file stem, or parent_stem when stems repeat (DIR/ct.nii.gz)."""
    from ..measure import _case_name

    stems = [_case_name(path) or "case" for path in inputs]
    names, seen = [], {}
    for path, stem in zip(inputs, stems):
        name = f"{path.parent.name}_{stem}" if stems.count(stem) > 1 and path.parent.name else stem
        count = seen.get(name, 0) + 1
        seen[name] = count
        names.append(name if count == 1 else f"{name}_{count}")
    return names


def _write_text(path: Path, text: str) -> Path:
    from ..measure import _atomic_write_text

    return _atomic_write_text(path, text)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fmt(value) -> str:
    return "" if value is None else f"{float(value):.2f}"


def _csv_row(case, status, error, result: dict | None) -> dict:
    row = {c: "" for c in RESULTS_COLUMNS}
    row.update(case=case, status=status, error=error)
    if result is None:
        return row
    row["category"] = result.get("category") or ""
    row["bmd_l1_l2_mg_cm3"] = _fmt(result.get("bmd_l1_l2_mg_cm3"))
    row["levels_used"] = "+".join(result.get("levels_used", []))
    for name in ("T12", "L1", "L2"):
        level = result.get("levels", {}).get(name) or {}
        row[f"{name}_hu_mean"] = _fmt(level.get("hu_mean"))
        row[f"{name}_bmd_mg_cm3"] = _fmt(level.get("bmd_mg_cm3"))
    row["flags"] = ";".join(result.get("qc", {}).get("flags", []))
    return row


def _write_results_csv(path: Path, rows: dict) -> None:
    """Write results.csv: this run's rows, plus earlier rows of cases not in this run."""
    merged = {}
    if path.exists():
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row.get("case"):
                        merged[row["case"]] = {c: row.get(c, "") for c in RESULTS_COLUMNS}
        except (OSError, csv.Error):
            merged = {}
    merged.update(rows)
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RESULTS_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for case in sorted(merged):
        writer.writerow(merged[case])
    _write_text(path, buffer.getvalue())


def _one_line(result) -> str:
    if result.bmd_l1_l2_mg_cm3 is not None:
        value = f"{'-'.join(result.levels_used)} {result.bmd_l1_l2_mg_cm3:.1f} mg/cm3 {result.category.value}"
    elif result.hu_l1_l2 is not None:
        value = f"{'-'.join(result.levels_used)} {result.hu_l1_l2:.1f} HU (no calibration)"
    else:
        value = f"no category ({result.diagnosis.reason})"
    flags = f" [{', '.join(str(f) for f in result.flags)}]" if result.flags else ""
    return f"{result.case}: ok  {value}{flags}"


def _calibration_record(calibration):
    if calibration is None:
        return None
    if isinstance(calibration, (str, os.PathLike)):
        return {"store": str(calibration)}
    return {"id": calibration.id, "source": calibration.source, "slope": calibration.slope,
            "intercept": calibration.intercept, "mineral": calibration.mineral}
