"""Phantom definitions, certificates and phantom fits (private; see :mod:`bmdqct.calibration`).

Rod values are always *certificate* values: the density of each rod of a given
phantom serial, read from its calibration certificate. bmdqct ships no real
phantom's values except one clearly labelled example (in
:mod:`bmdqct.synthetic.phantom`, for synthetic scans and tests).

Two fits exist:

* ``"two-component"`` (Mindways Model 3 CT and QA; K2HPO4 + water rods), QCT Pro
  User Guide as transcribed in Bonelab/Ogo::

      HU_rod - W_rod = sigma_ref * K_rod + beta_ref      (OLS over the rods)
      sigma_CT = sigma_ref - 0.2174;  beta_CT = beta_ref + 999.6
      BMD(HU)  = (HU - beta_CT) / sigma_CT               [mg K2HPO4/cm3]

  The naive fit of HU against K2HPO4 alone, ignoring the water column, is wrong
  and is never run.
* ``"linear"`` (QRM-BDC, ESP-type and generic rods; HA or any mineral)::

      HU_rod = s * rho_rod + i  (OLS, HU on density) -> BMD(HU) = (HU - i) / s

  HU is regressed on density (the density is the exactly known variable, the
  classical calibration-curve convention) and the line is inverted.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._core import (
    Calibration,
    _atomic_write_text,
    _is_finite_number,
    _iso_date,
    _read_json,
    normalize_mineral,
)
from .._util import record_dict
from ..errors import CalibrationError, CalibrationWarning

logger = logging.getLogger(__name__)

#: mg of water displaced per mg of K2HPO4 in Mindways' solid reference material (QCT Pro).
MINDWAYS_WATER_DISPLACEMENT = 0.2174
#: Reference water density of the Mindways two-component model, mg/cm³.
MINDWAYS_WATER_REFERENCE_MG_CM3 = 999.6

CERTIFICATE_FORMAT = "bmdqct-phantom-certificate"

#: R² below which a phantom fit warns (CalibrationWarning); Ogo-style QA, qct-reference §1.1.
WARN_R_SQUARED = 0.99
#: R² below which a phantom fit is refused (wrong phantom, missing rod, air bubble).
MIN_R_SQUARED = 0.95
#: Largest accepted per-rod residual, mg/cm³ (about 5x the residuals of a good phantom scan).
MAX_RESIDUAL_MG_CM3 = 15.0
#: Per-rod residual above which a phantom fit warns, mg/cm³. R² alone misses a single bad rod:
#: over a 500 HU range, one rod off by 25 HU still gives R² = 0.998.
WARN_RESIDUAL_MG_CM3 = 5.0

# Nominal sigma_ref used only to rank Mindways rods by expected HU before the fit.
_NOMINAL_SIGMA_REF = 1.4


@dataclass(frozen=True)
class PhantomDefinition:
    """What bmdqct knows about a phantom model (never its rod values).

    Parameters
    ----------
    name : str
        Key used on the command line, e.g. ``"mindways-model3-ct"``.
    title : str
        Human-readable name.
    mineral : {"K2HPO4", "HA"} or None
        Mineral reference of the rods; None means "as the certificate says".
    fit : {"two-component", "linear"}
        Fit used (see the module docstring).
    n_rods : tuple of int or None
        Rod counts the phantom can have; None for any number >= 2.
    rod_diameter_mm : (float, float)
        Range of rod diameters searched by automatic rod finding.
    """

    name: str
    title: str
    mineral: str | None
    fit: str
    n_rods: tuple[int, ...] | None
    rod_diameter_mm: tuple[float, float] = (6.0, 40.0)


#: Phantom models bmdqct can calibrate with (values come from certificates).
PHANTOMS: Mapping[str, PhantomDefinition] = {
    p.name: p for p in (
        PhantomDefinition("mindways-model3-ct", "Mindways Model 3 CT calibration phantom (5 rods)",
                          "K2HPO4", "two-component", (5,)),
        PhantomDefinition("mindways-model3-qa", "Mindways Model 3 QA phantom (4 rods)",
                          "K2HPO4", "two-component", (4,)),
        PhantomDefinition("qrm-bdc-3", "QRM Bone Density Calibration phantom, 3 rods", "HA", "linear", (3,)),
        PhantomDefinition("qrm-bdc-6", "QRM Bone Density Calibration phantom, 6 rods", "HA", "linear", (6,)),
        PhantomDefinition("esp", "European Spine Phantom-type HA inserts (trabecular)", "HA", "linear",
                          (3,)),
        PhantomDefinition("generic-rods", "Rods of known mineral density (any count >= 2)", None,
                          "linear", None, (4.0, 60.0)),
    )
}


def get_phantom(name: str | PhantomDefinition) -> PhantomDefinition:
    """Look up a phantom definition by name (see :data:`PHANTOMS`).

    Raises
    ------
    CalibrationError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> get_phantom("mindways-model3-ct").fit
    'two-component'
    """
    if isinstance(name, PhantomDefinition):
        return name
    key = str(name).strip().lower()
    if key not in PHANTOMS:
        raise CalibrationError(f"unknown phantom {name!r}; known phantoms are {sorted(PHANTOMS)}")
    return PHANTOMS[key]


@dataclass(frozen=True)
class RodSpec:
    """One certificate entry: a rod's label and certified densities (mg/cm³)."""

    label: str
    density_mg_cm3: float
    water_mg_cm3: float | None = None


