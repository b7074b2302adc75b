"""Asynchronous calibration store (private; see :mod:`bmdqct.calibration`).

A store is a folder of human-readable calibration JSON files, one subfolder per
scanner and tube voltage::

    STORE/
        bmdqct-synthetic_SynthCT-64_SYN-0001_120kV/
            2024-01-15_cal-0123456789abcdef.json
            2024-02-14_cal-...json

The subfolder names are for people; selection reads the files' contents. Files
are only ever added (temporary file, then a hard link that cannot replace an
existing file); bmdqct never rewrites or deletes a store file. Retire a
calibration by moving its file out of the store.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from ._core import (
    SCANNER_FIELDS,
    Calibration,
    _atomic_write_text,
    _iso_date,
    normalize_mineral,
    read_calibration,
)
from ..errors import CalibrationError

logger = logging.getLogger(__name__)

#: Fallbacks :func:`select_calibration` accepts by name (besides an explicit Calibration or path).
FALLBACKS = ("nearest-after", "nearest", "latest-before")
#: Default drift tolerance of :func:`calibration_history`: change of calibrated BMD, mg/cm³.
DRIFT_TOLERANCE_MG_CM3 = 3.0
#: HU at which consecutive calibrations are compared for drift (trabecular range).
DRIFT_REFERENCE_HU = (50.0, 200.0)


def _norm(value) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split()).lower()
    return text or None


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-") or "unknown"


def _scan_metadata(metadata) -> Mapping:
    if hasattr(metadata, "metadata") and not isinstance(metadata, Mapping):
        return metadata.metadata
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping or a CTVolume, got {type(metadata).__name__}")
    return metadata


def scanner_matches(calibration: Calibration, metadata: Mapping) -> bool:
    """True if `calibration` was made on the scanner that produced `metadata`.

    Rule: manufacturer and model must agree wherever both sides know them
    (case and spacing ignored); the unit is identified by ``device_serial``
    when both sides have one, else by ``station``; if neither is known on both
    sides the scanner cannot be identified and nothing matches.

    Examples
    --------
    >>> cal = Calibration(slope=1.0, intercept=0.0, manufacturer="GE", model="Revolution",
    ...                   device_serial="123")
    >>> scanner_matches(cal, {"manufacturer": "ge", "model": "Revolution", "device_serial": "123"})
    True
    >>> scanner_matches(cal, {"manufacturer": "GE", "model": "Revolution", "device_serial": "999"})
    False
    """
    meta = _scan_metadata(metadata)
    for name in ("manufacturer", "model"):
        a, b = _norm(getattr(calibration, name)), _norm(meta.get(name))
        if a is not None and b is not None and a != b:
            return False
    for name in ("device_serial", "station"):
        a, b = _norm(getattr(calibration, name)), _norm(meta.get(name))
        if a is not None and b is not None:
            return a == b
    return False


def _kvp_matches(calibration: Calibration, kvp) -> bool:
    return calibration.kvp is not None and kvp is not None and abs(calibration.kvp - float(kvp)) < 0.5


def _group_name(cal: Calibration) -> str:
    unit = cal.device_serial or cal.station
    return "_".join(_slug(v) for v in (cal.manufacturer, cal.model, unit) if v) + f"_{cal.kvp:g}kV"


def add_to_store(calibration: Calibration, store_dir: str | os.PathLike) -> Path:
    """Add a calibration to a store; never overwrites or alters existing files.

    Parameters
    ----------
    calibration : Calibration
        Must carry a scanner identity (``device_serial`` or ``station``), ``kvp``
        and ``acquisition_date``.
    store_dir : path
        Store folder (created if missing).

    Returns
    -------
    Path
        The new file.

    Raises
    ------
    CalibrationError
        If the calibration lacks scanner, kVp or date; if the store already holds
        it (same id); or if it holds another calibration of the same scanner and
        kVp on the same date (move that file out of the store first if this one
        replaces it).

    Examples
    --------
    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> cal = Calibration(slope=0.85, intercept=-1.0, method="phantom", manufacturer="ACME",
    ...                   model="CT1", device_serial="42", kvp=120, acquisition_date="2024-01-15")
    >>> add_to_store(cal, store).name
    '2024-01-15_cal-43955a10e655c856.json'
    """
    missing = [name for name in ("kvp", "acquisition_date") if getattr(calibration, name) is None]
    if calibration.device_serial is None and calibration.station is None:
        missing.append("device_serial or station")
    if missing:
        raise CalibrationError(f"cannot store calibration {calibration.id}: it has no {', '.join(missing)}; "
                               "a store is keyed by scanner, kVp and date, and this scan did not say (NIfTI "
                               "files carry no scanner metadata). Pass metadata={...} to calibrate_phantom, or "
                               "--kvp, --date and --device-serial (or --station) to `bmdqct calibrate`")
    store = Path(store_dir)
    for existing in read_store(store):
        if existing.id == calibration.id:
            raise CalibrationError(f"calibration {calibration.id} is already in the store as {existing.source}")
        if (existing.acquisition_date == calibration.acquisition_date and existing.mineral == calibration.mineral
                and _kvp_matches(existing, calibration.kvp) and scanner_matches(existing, calibration.scanner)):
            raise CalibrationError(
                f"the store already holds a calibration of this scanner at {calibration.kvp:g} kV dated "
                f"{calibration.acquisition_date} ({existing.source}); refusing a second one for the same "
                "day. If the new one replaces it, move the old file out of the store first")
    path = store / _group_name(calibration) / f"{calibration.acquisition_date}_{calibration.id}.json"
    try:
        _atomic_write_text(path, calibration.to_json_text(), overwrite=False)
    except FileExistsError as err:
        raise CalibrationError(f"{path} already exists; the store was not changed") from err
    logger.info("added calibration %s to %s", calibration.id, path)
    return path


def read_store(store_dir: str | os.PathLike) -> tuple[Calibration, ...]:
    """All calibrations of a store, sorted by scanner folder and date.

    A missing folder is an empty store. A file that cannot be read raises (a
    store must never be used half-read).

    Raises
    ------
    CalibrationError
        If `store_dir` is a file, or a store file is invalid (the file is named).

    Examples
    --------
    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> _ = add_to_store(Calibration(slope=0.8, intercept=0.0, kvp=120, station="CT1",
    ...                              acquisition_date="2024-01-15"), store)
    >>> [(c.acquisition_date, c.slope) for c in read_store(store)]
    [('2024-01-15', 0.8)]
    """
    store = Path(store_dir)
    if not store.exists():
        return ()
    if not store.is_dir():
        raise CalibrationError(f"calibration store {store} is not a folder")
    files = sorted(p for p in store.glob("*/*.json") if not p.name.startswith("."))
    stray = sorted(p.name for p in store.glob("*.json"))
    if stray:
        logger.warning("calibration store %s: files outside a scanner folder are not read: %s", store, stray)
    return tuple(read_calibration(p) for p in files)


def select_calibration(store_dir: str | os.PathLike, metadata, *, window_days: int = 60,
                       fallback=None, mineral: str | None = None) -> Calibration:
    """Pick the calibration for a scan: same scanner and kVp, closest before the scan.

    Parameters
    ----------
    store_dir : path
        Calibration store (see :func:`add_to_store`).
    metadata : mapping or CTVolume
        The scan's metadata (``manufacturer``, ``model``, ``device_serial``,
        ``station``, ``kvp`` and ``acquisition_date`` or ``study_date``).
    window_days : int, optional
        Oldest calibration accepted, in days before the scan (same day = 0).
    fallback : {None, "nearest-after", "nearest", "latest-before"}, Calibration or path, optional
        What to do when no calibration qualifies. None (default) raises.
        ``"nearest-after"``: the closest calibration after the scan, within the
        window; ``"nearest"``: the closest before or after, within the window;
        ``"latest-before"``: the closest before the scan at any age. All three
        keep the scanner and kVp. A :class:`Calibration` or a path to a
        calibration file is used as given (e.g. one of another kVp, chosen
        knowingly). Another kVp is never chosen automatically.
    mineral : {None, "K2HPO4", "HA"}, optional
        Consider only calibrations of this mineral reference. With None (default)
        any reference qualifies, but two calibrations of different references that
        are equally close to the scan are refused as ambiguous rather than one being
        picked by chance.

    Returns
    -------
    Calibration
        The stored calibration, with ``source`` (its file) and ``selection``
        (rule, scan date, calibration date, age in days, window) set; the
        ``id`` is the stored one.

    Raises
    ------
    CalibrationError
        If the scan lacks kVp or date, no calibration qualifies and no fallback
        applies (the message lists what the store holds for the scanner), or the
        closest calibrations differ in mineral reference and `mineral` is None.

    Examples
    --------
    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> scanner = dict(manufacturer="ACME", model="CT1", device_serial="42", kvp=120)
    >>> for date, slope in (("2024-01-15", 0.85), ("2024-02-14", 0.86)):
    ...     _ = add_to_store(Calibration(slope=slope, intercept=0.0, acquisition_date=date,
    ...                                  **scanner), store)
    >>> cal = select_calibration(store, {**scanner, "study_date": "2024-02-20"})
    >>> cal.acquisition_date, cal.selection["age_days"]
    ('2024-02-14', 6)
    """
    meta = _scan_metadata(metadata)
    if fallback is not None and not isinstance(fallback, (str, os.PathLike, Calibration)):
        raise TypeError(f"fallback must be None, one of {FALLBACKS}, a Calibration or a path; "
                        f"got {type(fallback).__name__}")
    if isinstance(fallback, str) and fallback not in FALLBACKS and not fallback.endswith(".json"):
        raise ValueError(f"fallback must be None, one of {FALLBACKS}, a Calibration or a .json path; "
                         f"got {fallback!r}")
    if int(window_days) < 0:
        raise ValueError(f"window_days must be >= 0, got {window_days}")
    if mineral is not None:
        mineral = normalize_mineral(mineral)
    explicit = _explicit_fallback(fallback)
    scan_date = _iso_date(meta.get("acquisition_date") or meta.get("study_date"), "scan date")
    kvp = meta.get("kvp")
    problems = [name for name, value in (("kvp", kvp), ("study_date", scan_date)) if value is None]
    if problems:
        if explicit is not None:
            return _selected(explicit, "fallback:explicit", scan_date, window_days, store_dir)
        raise CalibrationError(f"the scan's metadata has no {' or '.join(problems)}, so no calibration can be "
                               "matched to it; give a NIfTI/MHA scan a JSON sidecar with them (ct.nii.gz -> "
                               "ct.json, see bmdqct.io.load_ct), or pass a calibration explicitly "
                               "(measure --calibration CAL.json or --fallback CAL.json; fallback=... in Python)")
    store = read_store(store_dir)
    same = [c for c in store if scanner_matches(c, meta) and _kvp_matches(c, kvp)
            and (mineral is None or c.mineral == mineral)]
    day = _dt.date.fromisoformat(scan_date)

    def age(cal):  # days from calibration to scan; negative when the calibration is later
        return (day - _dt.date.fromisoformat(cal.acquisition_date)).days

    dated = [c for c in same if c.acquisition_date is not None]
    before = [c for c in dated if 0 <= age(c) <= window_days]
    if before:
        chosen = _unambiguous(before, key=age)
        return _selected(chosen, "closest-before", scan_date, window_days, store_dir)
    rule = None
    if fallback == "nearest-after":
        rule, pool = fallback, [c for c in dated if -window_days <= age(c) < 0]
    elif fallback == "nearest":
        rule, pool = fallback, [c for c in dated if abs(age(c)) <= window_days]
    elif fallback == "latest-before":
        rule, pool = fallback, [c for c in dated if age(c) >= 0]
    if rule is not None and pool:
        chosen = _unambiguous(pool, key=lambda c: (abs(age(c)), -age(c)))
        logger.warning("no calibration within %d days before %s; fallback %r chose %s (%s)", window_days,
                       scan_date, rule, chosen.id, chosen.acquisition_date)
        return _selected(chosen, f"fallback:{rule}", scan_date, window_days, store_dir)
    if explicit is not None:
        logger.warning("no stored calibration fits the scan of %s; using the explicit fallback %s",
                       scan_date, explicit.id)
        return _selected(explicit, "fallback:explicit", scan_date, window_days, store_dir)
    raise CalibrationError(_no_match_message(store, meta, kvp, scan_date, window_days, store_dir, rule, mineral))


def _unambiguous(candidates, *, key) -> Calibration:
    """The candidate with the smallest `key`; refuses a tie between mineral references."""
    best = min(key(c) for c in candidates)
    tied = [c for c in candidates if key(c) == best]
    minerals = sorted({c.mineral for c in tied})
    if len(minerals) > 1:
        raise CalibrationError(
            f"the store holds calibrations of {' and '.join(minerals)} for this scanner and kVp acquired on "
            f"{tied[0].acquisition_date} ({', '.join(str(c.source) for c in tied)}); BMD in different mineral "
            "references is not comparable, so choose one: pass mineral='K2HPO4' or mineral='HA'")
    return tied[0]


def _explicit_fallback(fallback) -> Calibration | None:
    if isinstance(fallback, Calibration):
        return fallback
    if fallback is None or (isinstance(fallback, str) and fallback in FALLBACKS):
        return None
    return read_calibration(fallback)


def _selected(cal: Calibration, rule: str, scan_date, window_days, store_dir) -> Calibration:
    age_days = None
    if scan_date is not None and cal.acquisition_date is not None:
        age_days = (_dt.date.fromisoformat(scan_date) - _dt.date.fromisoformat(cal.acquisition_date)).days
    selection = {"rule": rule, "scan_date": scan_date, "calibration_date": cal.acquisition_date,
                 "age_days": age_days, "window_days": int(window_days), "store": str(store_dir),
                 "file": cal.source}
    logger.info("calibration %s selected by rule %s for the scan of %s (age %s days)", cal.id, rule,
                scan_date, age_days)
    return replace(cal, selection=selection)


def _no_match_message(store, meta, kvp, scan_date, window_days, store_dir, rule, mineral) -> str:
    scanner = ", ".join(f"{k}={meta.get(k)!r}" for k in SCANNER_FIELDS if meta.get(k) is not None) or "unknown"
    of_mineral = "" if mineral is None else f" in {mineral}"
    lines = [f"no calibration{of_mineral} in store {store_dir} for scanner ({scanner}) at {float(kvp):g} kV "
             f"acquired within {window_days} days before the scan of {scan_date}."]
    if rule is not None:
        lines.append(f"The fallback {rule!r} found none either.")
    same_scanner = [c for c in store if scanner_matches(c, meta)]
    if same_scanner:
        held = ", ".join(f"{c.kvp:g} kV on {c.acquisition_date}" for c in same_scanner)
        lines.append(f"The store holds for this scanner: {held}.")
    else:
        lines.append(f"The store holds no calibration of this scanner ({len(store)} file(s) of other scanners).")
    lines.append("Scan the phantom and run `bmdqct calibrate`, or pass fallback='nearest-after', "
                 "'nearest' or 'latest-before' (same scanner and kVp), or an explicit calibration")
    return " ".join(lines)


def calibration_history(store_dir: str | os.PathLike, *, tolerance_mg_cm3: float = DRIFT_TOLERANCE_MG_CM3,
                        reference_hu=DRIFT_REFERENCE_HU):
    """Slope and intercept over time per scanner, kVp and mineral, with drift flags.

    Parameters
    ----------
    store_dir : path
        Calibration store.
    tolerance_mg_cm3 : float, optional
        A calibration is flagged when the BMD it gives at any of `reference_hu`
        differs from the previous calibration of the same group by more than
        this (default 3 mg/cm³, about 3–4 % near the 80 and 120 mg/cm³
        thresholds and several times the 0.5–0.9 mg/cm³ asynchronous-QCT
        precision of Wang et al. 2017).
    reference_hu : sequence of float, optional
        CT numbers at which consecutive calibrations are compared.

    Returns
    -------
    pandas.DataFrame
        One row per calibration, sorted by group and date: ``group``,
        ``manufacturer``, ``model``, ``device_serial``, ``station``, ``kvp``,
        ``mineral``, ``acquisition_date``, ``slope``, ``intercept``,
        ``bmd_at_<HU>_hu`` for each reference HU, ``change_mg_cm3`` (largest
        absolute change from the previous row of the group; NaN for the first),
        ``drift`` (bool), ``phantom_serial``, ``id``, ``file``. Groups of
        different mineral references are never compared.

    Examples
    --------
    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> for date, slope in (("2024-01-15", 0.70), ("2024-02-14", 0.72)):
    ...     _ = add_to_store(Calibration(slope=slope, intercept=0.0, kvp=120, device_serial="42",
    ...                                  acquisition_date=date), store)
    >>> table = calibration_history(store)
    >>> table["bmd_at_200_hu"].tolist(), table["change_mg_cm3"].tolist()[1], table["drift"].tolist()
    ([140.0, 144.0], 4.0, [False, True])
    """
    import pandas as pd

    reference_hu = tuple(float(h) for h in np.atleast_1d(reference_hu))
    rows = []
    for cal in read_store(store_dir):
        row = {"group": f"{_group_name(cal)}_{cal.mineral}", **cal.scanner, "kvp": cal.kvp,
               "mineral": cal.mineral, "acquisition_date": cal.acquisition_date, "slope": cal.slope,
               "intercept": cal.intercept}
        for hu in reference_hu:
            row[f"bmd_at_{hu:g}_hu"] = cal.apply(hu)
        row.update(phantom_serial=cal.phantom_serial, id=cal.id, file=cal.source)
        rows.append(row)
    columns = ["group", *SCANNER_FIELDS, "kvp", "mineral", "acquisition_date", "slope", "intercept",
               *(f"bmd_at_{hu:g}_hu" for hu in reference_hu), "change_mg_cm3", "drift", "phantom_serial",
               "id", "file"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).sort_values(["group", "acquisition_date"], kind="stable").reset_index(drop=True)
    bmd = table[[f"bmd_at_{hu:g}_hu" for hu in reference_hu]]
    change = bmd.groupby(table["group"]).diff().abs().max(axis=1, skipna=False)
    table["change_mg_cm3"] = change
    table["drift"] = change > float(tolerance_mg_cm3)
    for flagged in table[table["drift"]].itertuples():
        logger.warning("calibration drift: %s on %s changed BMD by %.1f mg/cm3 (tolerance %g)", flagged.group,
                       flagged.acquisition_date, flagged.change_mg_cm3, tolerance_mg_cm3)
    return table[columns]
