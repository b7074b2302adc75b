"""The :class:`Calibration` value, its JSON form and mineral-reference conversion.

Private module; the public names are re-exported by :mod:`bmdqct.calibration`.

A calibration is the line ``bmd_mg_cm3 = slope * hu + intercept`` plus where it
came from. BMD is mineral-equivalent density in mg/cm³ of one mineral reference,
``"K2HPO4"`` (dipotassium phosphate, Mindways/UCSF-type QCT; the project default)
or ``"HA"`` (calcium hydroxyapatite, QRM/ESP-type phantoms). The two are not
interchangeable: conversion is explicit (:func:`convert_mineral`,
:meth:`Calibration.to_mineral`) and never implied.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import numbers
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._util import iso_date
from ..errors import CalibrationError

logger = logging.getLogger(__name__)

#: Mineral references a BMD value can be expressed in.
MINERALS = ("K2HPO4", "HA")

#: How a calibration was obtained.
METHODS = ("phantom", "paired-reference", "internal", "manual")

#: ``format`` tag written into calibration JSON files.
CALIBRATION_FORMAT = "bmdqct-calibration"
_FORMAT_VERSION = 1

# Scanner fields of a Calibration; the same names as CTVolume metadata keys.
SCANNER_FIELDS = ("manufacturer", "model", "device_serial", "station")

# Goodsitt 1992, single-energy QCT on a GE 9600: BMD_K2HPO4 / BMD_HA slope at two tube voltages.
_GOODSITT_KVP = (80.0, 140.0)
_GOODSITT_RATIO = (0.86, 0.81)
# Faulkner et al. 1993: HA = 1.15 * K2HPO4 - 7.32 (mg/cm3), kVp not resolved.
_FAULKNER_SLOPE, _FAULKNER_INTERCEPT = 1.15, -7.32
CONVERSION_METHODS = ("goodsitt1992", "faulkner1993")


def normalize_mineral(mineral: str) -> str:
    """Return the canonical spelling (``"K2HPO4"`` or ``"HA"``) of a mineral reference.

    Raises
    ------
    ValueError
        If `mineral` is not a known reference.

    Examples
    --------
    >>> normalize_mineral("k2hpo4"), normalize_mineral("HA")
    ('K2HPO4', 'HA')
    """
    if isinstance(mineral, str):
        for name in MINERALS:
            if mineral.strip().upper() == name.upper():
                return name
    raise ValueError(f"mineral reference must be one of {MINERALS}, got {mineral!r}")


def convert_mineral(bmd_mg_cm3, *, source: str, target: str, kvp: float | None = None,
                    method: str = "goodsitt1992"):
    """Convert mineral-equivalent density between K2HPO4 and hydroxyapatite (HA).

    The ratio of the two depends on the X-ray spectrum (tube voltage) and on the
    marrow composition, so every conversion is approximate; bmdqct never converts
    unless asked to.

    Parameters
    ----------
    bmd_mg_cm3 : float or array_like
        Density in mg/cm³ of the `source` reference.
    source, target : {"K2HPO4", "HA"}
        Mineral references.
    kvp : float, optional
        Tube voltage in kV; required by ``method="goodsitt1992"``.
    method : {"goodsitt1992", "faulkner1993"}, optional
        ``"goodsitt1992"`` (default): single-energy slope
        ``BMD_K2HPO4 / BMD_HA`` = 0.86 at 80 kV and 0.81 at 140 kV, linearly
        interpolated in kVp, intercept 0; refuses kVp outside 80–140 kV.
        ``"faulkner1993"``: ``HA = 1.15 · K2HPO4 − 7.32`` (UCSF liquid/solid
        cross-calibration), independent of kVp; this is the relation the
        synthetic HA phantoms of :mod:`bmdqct.synthetic` use.

    Returns
    -------
    float or ndarray
        Density in mg/cm³ of the `target` reference.

    Raises
    ------
    ValueError
        For an unknown mineral or method, or a missing kVp.
    CalibrationError
        If `kvp` is outside the range the Goodsitt slopes were measured at.

    Notes
    -----
    Goodsitt (1992) also found dual-energy slopes of 0.96–1.02; they are not
    offered here because single-energy CT is what bmdqct measures.

    References
    ----------
    .. [1] Goodsitt MM (1992). Conversion relations for quantitative CT bone
       mineral densities measured with solid and liquid calibration standards.
       Bone Miner 19(2):145-158. doi:10.1016/0169-6009(92)90922-Y
    .. [2] Faulkner KG, Glüer CC, Grampp S, Genant HK (1993). Cross-calibration of
       liquid and solid QCT calibration standards: corrections to the UCSF
       normative data. Osteoporos Int 3(1):36-42. doi:10.1007/BF01623175

    Examples
    --------
    >>> round(convert_mineral(100.0, source="K2HPO4", target="HA", method="faulkner1993"), 2)
    107.68
    >>> round(convert_mineral(86.0, source="K2HPO4", target="HA", kvp=80), 2)
    100.0
    """
    scale, offset = _conversion_line(source, target, kvp=kvp, method=method)
    if np.ndim(bmd_mg_cm3) == 0:
        return float(scale * float(bmd_mg_cm3) + offset)
    return scale * np.asarray(bmd_mg_cm3, dtype=np.float64) + offset


def _conversion_line(source, target, *, kvp, method) -> tuple[float, float]:
    """(scale, offset) with target = scale * source + offset."""
    source, target = normalize_mineral(source), normalize_mineral(target)
    if method not in CONVERSION_METHODS:
        raise ValueError(f"method must be one of {CONVERSION_METHODS}, got {method!r}")
    if source == target:
        return 1.0, 0.0
    if method == "faulkner1993":
        k_to_ha = (_FAULKNER_SLOPE, _FAULKNER_INTERCEPT)
    else:
        if kvp is None:
            raise ValueError("method='goodsitt1992' needs the tube voltage: pass kvp= (kV), "
                             "or choose method='faulkner1993' (kVp-independent)")
        lo, hi = _GOODSITT_KVP
        if not lo <= float(kvp) <= hi:
            raise CalibrationError(
                f"Goodsitt (1992) K2HPO4/HA slopes were measured at {lo:g}-{hi:g} kV; got "
                f"{float(kvp):g} kV. Refusing to extrapolate: use method='faulkner1993' or a "
                "phantom of the mineral you need")
        ratio = float(np.interp(float(kvp), _GOODSITT_KVP, _GOODSITT_RATIO))
        k_to_ha = (1.0 / ratio, 0.0)
    if source == "K2HPO4":
        return k_to_ha
    return 1.0 / k_to_ha[0], -k_to_ha[1] / k_to_ha[0]


#: Slopes (mg/cm3 per HU) a calibration file may hold; outside, it is refused as absurd.
#: Single-energy QCT phantom slopes are about 0.6-1.2 (K2HPO4 and HA, 80-140 kV).
SLOPE_RANGE_MG_CM3_PER_HU = (0.1, 5.0)


def _is_finite_number(value) -> bool:
    """True for a finite real number that is not a bool (what a JSON number field must hold)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def _read_json(path: str | os.PathLike, what: str):
    """Parsed JSON of a file; a missing, unreadable or invalid file raises CalibrationError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise CalibrationError(f"{what} file {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CalibrationError(f"{what} file {path} cannot be read: {err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CalibrationError(f"{what} {path}: not valid JSON ({err.msg} at line {err.lineno}, "
                               f"column {err.colno})") from err


def _slice_range(slices, n_slices: int) -> np.ndarray:
    """Indices ``first..last`` (inclusive) of user-given axial `slices` of an `n_slices` volume."""
    try:
        first, last = (int(s) for s in slices)
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"slices must be (first, last) axial slice indices; got {slices!r}") from err
    if not 0 <= first <= last < n_slices:
        raise CalibrationError(f"slices must be (first, last) with 0 <= first <= last < {n_slices}; "
                               f"got {(first, last)}")
    return np.arange(first, last + 1)


def _freeze(value):
    """Deep read-only copy of JSON-like data (dict -> mappingproxy, list -> tuple)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return tuple(_freeze(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _thaw(value):
    """Plain JSON-ready copy of :func:`_freeze` output."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _iso_date(value, what: str = "date") -> str | None:
    """ISO ``YYYY-MM-DD`` from an ISO string, a DICOM ``YYYYMMDD``, a date or datetime."""
    try:
        return iso_date(value)
    except ValueError:
        raise CalibrationError(f"{what} must be an ISO date 'YYYY-MM-DD' (or DICOM 'YYYYMMDD'); "
                               f"got {value!r}") from None


@dataclass(frozen=True)
class Calibration:
    """A line from CT numbers (HU) to mineral-equivalent BMD, with its provenance.

    ``bmd_mg_cm3 = slope * hu + intercept``. Immutable; "changing" one means
    building a new one (:func:`dataclasses.replace`), which gets a new `id`.

    Parameters
    ----------
    slope : float
        mg/cm³ per HU; must be finite and positive.
    intercept : float
        mg/cm³ at 0 HU.
    mineral : {"K2HPO4", "HA"}, optional
        Mineral reference of the BMD values the line produces.
    method : {"phantom", "paired-reference", "internal", "manual"}, optional
        How the line was obtained.
    phantom_model, phantom_serial : str, optional
        Phantom (e.g. ``"mindways-model3-ct"``) and its serial number.
    manufacturer, model, device_serial, station : str, optional
        Scanner identity (DICOM 0008,0070 / 0008,1090 / 0018,1000 / 0008,1010);
        same names as :data:`bmdqct.volume.METADATA_KEYS`.
    kvp : float, optional
        Tube voltage of the calibration scan, kV.
    kernel : str, optional
        Reconstruction kernel of the calibration scan.
    acquisition_date : str, optional
        ISO date ``YYYY-MM-DD`` of the calibration scan (or of the paired data).
    r_squared : float, optional
        Coefficient of determination of the fit.
    residuals_mg_cm3 : mapping of str to float, optional
        Residual of each fitted point (phantom rod, tissue, ...), mg/cm³.
    n : int, optional
        Number of points fitted.
    experimental : bool, optional
        True for methods not validated against a reference (internal calibration).
    details : mapping, optional
        Method-specific JSON-able numbers (rod table, fit coefficients, CIs).
    id : str, optional
        Content-derived identifier (``"cal-"`` + 16 hex digits of a SHA-256 of
        every other field). Computed; a given `id` must match the content.
    source : str, optional
        File the calibration was read from (not part of the content or `id`).
    selection : mapping, optional
        How :func:`select_calibration` chose it (not part of the content or `id`).

    Raises
    ------
    CalibrationError
        If slope/intercept are not finite, the slope is not positive, or a given
        `id` does not match the content (the file was edited).

    Examples
    --------
    >>> cal = Calibration(slope=0.8, intercept=-5.0, kvp=120)
    >>> cal.apply(100.0)
    75.0
    >>> cal.apply([0.0, 200.0]).tolist()
    [-5.0, 155.0]
    >>> Calibration.from_dict(cal.to_dict()) == cal
    True
    """

    slope: float
    intercept: float
    mineral: str = "K2HPO4"
    method: str = "manual"
    phantom_model: str | None = None
    phantom_serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    device_serial: str | None = None
    station: str | None = None
    kvp: float | None = None
    kernel: str | None = None
    acquisition_date: str | None = None
    r_squared: float | None = None
    residuals_mg_cm3: Mapping[str, float] = field(default_factory=dict)
    n: int | None = None
    experimental: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""
    source: str | None = field(default=None, compare=False)
    selection: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("slope", "intercept"):
            value = getattr(self, name)
            if not _is_finite_number(value):
                raise CalibrationError(f"Calibration.{name} must be a finite number, got {value!r}")
            set_(self, name, float(value))
        if self.slope <= 0:
            raise CalibrationError(
                f"Calibration.slope must be positive (BMD rises with HU); got {self.slope:g} mg/cm3 "
                "per HU. Check the sign convention: bmd_mg_cm3 = slope * hu + intercept")
        try:
            set_(self, "mineral", normalize_mineral(self.mineral))
        except ValueError as err:
            raise CalibrationError(str(err)) from err
        if self.method not in METHODS:
            raise CalibrationError(f"Calibration.method must be one of {METHODS}, got {self.method!r}")
        for name in ("phantom_model", "phantom_serial", *SCANNER_FIELDS, "kernel"):
            value = getattr(self, name)
            set_(self, name, None if value is None or str(value).strip() == "" else str(value).strip())
        set_(self, "kvp", None if self.kvp is None else float(self.kvp))
        set_(self, "acquisition_date", _iso_date(self.acquisition_date, "acquisition_date"))
        if self.r_squared is not None:
            r2 = float(self.r_squared)
            set_(self, "r_squared", r2 if math.isfinite(r2) else None)
        set_(self, "n", None if self.n is None else int(self.n))
        set_(self, "experimental", bool(self.experimental))
        set_(self, "residuals_mg_cm3",
             _freeze({str(k): float(v) for k, v in dict(self.residuals_mg_cm3).items()}))
        set_(self, "details", _freeze(dict(self.details)))
        set_(self, "selection", None if self.selection is None else _freeze(dict(self.selection)))
        expected = self._content_id()
        if self.id and self.id != expected:
            raise CalibrationError(
                f"calibration id {self.id!r} does not match its content (expected {expected!r}); "
                "the values were edited after it was saved. Delete the 'id' field to accept the "
                "edited values as a new calibration")
        set_(self, "id", expected)

    # --- identity ---------------------------------------------------------------------------
    def _content(self) -> dict:
        return {f.name: _thaw(getattr(self, f.name)) for f in fields(self)
                if f.name not in ("id", "source", "selection")}

    def _content_id(self) -> str:
        text = json.dumps(self._content(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return "cal-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def scanner(self) -> dict[str, str | None]:
        """Scanner identity fields (manufacturer, model, device_serial, station)."""
        return {name: getattr(self, name) for name in SCANNER_FIELDS}

    # --- use --------------------------------------------------------------------------------
    def apply(self, hu, *, mineral: str | None = None):
        """BMD in mg/cm³ for CT numbers `hu`.

        Parameters
        ----------
        hu : float or array_like
            CT numbers in HU (not modified).
        mineral : {"K2HPO4", "HA"}, optional
            The mineral reference the caller expects; a different one raises
            instead of silently mixing references.

        Returns
        -------
        float or ndarray
            A float for a scalar `hu`, else a new float64 array.

        Raises
        ------
        CalibrationError
            If `mineral` differs from the calibration's mineral reference.
        """
        if mineral is not None and normalize_mineral(mineral) != self.mineral:
            raise CalibrationError(
                f"this calibration gives {self.mineral}-equivalent BMD but {normalize_mineral(mineral)} "
                f"was expected (calibration {self.id}); convert explicitly with "
                f"calibration.to_mineral({normalize_mineral(mineral)!r}, kvp=...)")
        if np.ndim(hu) == 0:
            return self.slope * float(hu) + self.intercept
        return self.slope * np.asarray(hu, dtype=np.float64) + self.intercept

    def hu_at(self, bmd_mg_cm3):
        """Inverse of :meth:`apply`: the HU that gives `bmd_mg_cm3`."""
        if np.ndim(bmd_mg_cm3) == 0:
            return (float(bmd_mg_cm3) - self.intercept) / self.slope
        return (np.asarray(bmd_mg_cm3, dtype=np.float64) - self.intercept) / self.slope

    def to_mineral(self, target: str, *, kvp: float | None = None,
                   method: str = "goodsitt1992") -> Calibration:
        """The same calibration expressed in another mineral reference.

        Uses :func:`convert_mineral`; `kvp` defaults to the calibration's own.
        The conversion is recorded in ``details["converted_from"]``.

        Examples
        --------
        >>> cal = Calibration(slope=1.0, intercept=0.0, kvp=120)
        >>> ha = cal.to_mineral("HA", method="faulkner1993")
        >>> ha.mineral, round(ha.apply(100.0), 2)
        ('HA', 107.68)
        """
        target = normalize_mineral(target)
        if target == self.mineral:
            return self
        kvp = self.kvp if kvp is None else kvp
        scale, offset = _conversion_line(self.mineral, target, kvp=kvp, method=method)
        details = {**_thaw(self.details),
                   "converted_from": {"mineral": self.mineral, "slope": self.slope,
                                      "intercept": self.intercept, "method": method,
                                      "kvp": None if kvp is None else float(kvp), "id": self.id}}
        return replace(self, slope=scale * self.slope, intercept=scale * self.intercept + offset,
                       mineral=target, details=details, id="", source=None, selection=None)

    # --- serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (the content, the id, and the selection record if any)."""
        out = {"format": CALIBRATION_FORMAT, "format_version": _FORMAT_VERSION,
               "equation": "bmd_mg_cm3 = slope * hu + intercept", "id": self.id}
        out.update(self._content())
        if self.selection is not None:
            out["selection"] = _thaw(self.selection)
        return out

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str | os.PathLike | None = None) -> Calibration:
        """Build from :meth:`to_dict` output or a minimal ``{"slope": s, "intercept": i}``.

        Raises
        ------
        CalibrationError
            For a missing or non-numeric slope/intercept, unknown fields, or an
            `id` that does not match the content. The message names `source`.
        """
        where = f"calibration {source}" if source is not None else "calibration data"
        if not isinstance(data, Mapping):
            raise CalibrationError(f"{where}: expected a JSON object with 'slope' and 'intercept', "
                                   f"got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", CALIBRATION_FORMAT)
        if fmt != CALIBRATION_FORMAT:
            raise CalibrationError(f"{where}: 'format' is {fmt!r}, expected {CALIBRATION_FORMAT!r}")
        data.pop("format_version", None)
        data.pop("equation", None)
        data.pop("source", None)
        for name in ("slope", "intercept"):
            if name not in data:
                raise CalibrationError(f"{where}: missing field {name!r}; a calibration file needs at "
                                       'least {"slope": <mg/cm3 per HU>, "intercept": <mg/cm3>}')
            value = data[name]
            if not _is_finite_number(value):
                raise CalibrationError(f"{where}: field {name!r} must be a finite number, got {value!r}")
        slope = float(data["slope"])
        if slope > 0 and not SLOPE_RANGE_MG_CM3_PER_HU[0] <= slope <= SLOPE_RANGE_MG_CM3_PER_HU[1]:
            lo, hi = SLOPE_RANGE_MG_CM3_PER_HU
            raise CalibrationError(
                f"{where}: slope {slope:g} mg/cm3 per HU is far outside any CT scanner's "
                f"({lo:g}-{hi:g}; phantom calibrations give about 0.6-1.2); expected "
                "bmd_mg_cm3 = slope * hu + intercept with the slope in mg/cm3 per HU (HU per "
                "mg/cm3 given, or a unit mix-up?); fit the calibration again")
        known = {f.name for f in fields(cls)} - {"source"}
        unknown = sorted(set(data) - known)
        close = {name: difflib.get_close_matches(name.lower(), sorted(known), n=1, cutoff=0.8)
                 for name in unknown}
        typos = {name: match[0] for name, match in close.items() if match}
        if typos:
            raise CalibrationError(f"{where}: unknown field(s) {sorted(typos)}; did you mean "
                                   f"{[typos[n] for n in sorted(typos)]}? known fields are "
                                   f"{sorted(known)}")
        # Other extra fields (date, scanner, note, ...) are the user's metadata: kept, outside
        # the content (they do not change the id), and reported in the result's provenance.
        extra = {name: data.pop(name) for name in unknown}
        for name in ("kvp", "r_squared"):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise CalibrationError(f"{where}: field {name!r} must be a number or null, got {value!r}")
        selection = data.pop("selection", None)
        if extra:
            selection = {**dict(selection or {}), "file_metadata": extra}
        try:
            return cls(**data, source=None if source is None else str(source), selection=selection)
        except CalibrationError as err:
            raise CalibrationError(f"{where}: {err}") from err
        except (TypeError, ValueError) as err:
            raise CalibrationError(f"{where}: invalid field value ({err})") from err

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the calibration as indented, human-readable JSON; returns the path.

        Overwrites `path` atomically (temporary file, then rename). Use
        :func:`add_to_store` to add to a calibration store, which never overwrites.
        """
        path = Path(path)
        _atomic_write_text(path, self.to_json_text(), overwrite=True)
        return path

    def to_json_text(self) -> str:
        """The JSON text :meth:`to_json` writes."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def describe(self) -> str:
        """One line: the equation, mineral, method, scanner, kVp and date."""
        scanner = " ".join(v for v in (self.manufacturer, self.model, self.device_serial) if v)
        parts = [f"BMD = {self.slope:.5g} * HU {'+' if self.intercept >= 0 else '-'} "
                 f"{abs(self.intercept):.4g} mg/cm3 {self.mineral}", f"method={self.method}"]
        if self.experimental:
            parts.append("EXPERIMENTAL")
        if scanner:
            parts.append(f"scanner={scanner}")
        if self.kvp is not None:
            parts.append(f"kvp={self.kvp:g}")
        if self.acquisition_date:
            parts.append(f"date={self.acquisition_date}")
        if self.r_squared is not None:
            parts.append(f"R2={self.r_squared:.5f}")
        parts.append(self.id)
        return ", ".join(parts)


def read_calibration(path: str | os.PathLike) -> Calibration:
    """Read a calibration JSON file.

    Accepts files written by :meth:`Calibration.to_json` and the minimal form
    ``{"slope": s, "intercept": i}`` (then mineral K2HPO4, method manual).

    Raises
    ------
    CalibrationError
        If the file is missing or not JSON, or a field is missing or invalid;
        the message names the file and the field.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cal.json"
    >>> _ = path.write_text('{"slope": 0.85, "intercept": -2.5}')
    >>> cal = read_calibration(path)
    >>> cal.method, cal.mineral, cal.apply(100.0)
    ('manual', 'K2HPO4', 82.5)
    """
    return Calibration.from_dict(_read_json(path, "calibration"), source=Path(path))


def _atomic_write_text(path: Path, text: str, *, overwrite: bool) -> None:
    """Write `text` to `path` via a temporary file in the same folder.

    With ``overwrite=False`` the final step is a hard link, which fails instead of
    replacing an existing file, so a concurrent writer cannot be clobbered either.
    """
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # raises FileExistsError rather than replacing
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