@dataclass(frozen=True)
class Certificate:
    """Certified rod values of one phantom serial.

    Parameters
    ----------
    phantom : str
        Phantom model key (:data:`PHANTOMS`).
    serial : str
        Phantom serial number.
    mineral : {"K2HPO4", "HA"}
        Mineral reference of ``density_mg_cm3``.
    rods : tuple of RodSpec
        Rods in certificate order (A, B, C, ...).
    note : str, optional
        Free text (e.g. "EXAMPLE values, not a real phantom").

    Examples
    --------
    >>> cert = Certificate.from_dict({"phantom": "qrm-bdc-3", "serial": "X1", "mineral": "HA",
    ...     "rods": [{"label": "A", "density_mg_cm3": 100}, {"label": "B", "density_mg_cm3": 400},
    ...              {"label": "C", "density_mg_cm3": 800}]})
    >>> [r.density_mg_cm3 for r in cert.rods]
    [100.0, 400.0, 800.0]
    """

    phantom: str
    serial: str
    mineral: str
    rods: tuple[RodSpec, ...]
    note: str = ""
    source: str | None = field(default=None, compare=False)

    def __post_init__(self):
        where = f"certificate {self.source}" if self.source else "certificate"
        definition = get_phantom(self.phantom)
        object.__setattr__(self, "phantom", definition.name)
        try:
            mineral = normalize_mineral(self.mineral)
        except ValueError as err:
            raise CalibrationError(f"{where}: {err}") from err
        if definition.mineral is not None and mineral != definition.mineral:
            raise CalibrationError(
                f"{where}: phantom {definition.name} is {definition.mineral}-referenced but the "
                f"certificate says {mineral}; refusing to mix mineral references")
        object.__setattr__(self, "mineral", mineral)
        rods = tuple(self.rods)
        if len(rods) < 2:
            raise CalibrationError(f"{where}: needs at least two rods, got {len(rods)}")
        if definition.n_rods is not None and len(rods) not in definition.n_rods:
            raise CalibrationError(f"{where}: phantom {definition.name} has {definition.n_rods} rods, "
                                   f"the certificate lists {len(rods)}")
        labels = [r.label for r in rods]
        if len(set(labels)) != len(labels):
            raise CalibrationError(f"{where}: rod labels must be distinct, got {labels}")
        if definition.fit == "two-component" and any(r.water_mg_cm3 is None for r in rods):
            missing = [r.label for r in rods if r.water_mg_cm3 is None]
            raise CalibrationError(f"{where}: {definition.name} needs a water_mg_cm3 value for every rod "
                                   f"(the two-component fit); missing for rods {missing}")
        if len({r.density_mg_cm3 for r in rods}) < 2:
            raise CalibrationError(f"{where}: rods must have at least two different densities")
        object.__setattr__(self, "rods", rods)
        object.__setattr__(self, "serial", str(self.serial))

    @property
    def definition(self) -> PhantomDefinition:
        return get_phantom(self.phantom)

    @property
    def density_mg_cm3(self) -> np.ndarray:
        return np.array([r.density_mg_cm3 for r in self.rods])

    @property
    def water_mg_cm3(self) -> np.ndarray | None:
        if any(r.water_mg_cm3 is None for r in self.rods):
            return None
        return np.array([r.water_mg_cm3 for r in self.rods])

    def to_dict(self) -> dict:
        rods = [record_dict(rod, exclude=() if rod.water_mg_cm3 is not None else ("water_mg_cm3",))
                for rod in self.rods]
        # rods last (after note), as certificates have always been written
        return {"format": CERTIFICATE_FORMAT, **record_dict(self, exclude=("source", "rods"), rods=rods)}

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str | os.PathLike | None = None) -> Certificate:
        """Build from :meth:`to_dict` output; errors name `source` and the field."""
        where = f"certificate {source}" if source is not None else "certificate"
        if not isinstance(data, Mapping):
            raise CalibrationError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format", CERTIFICATE_FORMAT)
        if fmt != CERTIFICATE_FORMAT:
            raise CalibrationError(f"{where}: 'format' is {fmt!r}, expected {CERTIFICATE_FORMAT!r}")
        for name in ("phantom", "serial", "rods"):
            if name not in data:
                raise CalibrationError(f"{where}: missing field {name!r}")
        definition = get_phantom(data["phantom"])
        mineral = data.get("mineral", definition.mineral)
        if mineral is None:
            raise CalibrationError(f"{where}: missing field 'mineral' (K2HPO4 or HA); a "
                                   f"{definition.name} certificate must state it")
        raw_rods = data["rods"]
        if not isinstance(raw_rods, Sequence) or isinstance(raw_rods, str):
            raise CalibrationError(f"{where}: 'rods' must be a list of objects")
        rods = []
        for index, entry in enumerate(raw_rods):
            if not isinstance(entry, Mapping):
                raise CalibrationError(f"{where}: rods[{index}] must be an object with 'density_mg_cm3'")
            label = str(entry.get("label", chr(ord("A") + index)))
            values = {}
            for name in ("density_mg_cm3", "water_mg_cm3"):
                value = entry.get(name)
                if value is None:
                    if name == "density_mg_cm3":
                        raise CalibrationError(f"{where}: rods[{index}] ({label}) has no 'density_mg_cm3'")
                    values[name] = None
                    continue
                if not _is_finite_number(value):
                    raise CalibrationError(f"{where}: rods[{index}] ({label}) field {name!r} must be a "
                                           f"finite number, got {value!r}")
                values[name] = float(value)
            rods.append(RodSpec(label, values["density_mg_cm3"], values["water_mg_cm3"]))
        return cls(phantom=definition.name, serial=str(data["serial"]), mineral=mineral,
                   rods=tuple(rods), note=str(data.get("note", "")),
                   source=None if source is None else str(source))

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the certificate as indented JSON (atomically); returns the path."""
        path = Path(path)
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", overwrite=True)
        return path


def read_certificate(path: str | os.PathLike) -> Certificate:
    """Read a phantom certificate JSON file.

    The file holds ``phantom`` (a key of :data:`PHANTOMS`), ``serial``,
    ``mineral`` and ``rods``: a list of ``{"label", "density_mg_cm3"}`` objects,
    plus ``"water_mg_cm3"`` for Mindways phantoms, in certificate order.

    Raises
    ------
    CalibrationError
        If the file is missing or invalid; the message names the file and field.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from bmdqct.synthetic import example_certificate
    >>> path = example_certificate("qrm-bdc-3").to_json(pathlib.Path(tempfile.mkdtemp()) / "cert.json")
    >>> cert = read_certificate(path)
    >>> cert.phantom, cert.mineral, [r.density_mg_cm3 for r in cert.rods]
    ('qrm-bdc-3', 'HA', [100.0, 400.0, 800.0])
    """
    return Certificate.from_dict(_read_json(path, "certificate"), source=Path(path))


def as_certificate(certificate) -> Certificate:
    """Accept a :class:`Certificate`, a mapping, or a path to a certificate JSON."""
    if isinstance(certificate, Certificate):
        return certificate
    if isinstance(certificate, Mapping):
        return Certificate.from_dict(certificate)
    if isinstance(certificate, (str, os.PathLike)):
        return read_certificate(certificate)
    raise TypeError(f"certificate must be a Certificate, a mapping or a path, got {type(certificate).__name__}")


@dataclass(frozen=True)
class _LineFit:
    """OLS of y on x: y = slope * x + intercept."""

    slope: float
    intercept: float
    r_squared: float


def _ols(x, y) -> _LineFit:
    """Least-squares line of `y` on `x` (R² is 1 for two points, 0 for constant `y`)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, sxy, syy = float(dx @ dx), float(dx @ dy), float(dy @ dy)
    if sxx == 0:
        raise CalibrationError(f"cannot fit a line: the densities are all equal ({x.tolist()})")
    slope = sxy / sxx
    r2 = (sxy * sxy / (sxx * syy) if syy > 0 else 0.0) if x.size > 2 else 1.0
    return _LineFit(slope, float(y.mean() - slope * x.mean()), r2)


