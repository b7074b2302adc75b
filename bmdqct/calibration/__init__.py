"""HU -> BMD calibration: phantoms, an asynchronous calibration store, paired and internal fits.

A :class:`Calibration` is the line ``bmd_mg_cm3 = slope * hu + intercept`` with
its provenance (method, mineral reference, phantom, scanner, kVp, kernel, date,
fit quality) and a content-derived ``id``. BMD is in mg/cm³ of a mineral
reference, ``"K2HPO4"`` (default; the reference of the ACR 80/120 mg/cm³
thresholds) or ``"HA"``; references are never mixed silently
(:func:`convert_mineral` converts explicitly, qct-reference §1.6).

Ways to obtain one:

* **phantom** — :func:`calibrate_phantom` finds the rods of a phantom scan
  (:func:`find_rods`) and fits certificate values (:func:`read_certificate`):
  the Mindways two-component (K2HPO4 + water) fit with the water correction, or
  a linear fit for HA phantoms (QRM-BDC, ESP-type) and generic rods
  (:data:`PHANTOMS`). :func:`fit_phantom` fits rod HU measured elsewhere.
* **paired-reference** — :func:`fit_paired_calibration` /
  :func:`fit_paired_table`: OLS of reference-QCT BMD on bmdqct's HU, the linear
  function of Pan et al. 2020.
* **internal** (experimental) — :func:`internal_calibration` from air, fat,
  muscle and blood in the patient's own scan and reference equivalent
  densities set per scanner and kVp (:class:`InternalReference`).
* **manual** — ``Calibration(slope=..., intercept=...)`` or a minimal JSON
  file read by :func:`read_calibration`.

Asynchronous calibration (phantom scanned apart from the patients, e.g.
monthly) uses a store folder: :func:`add_to_store`, :func:`select_calibration`
(same scanner and kVp, closest before the scan), :func:`calibration_history`
(drift review; plot with :func:`bmdqct.plotting.plot_calibration_history`).

Examples
--------
>>> cal = Calibration(slope=0.8456, intercept=0.34, kvp=120.0)
>>> round(cal.apply(100.0), 2)
84.9
"""

from ._core import (
    CONVERSION_METHODS,
    METHODS,
    MINERALS,
    Calibration,
    convert_mineral,
    normalize_mineral,
    read_calibration,
)
from ._internal import (
    TISSUE_WINDOWS_HU,
    TISSUES,
    InternalReference,
    TissueROI,
    build_internal_reference,
    find_reference_tissues,
    internal_calibration,
    read_internal_reference,
)
from ._paired import PAIRED_LEVELS, PairedFit, fit_paired_calibration, fit_paired_table
from ._phantom import (
    MAX_RESIDUAL_MG_CM3,
    MIN_R_SQUARED,
    MINDWAYS_WATER_DISPLACEMENT,
    MINDWAYS_WATER_REFERENCE_MG_CM3,
    PHANTOMS,
    WARN_R_SQUARED,
    WARN_RESIDUAL_MG_CM3,
    Certificate,
    PhantomDefinition,
    RodSpec,
    fit_phantom,
    get_phantom,
    read_certificate,
)
from ._rods import ASSIGNMENTS, RodROI, calibrate_phantom, find_rods
from ._store import (
    DRIFT_REFERENCE_HU,
    DRIFT_TOLERANCE_MG_CM3,
    FALLBACKS,
    add_to_store,
    calibration_history,
    read_store,
    scanner_matches,
    select_calibration,
)

__all__ = [
    "Calibration",
    "read_calibration",
    "convert_mineral",
    "normalize_mineral",
    "MINERALS",
    "METHODS",
    "CONVERSION_METHODS",
    # phantoms
    "PhantomDefinition",
    "PHANTOMS",
    "get_phantom",
    "Certificate",
    "RodSpec",
    "read_certificate",
    "fit_phantom",
    "RodROI",
    "find_rods",
    "calibrate_phantom",
    "ASSIGNMENTS",
    "MINDWAYS_WATER_DISPLACEMENT",
    "MINDWAYS_WATER_REFERENCE_MG_CM3",
    "WARN_R_SQUARED",
    "WARN_RESIDUAL_MG_CM3",
    "MIN_R_SQUARED",
    "MAX_RESIDUAL_MG_CM3",
    # store
    "add_to_store",
    "read_store",
    "select_calibration",
    "scanner_matches",
    "calibration_history",
    "FALLBACKS",
    "DRIFT_TOLERANCE_MG_CM3",
    "DRIFT_REFERENCE_HU",
    # paired
    "PairedFit",
    "fit_paired_calibration",
    "fit_paired_table",
    "PAIRED_LEVELS",
    # internal
    "TISSUES",
    "TISSUE_WINDOWS_HU",
    "TissueROI",
    "InternalReference",
    "find_reference_tissues",
    "build_internal_reference",
    "read_internal_reference",
    "internal_calibration",
]
