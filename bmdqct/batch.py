"""Measure many scans into one output folder: finding cases, resuming, manifest, failure records.

:func:`find_cases` turns what a user names (folders of cases, case folders,
scan files, in any mix) into :class:`Case` values; :func:`run_cases` measures
them with :func:`bmdqct.measure.measure`, writes every output, and returns a
:class:`RunSummary` of frozen :class:`CaseRecord` values. ``bmdqct measure``
is a thin shell around the two (it parses, calls, prints, sets the exit code).

**What a case is.** A case is one DICOM series folder or one volume file
(``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``; any
letter case). An input is read as follows:

* a **volume file** is a case named by its file name without the suffix
  (``scan_07.nii.gz`` -> ``scan_07``); a generic name (``ct``, ``image``,
  ``img``) takes the name of its folder instead (``case_000/ct.nii.gz`` ->
  ``case_000``);
* a **folder** that directly holds DICOM files (``.dcm`` or the ``DICM``
  preamble), or exactly one volume file, is a case named by the folder
  (``case_000/`` holding ``ct.nii.gz`` -> ``case_000``);
* any other folder is a **folder of cases**: each volume file in it is a case,
  and each sub-folder that holds one volume file or DICOM files (at any depth)
  is a case named by the sub-folder (a sub-folder of several volume files
  gives one case per file, named by the file);
* not cases: files that are not images (``reference.csv``, ``truth.json``, a
  PNG), label maps named ``levels``, ``classes``, ``trabecular``, ``labels``,
  ``label``, ``seg``, ``segmentation``, ``mask`` or ``voi`` (also as a
  ``_levels`` ... ending, e.g. ``spine_levels.nii.gz``), and hidden entries
  (a leading dot). They are skipped (logged at INFO).

So ``bmdqct synth -n 2 -o X`` followed by ``bmdqct measure X -o Y`` or
``bmdqct measure X/* -o Y`` measures ``X/case_000/ct.nii.gz`` as case
``case_000``, the id ``X/reference.csv`` uses. Ids that repeat are made
unique with the parent folder's name, then a number.

**Output layout** of :func:`run_cases` into ``OUT``::

    OUT/results.csv            one row per case (RESULTS_COLUMNS)
    OUT/manifest.json          the run: inputs, versions, model and calibration ids, timings, records
    OUT/<case>/result.json     the Result (bmdqct.measure.Result.to_dict; schema in bmdqct/schemas/)
    OUT/<case>/labels.nii.gz   per-level vertebral bodies (VerSe ids) on the input grid
    OUT/<case>/voi.nii.gz      VOI masks (VerSe id of each level) on the input grid
    OUT/<case>/qc.png          QC picture (when a picture writer is given)
    OUT/<case>/seg.dcm         DICOM Segmentation (``dicom_out=True``, DICOM input only)
    OUT/<case>/sr.dcm          DICOM Comprehensive 3D SR, TID 1500 measurement report (the same)
    OUT/<case>/error.json      only for a failed case without a finished result: the error

**Statuses** (``results.csv`` and :attr:`CaseRecord.status`): ``ok`` (a BMD
or HU value of the L1-L2 levels or their substitutes), ``no_measurement``
(the scan was read and labelled, but no level could be used: the reason says
why, e.g. T12-L2 not in view), ``failed`` (an error: the reason is the
error). A case's outputs are written into a hidden staging folder and moved
into place only when complete, ``result.json`` included, so an interrupted or
failing case never leaves a partial case folder and never replaces a finished
one. A re-run skips finished cases (:attr:`CaseRecord.skipped`) and keeps their
status (``ok`` stays ``ok``); ``overwrite=True`` measures them again, and if
that fails the earlier result is kept and the row says so.

**DICOM outputs** (``dicom_out=True``, ``bmdqct measure --dicom-out``): for a
case read from a DICOM series, :func:`bmdqct.export.write_dicom_outputs` writes
``seg.dcm`` and ``sr.dcm`` into the staging folder after ``result.json``, as new
series of the source study (same Study Instance UID, patient module copied). A
failure there fails the case like any other error, so nothing already finished
is lost. A NIfTI/MHA/NRRD input has no DICOM context (no study, patient or
images to reference): its case is measured as usual and
:attr:`CaseRecord.notes` says why no SEG/SR was written.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io as _io
import json
import logging
import os
import platform
import shutil
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ._util import (IMAGE_SUFFIXES, atomic_write, atomic_write_text, deprecated_alias, package_versions, record_dict,
                    renamed_value, strip_image_suffix)
from ._version import __version__
from .errors import InputError

__all__ = [
    "Case",
    "CaseRecord",
    "RunSummary",
    "find_cases",
    "case_ids",
    "run_cases",
    "RESULTS_COLUMNS",
    "LEGACY_COLUMNS",
    "MANIFEST_FORMAT",
    "STATUSES",
    "LABEL_MAP_NAMES",
]

logger = logging.getLogger(__name__)

#: Columns of ``OUT/results.csv`` (team contract); ``error`` holds the reason of a
#: ``failed`` or ``no_measurement`` case. The per-level columns are blank for a level
#: whose name the labelling could not confirm (``level_uncertain``): its number may
#: belong to another vertebra (``result.json`` keeps it, with the reason). Before result format 3 the HU columns were
#: ``T12_hu_mean``, ...; rows of such a file are read with :data:`LEGACY_COLUMNS`.
RESULTS_COLUMNS = ("case", "status", "error", "category", "bmd_l1_l2_mg_cm3", "levels_used",
                   "T12_mean_hu", "T12_bmd_mg_cm3", "L1_mean_hu", "L1_bmd_mg_cm3", "L2_mean_hu",
                   "L2_bmd_mg_cm3", "flags")
#: Old ``results.csv`` column -> its name in :data:`RESULTS_COLUMNS`.
LEGACY_COLUMNS = {f"{level}_hu_mean": f"{level}_mean_hu" for level in ("T12", "L1", "L2")}
#: Identifier of the ``manifest.json`` layout (3: ``cases[].mean_hu_l1_l2``, was ``hu_l1_l2``).
MANIFEST_FORMAT = "bmdqct-run/3"
#: Status of a case.
STATUSES = ("ok", "no_measurement", "failed")
#: File names (without suffix, lower case) of label maps, which are never cases.
LABEL_MAP_NAMES = ("levels", "classes", "trabecular", "labels", "label", "seg", "segmentation", "mask", "voi")
#: Volume file names that take their folder's name as case id.
GENERIC_NAMES = ("ct", "image", "img")
_VERSIONED = ("bmdqct", "numpy", "scipy", "scikit-image", "nibabel", "SimpleITK", "pydicom", "matplotlib",
              "tensorflow", "keras")


@dataclass(frozen=True)
class Case:
    """One scan to measure.

    Attributes
    ----------
    case : str
        Case id (the output sub-folder and the ``case`` column).
    input : pathlib.Path
        DICOM series folder or file, or volume file.
    labels : pathlib.Path or None
        Label map used instead of the segmentation model.
    """

    case: str
    input: Path
    labels: Path | None = None


@dataclass(frozen=True)
class CaseRecord:
    """What :func:`run_cases` did with one case.

    Attributes
    ----------
    case, input, labels : str
        As in :class:`Case` (paths as text; `labels` None for the model).
    status : {"ok", "no_measurement", "failed"}
        The case's status (:data:`STATUSES`); a skipped case keeps the status of
        its finished result.
    skipped : bool
        A finished result was found and kept (not measured in this run).
    reason : str
        Why the case failed or has no measurement ('' if ok). For a failed
        re-measurement of a finished case, the earlier result is kept and the
        reason says so.
    seconds : float
        Time spent on the case in this run.
    result : str or None
        Path of the case's ``result.json`` (None if there is none).
    levels_used : tuple of str
    bmd_l1_l2_mg_cm3, mean_hu_l1_l2 : float or None
    category : str or None
    flags : tuple of str
        QC flags of the result.
    model_id, calibration_id : str or None
    measured_at : str or None
        When the result was measured (ISO time; earlier for a skipped case).
    timings_s : mapping
        Per-stage times of the measurement.
    notes : tuple of str
        What the run could not do for this case although asked, and why (e.g.
        ``--dicom-out`` for a NIfTI input; ``--series`` for a non-DICOM input).
    hu_l1_l2 : float or None
        Deprecated read-only alias of `mean_hu_l1_l2` (emits a :class:`DeprecationWarning`).
    """

    case: str
    input: str
    labels: str | None
    status: str
    skipped: bool = False
    reason: str = ""
    seconds: float = 0.0
    result: str | None = None
    levels_used: tuple[str, ...] = ()
    bmd_l1_l2_mg_cm3: float | None = None
    mean_hu_l1_l2: float | None = None
    category: str | None = None
    flags: tuple[str, ...] = ()
    model_id: str | None = None
    calibration_id: str | None = None
    measured_at: str | None = None
    timings_s: Mapping = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    hu_l1_l2 = deprecated_alias("mean_hu_l1_l2", "hu_l1_l2")

    def __post_init__(self):
        object.__setattr__(self, "timings_s", types.MappingProxyType(dict(self.timings_s)))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "levels_used", tuple(self.levels_used))
        object.__setattr__(self, "flags", tuple(self.flags))

    def to_dict(self) -> dict:
        return record_dict(self)


@dataclass(frozen=True)
class RunSummary:
    """The outcome of :func:`run_cases`.

    Attributes
    ----------
    output : pathlib.Path
    records : tuple of CaseRecord
        One per case, in the order given.
    counts : mapping of str to int
        ``ok``, ``no_measurement`` and ``failed`` count the cases measured in
        this run; ``skipped`` the finished cases kept.
    results_csv, manifest : pathlib.Path
    """

    output: Path
    records: tuple[CaseRecord, ...]
    counts: Mapping[str, int]
    results_csv: Path
    manifest: Path

    @property
    def failed(self) -> int:
        """Number of cases that failed in this run."""
        return self.counts["failed"]


# --------------------------------------------------------------------------- finding cases


def _is_volume_file(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def _is_label_map(path: Path) -> bool:
    stem = strip_image_suffix(path.name).lower()
    return stem in LABEL_MAP_NAMES or any(stem.endswith(f"_{name}") for name in LABEL_MAP_NAMES)


def _is_dicom_file(path: Path) -> bool:
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _scan_volumes(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_file() and _is_volume_file(p) and not _is_label_map(p)]


def _holds_dicom(folder: Path, *, deep: bool) -> bool:
    if not deep:
        return any(p.is_file() and not _is_volume_file(p) and _is_dicom_file(p) for p in _visible(folder))
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(_is_dicom_file(Path(root) / f) for f in sorted(files) if not f.startswith(".")):
            return True
    return False


def _file_case(path: Path) -> list[tuple[Path, str]]:
    if _is_volume_file(path):
        if _is_label_map(path):
            logger.info("%s: a label map (by its name), not a case", path)
            return []
        stem = strip_image_suffix(path.name)
        generic = stem.lower() in GENERIC_NAMES and path.resolve().parent.name
        return [(path, path.resolve().parent.name if generic else stem)]
    if _is_dicom_file(path):
        return [(path, strip_image_suffix(path.name))]
    logger.info("%s: not an image file, not a case", path)
    return []


def _folder_cases(folder: Path, *, top: bool, exclude: set) -> list[tuple[Path, str]]:
    volumes = _scan_volumes(folder)
    name = folder.resolve().name
    if _holds_dicom(folder, deep=False):
        return [(folder, name)]
    if len(volumes) == 1:
        return [(volumes[0], name)]
    if not top:
        if volumes:     # several scans in one folder: one case each, as if the folder were named
            return [(v, strip_image_suffix(v.name)) for v in volumes]
        if _holds_dicom(folder, deep=True):
            return [(folder, name)]
        logger.info("%s: no DICOM files and no volume file, not a case", folder)
        return []
    found = []
    for child in _visible(folder):
        if child.resolve() in exclude:
            continue
        if child.is_dir():
            found.extend(_folder_cases(child, top=False, exclude=exclude))
        else:
            found.extend(_file_case(child))
    return found


def case_ids(hints: Sequence[tuple[Path, str]]) -> list[str]:
    """Unique case ids from (path, preferred id) pairs.

    A preferred id that repeats becomes ``<parent folder>_<id>``; if that still
    repeats, ``_2``, ``_3`` ... are appended.

    Examples
    --------
    >>> case_ids([(Path("a/x.nii"), "x"), (Path("b/x.nii"), "x"), (Path("c/y.mha"), "y"), (Path("y"), "y")])
    ['a_x', 'b_x', 'c_y', 'y']
    """
    preferred = [hint or "case" for _, hint in hints]
    names, seen = [], {}
    for (path, _), hint in zip(hints, preferred):
        parent = path.parent.name
        name = f"{parent}_{hint}" if preferred.count(hint) > 1 and parent and parent != hint else hint
        count = seen.get(name, 0) + 1
        seen[name] = count
        names.append(name if count == 1 else f"{name}_{count}")
    return names


def find_cases(inputs: Iterable, *, labels: Sequence | None = None, exclude: Iterable = ()) -> tuple[Case, ...]:
    """The cases named by `inputs` (folders of cases, case folders, scan files; see the module notes).

    Parameters
    ----------
    inputs : iterable of path
    labels : sequence of path, optional
        One label map per case found, in order.
    exclude : iterable of path, optional
        Folders never searched (e.g. the output folder inside an input folder).

    Returns
    -------
    tuple of Case

    Raises
    ------
    InputError
        If an input does not exist, no case is found, or the number of label
        maps differs from the number of cases.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("case_000/ct.nii.gz", "case_000/levels.nii.gz", "case_001/ct.nii.gz", "reference.csv"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_bytes(b"")
    >>> [c.case for c in find_cases([root])]
    ['case_000', 'case_001']
    >>> [c.case for c in find_cases(sorted(root.iterdir()))]     # bmdqct measure X/*
    ['case_000', 'case_001']
    """
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.exists():
            raise InputError(f"input {path} does not exist; expected a DICOM series folder, a volume file "
                             f"({', '.join(IMAGE_SUFFIXES)}) or a folder of cases")
    excluded = {Path(p).resolve() for p in exclude}
    hints: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            hints.extend(_folder_cases(path, top=True, exclude=excluded))
        else:
            hints.extend(_file_case(path))
    if not hints:
        raise InputError(f"no case found in {', '.join(str(p) for p in paths)}: expected DICOM series folders or "
                         f"volume files ({', '.join(IMAGE_SUFFIXES)}), or folders of them (see "
                         "'bmdqct measure --help')")
    if labels is not None and len(labels) != len(hints):
        raise InputError(f"--labels needs one label map per INPUT (case): got {len(labels)} label maps for "
                         f"{len(hints)} cases")
    label_paths = [None] * len(hints) if labels is None else [Path(p) for p in labels]
    return tuple(Case(name, path, label) for (path, _), name, label in zip(hints, case_ids(hints), label_paths))


# --------------------------------------------------------------------------- running


def run_cases(cases: Sequence[Case], out, *, calibration=None, calibration_fallback=None, model=None,
              label_scheme: str = "totalsegmentator", levels: Sequence[str] = ("T12", "L1", "L2"),
              convention: str = "acr", window_days: int = 60, overwrite: bool = False,
              picture: Callable | None = None, progress: bool = False,
              on_record: Callable[[CaseRecord], object] | None = None,
              command: Sequence[str] | None = None, series_uid: str | None = None,
              contrast_correction: bool = False, dicom_out: bool = False) -> RunSummary:
    """Measure `cases` into the folder `out`; a failing case is recorded and the run goes on.

    Parameters
    ----------
    cases : sequence of Case
        From :func:`find_cases` (or built directly).
    out : path
        Output folder (created); see the module notes for its layout.
    calibration : Calibration, path or None, optional
        As :func:`bmdqct.measure.measure` takes it (a store folder picks per scan).
    calibration_fallback : optional
        What a store does when no calibration qualifies
        (:func:`bmdqct.calibration.select_calibration`'s `fallback`).
    model : SpineModel, path or None, optional
        Segmentation model for cases without labels; None: the shipped weights.
        A path (or None) is loaded only when the first case needs it, so a run
        whose cases are all finished or all have labels never loads TensorFlow.
    label_scheme, levels, convention, window_days
        Passed to :func:`bmdqct.measure.measure`.
    overwrite : bool, optional
        Measure finished cases again (their earlier result is replaced only by
        a finished new one).
    picture : callable, optional
        ``picture(result, ct, path)`` writes the QC picture to `path` (the CLI
        passes :func:`bmdqct.plotting.qc.plot_qc`'s writer); None: no picture.
    progress : bool, optional
        Show a progress bar (stderr).
    on_record : callable, optional
        Called with each :class:`CaseRecord` as soon as its case is done.
    command : sequence of str, optional
        The command line, for the manifest.
    series_uid : str, optional
        SeriesInstanceUID that :func:`bmdqct.io.load_ct` reads from each DICOM
        input (a folder holding several series); a DICOM case without it fails
        with the loader's error. Not used for volume files (the case's notes
        say so).
    contrast_correction : bool, optional
        Passed to :func:`bmdqct.measure.measure` as ``contrast_correction=True``
        when set (never passed otherwise).
    dicom_out : bool, optional
        Also write ``seg.dcm`` and ``sr.dcm`` for DICOM inputs (see the module
        notes); other inputs get a note saying why not.

    Returns
    -------
    RunSummary
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    options = {"calibration": calibration, "calibration_fallback": calibration_fallback,
               "label_scheme": label_scheme, "levels": tuple(levels), "convention": convention,
               "window_days": window_days, "series_uid": series_uid,
               "contrast_correction": bool(contrast_correction), "dicom_out": bool(dicom_out)}
    models = _Models(model)
    records: list[CaseRecord] = []
    rows: dict[str, dict] = {}
    for case in tqdm(cases, desc="measure", unit="case", disable=not progress, file=sys.stderr):
        record, row = _run_case(case, out, overwrite=overwrite, options=options, models=models, picture=picture)
        records.append(record)
        rows[case.case] = row
        if on_record is not None:
            on_record(record)
    results_csv = _write_results_csv(out / "results.csv", rows)
    counts = {"ok": 0, "no_measurement": 0, "failed": 0, "skipped": 0}
    for record in records:
        counts["skipped" if record.skipped else record.status] += 1
    previous = _read_json(out / "manifest.json") or {}
    history = list(previous.get("history", []))
    if previous:
        history.append({k: previous.get(k) for k in ("started", "finished", "command", "counts")})
    finished = _dt.datetime.now(_dt.timezone.utc)
    manifest = {
        "format": MANIFEST_FORMAT,
        "command": list(command) if command else None,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 3),
        "output": str(out),
        "versions": {"python": platform.python_version(), **package_versions(_VERSIONED)},
        "bmdqct_version": __version__,
        "model_id": models.model_id,
        "calibration": _calibration_record(calibration),
        "options": {"levels": list(levels), "convention": convention, "label_scheme": label_scheme,
                    "window_days": window_days, "calibration_fallback": _text_or_none(calibration_fallback),
                    "overwrite": overwrite, "series_uid": series_uid,
                    "contrast_correction": bool(contrast_correction), "dicom_out": bool(dicom_out)},
        "counts": counts,
        "cases": [r.to_dict() for r in records],
        "history": history,
    }
    manifest_path = atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return RunSummary(out, tuple(records), types.MappingProxyType(counts), results_csv, manifest_path)


class _Models:
    """The segmentation model of a run, loaded on first use (TensorFlow loads with it)."""

    def __init__(self, model):
        self._given = model
        self._loaded = model if _is_model(model) else None

    def get(self):
        if self._loaded is None:
            from .segment import load_model

            self._loaded = load_model(None if self._given is None else Path(self._given))
        return self._loaded

    @property
    def model_id(self) -> str | None:
        if self._loaded is not None:
            return getattr(self._loaded, "model_id", None)
        return None if self._given is None else str(self._given)


def _is_model(model) -> bool:
    return model is not None and not isinstance(model, (str, os.PathLike))


def _run_case(case: Case, out: Path, *, overwrite, options, models, picture) -> tuple[CaseRecord, dict]:
    t0 = time.perf_counter()
    base = {"case": case.case, "input": str(case.input), "labels": None if case.labels is None else str(case.labels)}
    case_dir = out / case.case
    done = case_dir / "result.json"
    finished = _read_json(done)
    if finished is not None and not overwrite:
        record = _record_from_result(base, finished, done, skipped=True, seconds=0.0)
        if options["dicom_out"] and _is_dicom_input(case.input) and not (case_dir / "sr.dcm").exists():
            note = "finished earlier without DICOM SEG/SR; --overwrite measures again and writes them"
            record = replace(record, notes=(note,))
        return record, _csv_row(case.case, record.status, record.reason, finished)
    try:
        _, notes = _measure_case(case, case_dir, options=options, models=models, picture=picture)
    except Exception as err:  # noqa: BLE001 - a failed case is recorded and the run goes on
        message = f"{type(err).__name__}: {err}"
        logger.debug("case %s failed:\n%s", case.case, traceback.format_exc())
        seconds = round(time.perf_counter() - t0, 3)
        if finished is not None:   # a failed re-measurement never replaces a finished result
            kept = _record_from_result(base, finished, done, skipped=False, seconds=seconds)
            reason = f"re-measurement failed, earlier result kept: {message}"
            return replace(kept, status="failed", reason=reason), _csv_row(case.case, "failed", reason, finished)
        try:
            atomic_write_text(case_dir / "error.json", json.dumps(
                {"case": case.case, "input": str(case.input), "error": message, "type": type(err).__name__,
                 "traceback": traceback.format_exc()}, indent=2) + "\n")
        except OSError:
            logger.warning("case %s: could not write %s", case.case, case_dir / "error.json")
        return (CaseRecord(**base, status="failed", reason=message, seconds=seconds),
                _csv_row(case.case, "failed", message, None))
    result_dict = json.loads(done.read_text(encoding="utf-8"))
    record = _record_from_result(base, result_dict, done, skipped=False, seconds=round(time.perf_counter() - t0, 3))
    return replace(record, notes=notes), _csv_row(case.case, record.status, record.reason, result_dict)


def _is_dicom_input(path: Path) -> bool:
    """True for a DICOM series folder or DICOM file (what load_ct reads as DICOM), False for volume files."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and not _is_volume_file(path))


def _measure_case(case: Case, case_dir: Path, *, options, models, picture):
    """Measure one case and move its complete output folder into place; returns (result, notes)."""
    import numpy as np

    from .io import load_ct, write_nifti
    from .measure import measure
    from .volume import LabelVolume

    notes: list[str] = []
    dicom = _is_dicom_input(case.input)
    if options["series_uid"] is not None and not dicom:
        notes.append(f"--series {options['series_uid']} not used: {case.input} is a volume file, not a DICOM "
                     "folder (one series only)")
        logger.warning("case %s: %s", case.case, notes[-1])
    ct = load_ct(case.input, series_uid=options["series_uid"] if dicom else None)
    model = None if case.labels is not None else models.get()
    extra = {"contrast_correction": True} if options["contrast_correction"] else {}
    result = measure(
        ct, calibration=options["calibration"], labels=case.labels, label_scheme=options["label_scheme"],
        model=model, levels=options["levels"], convention=options["convention"],
        calibration_window_days=options["window_days"], calibration_fallback=options["calibration_fallback"],
        case=case.case, **extra)
    staging = case_dir.with_name(f".{case_dir.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        atomic_write(staging / "labels.nii.gz", lambda tmp: write_nifti(result.labels.labels, tmp, like=ct))
        voi_ids = np.zeros(ct.shape, np.int16)
        for name, voi in result.vois.items():
            voi_ids[voi.slices][voi.box_mask] = result.labels.levels[name].label_id
        voi_labels = LabelVolume(voi_ids, ct.affine, {n: result.labels.levels[n].label_id for n in result.vois})
        atomic_write(staging / "voi.nii.gz", lambda tmp: write_nifti(voi_labels, tmp, like=ct))
        if picture is not None:
            atomic_write(staging / "qc.png", lambda tmp: picture(result, ct, tmp))
        result.to_json(staging / "result.json")
        if options["dicom_out"]:
            notes.extend(_write_dicom_outputs(result, staging, case=case.case))
        _move_into_place(staging, case_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result, tuple(notes)


def _write_dicom_outputs(result, folder: Path, *, case: str) -> list[str]:
    """seg.dcm and sr.dcm into `folder` for a DICOM input; for another input, the note saying why not."""
    from .export import no_dicom_context_reason, write_dicom_outputs

    reason = no_dicom_context_reason(result)
    if reason is not None:
        note = f"--dicom-out: no DICOM SEG/SR written: {reason}"
        logger.warning("case %s: %s", case, note)
        return [note]
    write_dicom_outputs(result, folder)     # an error here fails the case (nothing finished is replaced)
    return []


def _move_into_place(staging: Path, case_dir: Path) -> None:
    """Replace `case_dir` by the finished `staging` folder (the old one is removed only after)."""
    old = None
    if case_dir.exists():
        old = case_dir.with_name(f".{case_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(case_dir, old)
    try:
        os.replace(staging, case_dir)
    except OSError:
        if old is not None:
            os.replace(old, case_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _result_status(result: Mapping) -> tuple[str, str]:
    """("ok", "") or ("no_measurement", reason) of a result.json."""
    if result.get("levels_used"):
        return "ok", ""
    notes = [f"{name} {m.get('status')}" + (f" ({m['reason']})" if m.get("reason") else "")
             for name, m in (result.get("levels") or {}).items()]
    return "no_measurement", "no level measured: " + ("; ".join(notes) or "no level requested")


def _record_from_result(base: dict, result: Mapping, path: Path, *, skipped: bool, seconds: float) -> CaseRecord:
    status, reason = _result_status(result)
    provenance = result.get("provenance") or {}
    return CaseRecord(
        **base, status=status, skipped=skipped, reason=reason, seconds=seconds, result=str(path),
        levels_used=tuple(result.get("levels_used") or ()), bmd_l1_l2_mg_cm3=result.get("bmd_l1_l2_mg_cm3"),
        mean_hu_l1_l2=renamed_value(result, "mean_hu_l1_l2", "hu_l1_l2"), category=result.get("category"),
        flags=tuple((result.get("qc") or {}).get("flags") or ()), model_id=provenance.get("model_id"),
        calibration_id=provenance.get("calibration_id"), measured_at=provenance.get("created"),
        timings_s=provenance.get("timings_s") or {})


# --------------------------------------------------------------------------- files


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fmt(value) -> str:
    return "" if value is None else f"{float(value):.2f}"


def _csv_row(case: str, status: str, error: str, result: Mapping | None) -> dict:
    row = {c: "" for c in RESULTS_COLUMNS}
    row.update(case=case, status=status, error=error)
    if result is None:
        return row
    row["category"] = result.get("category") or ""
    row["bmd_l1_l2_mg_cm3"] = _fmt(result.get("bmd_l1_l2_mg_cm3"))
    row["levels_used"] = "+".join(result.get("levels_used") or [])
    flags = (result.get("qc") or {}).get("flags") or []
    for name in ("T12", "L1", "L2"):
        if f"level_uncertain:{name}" in flags:
            continue                    # a number under a name that may be wrong is not written
        level = (result.get("levels") or {}).get(name) or {}
        row[f"{name}_mean_hu"] = _fmt(renamed_value(level, "mean_hu", "hu_mean"))
        row[f"{name}_bmd_mg_cm3"] = _fmt(level.get("bmd_mg_cm3"))
    row["flags"] = ";".join(flags)
    return row


def _write_results_csv(path: Path, rows: Mapping[str, dict]) -> Path:
    """Write results.csv: this run's rows, plus earlier rows of cases not in this run."""
    merged = {}
    if path.exists():
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row.get("case"):
                        row = {LEGACY_COLUMNS.get(c, c): v for c, v in row.items() if c is not None}
                        merged[row["case"]] = {c: row.get(c) or "" for c in RESULTS_COLUMNS}
        except (OSError, csv.Error):
            merged = {}
    merged.update(rows)
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RESULTS_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for case in sorted(merged):
        writer.writerow(merged[case])
    return atomic_write_text(path, buffer.getvalue())


def _text_or_none(value):
    return None if value is None else str(getattr(value, "id", value))


def _calibration_record(calibration):
    if calibration is None:
        return None
    if isinstance(calibration, (str, os.PathLike)):
        path = Path(calibration)
        return {"store": str(path)} if path.is_dir() else {"file": str(path)}
    return {"id": calibration.id, "source": calibration.source, "slope": calibration.slope,
            "intercept": calibration.intercept, "mineral": calibration.mineral}