def _fit_rods(rod_hu: np.ndarray, cert: Certificate) -> tuple[float, float, float, np.ndarray, dict]:
    """Fit the phantom model; return (slope, intercept, r², residuals_mg_cm3, details)."""
    water = cert.water_mg_cm3 if cert.definition.fit == "two-component" else None
    return _fit_line(rod_hu, cert.density_mg_cm3, water)


def _fit_line(rod_hu: np.ndarray, density: np.ndarray, water: np.ndarray | None):
    """Two-component fit when `water` is given, else linear; see :func:`_fit_rods`."""
    if water is not None:
        line = _ols(density, rod_hu - water)
        sigma_ref, beta_ref = line.slope, line.intercept
        sigma_ct = sigma_ref - MINDWAYS_WATER_DISPLACEMENT
        beta_ct = beta_ref + MINDWAYS_WATER_REFERENCE_MG_CM3
        if sigma_ref <= 0 or sigma_ct <= 0:
            raise CalibrationError(
                f"two-component fit gave sigma_ref = {sigma_ref:.4g} HU per mg/cm3 (sigma_CT = "
                f"{sigma_ct:.4g}); a K2HPO4 phantom must give a clearly positive slope. Rod HU "
                f"{np.round(rod_hu, 1).tolist()}: wrong phantom, certificate or rod order?")
        residuals = (rod_hu - water - beta_ref) / sigma_ref - density
        details = {"fit": "two-component", "sigma_ref_hu_per_mg_cm3": sigma_ref, "beta_ref_hu": beta_ref,
                   "sigma_ct_hu_per_mg_cm3": sigma_ct, "beta_ct_hu": beta_ct,
                   "water_displacement": MINDWAYS_WATER_DISPLACEMENT,
                   "water_reference_mg_cm3": MINDWAYS_WATER_REFERENCE_MG_CM3}
        return 1.0 / sigma_ct, -beta_ct / sigma_ct, line.r_squared, residuals, details
    line = _ols(density, rod_hu)
    if line.slope <= 0:
        raise CalibrationError(f"linear phantom fit gave a slope of {line.slope:.4g} HU per mg/cm3; rod "
                               f"HU {np.round(rod_hu, 1).tolist()} do not rise with density. Wrong "
                               "phantom, certificate or rod order?")
    residuals = (rod_hu - line.intercept) / line.slope - density
    details = {"fit": "linear", "hu_per_mg_cm3": line.slope, "hu_at_zero_density": line.intercept}
    return 1.0 / line.slope, -line.intercept / line.slope, line.r_squared, residuals, details


def fit_phantom(rod_hu, certificate, *, rod_sd_hu=None, metadata: Mapping | None = None,
                warn_r_squared: float = WARN_R_SQUARED, min_r_squared: float = MIN_R_SQUARED,
                warn_residual_mg_cm3: float = WARN_RESIDUAL_MG_CM3,
                max_residual_mg_cm3: float = MAX_RESIDUAL_MG_CM3,
                details: Mapping[str, Any] | None = None) -> Calibration:
    """Phantom calibration from the mean HU of each rod, in certificate order.

    Runs the fit the phantom needs: the Mindways two-component (K2HPO4 + water)
    fit with the water correction, or a plain linear fit for HA and generic rods.

    Parameters
    ----------
    rod_hu : (N,) array_like
        Mean HU of each rod, in the order of ``certificate.rods``.
    certificate : Certificate, mapping or path
        Certified rod values of the phantom serial.
    rod_sd_hu : (N,) array_like, optional
        SD of each rod ROI, HU (recorded only).
    metadata : mapping, optional
        Scan metadata (keys of :data:`bmdqct.volume.METADATA_KEYS`): scanner,
        ``kvp``, ``kernel`` and ``study_date``/``acquisition_date`` go into the result.
    warn_r_squared, min_r_squared : float, optional
        R² below `warn_r_squared` warns; below `min_r_squared` raises.
    warn_residual_mg_cm3, max_residual_mg_cm3 : float, optional
        A rod whose residual exceeds the first warns, the second raises.
    details : mapping, optional
        Extra JSON-able details to record (e.g. the rod table of :func:`find_rods`).

    Returns
    -------
    Calibration
        ``method="phantom"``, the certificate's mineral, R², per-rod residuals;
        ``details["rods"]`` holds per rod its ``label``, ``density_mg_cm3``,
        ``mean_hu`` (and ``water_mg_cm3``, ``sd_hu`` when known). Calibrations
        fitted before bmdqct result format 3 name these ``hu_mean``, ``hu_sd``.

    Raises
    ------
    CalibrationError
        If the fit is bad (R² or a residual out of bounds); the message lists
        the HU and residual of every rod.

    Warns
    -----
    CalibrationWarning
        If ``min_r_squared <= R² < warn_r_squared``, or a residual exceeds
        `warn_residual_mg_cm3` (but not `max_residual_mg_cm3`).

    Examples
    --------
    The test vector of qct-reference §1.2 (Ogo example certificate):

    >>> cert = {"phantom": "mindways-model3-ct", "serial": "EXAMPLE", "mineral": "K2HPO4",
    ...         "rods": [{"label": l, "density_mg_cm3": k, "water_mg_cm3": w} for l, k, w in zip(
    ...             "ABCDE", [-51.83, -53.40, 58.88, 157.05, 375.83],
    ...             [1012.25, 1056.95, 1103.57, 1119.52, 923.20])]}
    >>> cal = fit_phantom([-60.312, -17.810, 186.002, 339.390, 449.362], cert)
    >>> round(cal.apply(100.0), 2)
    84.9
    """
    cert = as_certificate(certificate)
    rod_hu = np.asarray(rod_hu, dtype=np.float64)
    if rod_hu.shape != (len(cert.rods),):
        raise CalibrationError(f"got {rod_hu.size} rod HU values for a certificate with {len(cert.rods)} "
                               f"rods ({[r.label for r in cert.rods]}); pass one mean HU per rod, in order")
    if not np.all(np.isfinite(rod_hu)):
        raise CalibrationError(f"rod HU must be finite, got {rod_hu.tolist()}")
    if rod_sd_hu is not None:
        rod_sd_hu = np.asarray(rod_sd_hu, dtype=np.float64)
        if rod_sd_hu.shape != rod_hu.shape:
            raise CalibrationError(f"got {rod_sd_hu.size} rod SD values for {rod_hu.size} rods; pass one SD per "
                                   "rod, in certificate order, or none")
    slope, intercept, r2, residuals, fit_details = _fit_rods(rod_hu, cert)
    labels = [r.label for r in cert.rods]
    _check_fit_quality(r2, residuals, rod_hu, cert, (warn_r_squared, min_r_squared),
                       (warn_residual_mg_cm3, max_residual_mg_cm3))
    meta = dict(metadata or {})
    rods = []
    for index, rod in enumerate(cert.rods):
        entry = {"label": rod.label, "density_mg_cm3": rod.density_mg_cm3, "mean_hu": float(rod_hu[index])}
        if rod.water_mg_cm3 is not None:
            entry["water_mg_cm3"] = rod.water_mg_cm3
        if rod_sd_hu is not None:
            entry["sd_hu"] = float(rod_sd_hu[index])
        rods.append(entry)
    all_details = {**fit_details, "rods": rods, **dict(details or {})}
    cal = Calibration(
        slope=slope, intercept=intercept, mineral=cert.mineral, method="phantom",
        phantom_model=cert.phantom, phantom_serial=cert.serial,
        manufacturer=meta.get("manufacturer"), model=meta.get("model"),
        device_serial=meta.get("device_serial"), station=meta.get("station"),
        kvp=meta.get("kvp"), kernel=meta.get("kernel"),
        acquisition_date=_iso_date(meta.get("acquisition_date") or meta.get("study_date"), "scan date"),
        r_squared=r2, residuals_mg_cm3=dict(zip(labels, residuals.tolist())), n=len(labels),
        details=all_details)
    logger.info("phantom calibration %s", cal.describe())
    return cal


def _check_fit_quality(r2, residuals, rod_hu, cert, r2_limits, residual_limits) -> None:
    (warn_r2, min_r2), (warn_residual, max_residual) = r2_limits, residual_limits
    table = "; ".join(f"{rod.label}: {hu:.1f} HU, residual {res:+.1f} mg/cm3"
                      for rod, hu, res in zip(cert.rods, rod_hu, residuals))
    worst = int(np.argmax(np.abs(residuals)))
    summary = (f"R2 = {r2:.4f} (minimum {min_r2}), largest residual {residuals[worst]:+.1f} mg/cm3 at rod "
               f"{cert.rods[worst].label} (limit {max_residual:g})")
    if r2 < min_r2 or abs(residuals[worst]) > max_residual:
        raise CalibrationError(
            f"phantom fit rejected: {summary}. Per rod: {table}. Check the phantom model and certificate "
            f"({cert.phantom}, serial {cert.serial}), that every rod is in the scan, and look for air bubbles "
            "in the rods")
    if r2 < warn_r2 or abs(residuals[worst]) > warn_residual:
        if r2 < warn_r2:
            what = f"phantom fit R2 = {r2:.4f} is below {warn_r2}"
        else:
            what = (f"phantom fit: largest residual {residuals[worst]:+.1f} mg/cm3 at rod "
                    f"{cert.rods[worst].label} exceeds {warn_residual:g} mg/cm3")
        warnings.warn(f"{what}; per rod: {table}", CalibrationWarning, stacklevel=3)
