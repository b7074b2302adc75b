"""From a CT to the report a radiologist reads: BMD of T12, L1, L2 and the ACR category.

:func:`measure` runs the whole pipeline on one scan::

    load_ct -> segment_spine (or an external label map) -> label_vertebrae
    -> vertebral_body_voi per level -> VOI statistics -> Calibration.apply
    -> exclusion checks -> diagnose (L1-L2 mean, substitution, ACR category)

and returns a frozen :class:`Result`. Without a calibration the result holds
HU only and says so (``no_calibration`` flag, no category).

Exclusion checks per measured level (each excluded level carries its reason
and a ``excluded`` flag; :func:`bmdqct.classify.diagnose` then substitutes):

* **partial** — the body touches the scan's edge (never measured);
* **fracture-like height loss** — the body's middle height (about its
  sagittal midplane, :attr:`bmdqct.labeling.LevelInfo.heights_mm`) is below
  90 % of the mean middle height of its labelled neighbours that are not cut
  by the scan's edge. Genant's semiquantitative grade 1 starts at a 20-25 %
  loss of the anterior, middle or posterior height; the middle height is the
  one a binary body mask measures most reliably (the anterior and posterior
  edges are rounded and tilted), and wedge and biconcave fractures both lower
  it. On synthetic scans (608 wedge fractures with 25-42 % anterior loss and
  3,040 normal bodies of T12, L1 and L2 from 116 seeds; 0.7-2 mm pixels,
  1-3 mm slices; per-level and 4-class truth maps; scoliosis up to 8
  degrees) the ratio was 0.64-0.89 for fractures and at least 0.91 for
  normal bodies;
* **focal sclerosis** — at least 2 % of the VOI's voxels exceed the VOI median
  by more than max(200 HU, 5 robust SD): a bone island or sclerotic lesion
  inside the VOI;
* **failed QC** — VOI smaller than 500 mm³, the VOI could not be placed, or
  the segmentation's mean confidence in the body is below 0.5.

Differences of more than 30 mg/cm³ between a level and both its measured
neighbours raise an ``inter_level_outlier`` flag without excluding anything.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._util import (
    atomic_write,
    atomic_write_text,
    deprecated_alias,
    json_safe,
    package_versions,
    record_dict,
    renamed_value,
)
from ._version import __version__
from .classify import (
    ACR_THRESHOLDS_MG_CM3,
    DEFAULT_SUBSTITUTES,
    BMDCategory,
    Diagnosis,
    diagnose,
    select_levels,
)
from .contrast import ContrastFinding, detect_contrast
from .errors import (
    CalibrationError,
    GeometryError,
    InputError,
    LabelingError,
    MeasurementError,
)
from .labeling import (
    VertebraLabels,
    label_vertebrae,
    level_steps,
    vertebra_labels_from_map,
)
from .levels import SEGMENTATION_CLASSES, level_index
from .qc import QCFlag
from .schema import LEGACY_LEVEL_COPIES, LEGACY_RESULT_COPIES
from .spine import find_spinal_canal
from .voi import DEFAULT_VOI_PROTOCOL, VOI, VOIProtocol, vertebral_body_voi
from .volume import CTVolume, LabelVolume, same_grid

__all__ = [
    "LevelMeasurement",
    "Result",
    "measure",
    "measure_voi",
    "report_text",
    "MIN_VOI_VOLUME_MM3",
    "HEIGHT_LOSS_RATIO",
    "RESULT_FORMAT",
]

logger = logging.getLogger(__name__)

#: Identifier of the ``result.json`` layout.
RESULT_FORMAT = "bmdqct-result/3"   # 3: units last (mean_hu, ...), frame on level entries; see bmdqct.schema
#: Smallest VOI accepted (qct-reference §5.5: at least 0.5 cm³).
MIN_VOI_VOLUME_MM3 = 500.0
#: A middle height below this fraction of the neighbours' is fracture-like (see the module notes).
HEIGHT_LOSS_RATIO = 0.90
#: Mean segmentation confidence below which a body fails QC.
MIN_CONFIDENCE = 0.5
#: Focal sclerosis: share of VOI voxels far above the median that excludes a level.
SCLEROSIS_FRACTION = 0.02
SCLEROSIS_MIN_EXCESS_HU = 200.0
#: Inter-level difference that raises a flag (qct-reference §3.1, an implementation choice).
INTER_LEVEL_DIFFERENCE_MG_CM3 = 30.0

@dataclass(frozen=True)
class LevelMeasurement:
    """Measurement of one vertebral level.

    Attributes
    ----------
    level : str
    status : {"measured", "excluded", "partial", "missing", "failed"}
        ``measured`` and ``excluded`` carry statistics; ``excluded`` levels
        are not used for the diagnosis.
    mean_hu, median_hu, sd_hu : float or None
        VOI statistics in HU (SD with ``ddof=1``).
    n_voxels : int
        Voxels in the VOI (0 if not measured).
    volume_mm3 : float
        VOI volume.
    center_mm : (float, float, float) or None
        VOI centre, patient LPS mm (:meth:`to_dict` says so with ``"frame": "LPS"``).
    semi_axis_ap_mm, semi_axis_lr_mm, covered_height_mm : float or None
        VOI geometry.
    bmd_mg_cm3 : float or None
        Calibrated BMD of ``mean_hu`` (None without calibration).
    height_mm : float or None
        Body height (from the labelling).
    confidence : float or None
        Mean segmentation confidence over the body.
    reason : str
        Why the level is excluded, partial, missing or failed ('' if measured).
    flags : tuple of QCFlag
    hu_mean, hu_median, hu_sd : float or None
        Deprecated read-only aliases of `mean_hu`, `median_hu`, `sd_hu` (they
        emit a :class:`DeprecationWarning`; result format 2 used these names).
    """

    level: str
    status: str
    mean_hu: float | None = None
    median_hu: float | None = None
    sd_hu: float | None = None
    n_voxels: int = 0
    volume_mm3: float = 0.0
    center_mm: tuple[float, float, float] | None = None
    semi_axis_ap_mm: float | None = None
    semi_axis_lr_mm: float | None = None
    covered_height_mm: float | None = None
    bmd_mg_cm3: float | None = None
    height_mm: float | None = None
    confidence: float | None = None
    reason: str = ""
    flags: tuple[QCFlag, ...] = ()

    hu_mean = deprecated_alias("mean_hu", "hu_mean")
    hu_median = deprecated_alias("median_hu", "hu_median")
    hu_sd = deprecated_alias("sd_hu", "hu_sd")

    @property
    def usable(self) -> bool:
        """True if the level was measured and not excluded."""
        return self.status == "measured"

    def to_dict(self) -> dict:
        """JSON-safe dictionary (a ``levels`` entry of ``result.json``); flags as ``str(flag)``.

        ``frame`` is ``"LPS"``: ``center_mm`` is in patient LPS millimetres. The format-2
        names ``hu_mean``, ``hu_median``, ``hu_sd`` follow as deprecated copies
        (:data:`bmdqct.schema.LEGACY_LEVEL_COPIES`).
        """
        legacy = {old: getattr(self, new) for new, old in LEGACY_LEVEL_COPIES.items()}
        return record_dict(self, frame="LPS", flags=[str(f) for f in self.flags], **legacy)


@dataclass(frozen=True, eq=False)
class Result:
    """Everything :func:`measure` found for one scan.

    Attributes
    ----------
    levels : mapping of str to LevelMeasurement
        The requested levels, cranio-caudal.
    bmd_l1_l2_mg_cm3 : float or None
        Mean BMD of the levels used for diagnosis (L1 and L2 unless
        substituted); None without calibration or usable level.
    mean_hu_l1_l2 : float or None
        Mean HU of the same levels.
    category : BMDCategory or None
    levels_used : tuple of str
    diagnosis : Diagnosis
    flags : tuple of QCFlag
        Every QC finding: labelling, VOI, exclusions, substitution, calibration.
    calibration : Calibration or None
    provenance : mapping
        Versions, input, model id, calibration id, VOI protocol, timings.
    labels : VertebraLabels
        Per-level bodies on the CT grid (for the label-map output and QC picture).
    vois : mapping of str to VOI
        The VOIs of the measured levels.
    case : str or None
        Case name (file stem of the input, or given).
    hu_l1_l2 : float or None
        Deprecated read-only alias of `mean_hu_l1_l2` (emits a :class:`DeprecationWarning`).
    """

    levels: Mapping[str, LevelMeasurement]
    bmd_l1_l2_mg_cm3: float | None
    mean_hu_l1_l2: float | None
    category: BMDCategory | None
    levels_used: tuple[str, ...]
    diagnosis: Diagnosis
    flags: tuple[QCFlag, ...]
    calibration: object | None
    provenance: Mapping
    labels: VertebraLabels = field(repr=False)
    vois: Mapping[str, VOI] = field(repr=False, default_factory=dict)
    case: str | None = None

    hu_l1_l2 = deprecated_alias("mean_hu_l1_l2", "hu_l1_l2")

    def __post_init__(self):
        object.__setattr__(self, "levels", types.MappingProxyType(dict(self.levels)))
        object.__setattr__(self, "vois", types.MappingProxyType(dict(self.vois)))
        object.__setattr__(self, "provenance", types.MappingProxyType(dict(self.provenance)))
        object.__setattr__(self, "flags", tuple(self.flags))

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def to_dict(self) -> dict:
        """JSON-safe dictionary: the layout of ``result.json``."""
        cal = self.calibration
        out = {
            "format": RESULT_FORMAT,
            "case": self.case,
            "levels": {name: m.to_dict() for name, m in self.levels.items()},
            "bmd_l1_l2_mg_cm3": self.bmd_l1_l2_mg_cm3,
            "mean_hu_l1_l2": self.mean_hu_l1_l2,
            **{old: getattr(self, new) for new, old in LEGACY_RESULT_COPIES.items()},   # deprecated copy
            "category": None if self.category is None else self.category.value,
            "levels_used": list(self.levels_used),
            "diagnosis": self.diagnosis.to_dict(),
            "qc": {"flags": [str(f) for f in self.flags],
                   "details": [f.to_dict() for f in self.flags],
                   "labelling": {name: info.to_dict() for name, info in self.labels.levels.items()},
                   "rib_check": None if self.labels.rib_check is None else self.labels.rib_check.to_dict()},
            "vois": {name: v.to_dict() for name, v in self.vois.items()},
            "calibration": None if cal is None else cal.to_dict(),
            "provenance": dict(self.provenance),
        }
        return _json_safe(out)

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON (atomically: a temporary file, then a rename)."""
        return _atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def report(self) -> str:
        """A short plain-text report (what ``bmdqct demo`` prints); see :func:`report_text`."""
        return report_text(self.to_dict())

    def __repr__(self) -> str:
        value = "None" if self.bmd_l1_l2_mg_cm3 is None else f"{self.bmd_l1_l2_mg_cm3:.1f}"
        return (f"Result(case={self.case!r}, bmd_l1_l2_mg_cm3={value}, category="
                f"{None if self.category is None else self.category.value!r}, levels_used={self.levels_used}, "
                f"flags={[str(f) for f in self.flags]})")


def measure_voi(volume: CTVolume, voi: VOI, *, calibration=None) -> LevelMeasurement:
    """Statistics of the CT inside a VOI, and BMD if a calibration is given.

    Parameters
    ----------
    volume : CTVolume
    voi : VOI
        From :func:`bmdqct.voi.vertebral_body_voi` on the same grid.
    calibration : Calibration, optional
        Converts the mean HU into BMD (the calibration is linear, so this is
        also the mean BMD of the voxels).

    Returns
    -------
    LevelMeasurement
        Status ``"measured"``.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> from bmdqct.voi import vertebral_body_voi
    >>> k, j, i = np.mgrid[:30, :40, :50]
    >>> body = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1) & (k >= 3) & (k < 27)
    >>> ct = CTVolume.from_spacing(np.where(body, 150.0, 0.0), (1, 1, 1))
    >>> voi = vertebral_body_voi(ct, LabelVolume.from_spacing(body * 20, (1, 1, 1), names={"L1": 20}), "L1")
    >>> m = measure_voi(ct, voi)
    >>> m.mean_hu, m.sd_hu, m.bmd_mg_cm3
    (150.0, 0.0, None)
    """
    values = voi.values(volume).astype(np.float64)
    if values.size == 0:
        raise MeasurementError(f"the VOI of {voi.level} holds no voxel")
    mean = float(values.mean())
    bmd = None if calibration is None else float(calibration.apply(mean))
    return LevelMeasurement(
        level=voi.level, status="measured", mean_hu=mean, median_hu=float(np.median(values)),
        sd_hu=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        n_voxels=int(values.size), volume_mm3=float(voi.volume_mm3), center_mm=tuple(voi.center_mm),
        semi_axis_ap_mm=voi.semi_axis_ap_mm, semi_axis_lr_mm=voi.semi_axis_lr_mm,
        covered_height_mm=voi.covered_height_mm, bmd_mg_cm3=bmd, flags=tuple(voi.flags))


def measure(ct_or_path, *, calibration=None, labels=None, label_scheme=None, model=None,
            levels: Sequence[str] = ("T12", "L1", "L2"), protocol: VOIProtocol = DEFAULT_VOI_PROTOCOL,
            thresholds: Sequence[float] = ACR_THRESHOLDS_MG_CM3, convention: str = "acr",
            substitutes: Mapping[str, Sequence[str]] | None = None,
            calibration_window_days: int = 60, calibration_fallback=None, case: str | None = None,
            progress: bool = False, contrast_correction: bool = False) -> Result:
    """Measure trabecular BMD of T12, L1, L2 in a CT and classify the L1–L2 mean.

    Parameters
    ----------
    ct_or_path : CTVolume or path
        The CT, or a file/folder :func:`bmdqct.io.load_ct` reads (DICOM
        folder, NIfTI, MHA, NRRD).
    calibration : Calibration, path or None, optional
        A :class:`~bmdqct.calibration.Calibration`; a calibration JSON file
        (``{"slope": s, "intercept": i}`` at least); or a calibration store
        folder, from which :func:`~bmdqct.calibration.select_calibration`
        picks the one of the scan's scanner and kVp closest before the scan
        date. None: HU only (no BMD, no category; flagged ``no_calibration``).
    labels : LabelVolume, VertebraLabels, path or None, optional
        Use these labels instead of the segmentation model: a per-level label
        map (TotalSegmentator / VerSe; a path is read with
        :func:`bmdqct.io.load_labels` onto the CT grid using `label_scheme`),
        a 4-class segmentation, or finished :class:`VertebraLabels`.
    label_scheme : {"totalsegmentator", "verse", "classes"} or mapping, optional
        Id scheme of a label-map path (default: TotalSegmentator's ``total``
        ids); ``"classes"`` reads a 4-class segmentation (0 background, 1
        T1-T6, 2 T7-T12, 3 L1-L2, as ``bmdqct segment`` writes). Ignored for
        in-memory labels.
    model : SpineModel or path, optional
        Segmentation model; None uses the shipped weights. Ignored if
        `labels` is given.
    levels : sequence of str, optional
        Levels to measure; the diagnosis uses L1 and L2 and substitutes
        from these.
    protocol : VOIProtocol, optional
        VOI geometry (Pan et al.'s by default).
    thresholds, convention
        ACR thresholds and boundary convention (:func:`bmdqct.classify.classify_bmd`).
    substitutes : mapping, optional
        Substitution order for L1 and L2 (:func:`bmdqct.classify.diagnose`);
        by default :data:`~bmdqct.classify.DEFAULT_SUBSTITUTES`, except on a
        scan that ends above L1 (``thoracic_only`` flag), where by default no
        level substitutes for L1-L2 and there is no category: pass
        `substitutes` to ask for one from T12.
    calibration_window_days : int, optional
        Oldest store calibration accepted, days before the scan.
    calibration_fallback : optional
        What a calibration store does when no calibration qualifies: the
        `fallback` of :func:`~bmdqct.calibration.select_calibration`
        (``"nearest-after"``, ``"nearest"``, ``"latest-before"``, a
        Calibration or a calibration file). Ignored without a store.
    case : str, optional
        Name of the case in the result (default: the input's file stem).
    progress : bool, optional
        Show the segmentation's progress bar.
    contrast_correction : bool, optional
        What to do with a contrast-enhanced scan (:func:`bmdqct.contrast.detect_contrast`,
        run once per scan, flags it ``contrast:<phase>`` and records its finding in
        the provenance). False (default): HU and BMD are reported, but the category is
        withheld, since the ACR cut-offs hold for unenhanced scans. True: the published
        phase-specific offset (:data:`bmdqct.contrast.CONTRAST_OFFSET_HU`: 20 HU arterial,
        14.75 HU portal-venous, from TotalSegmentator's spine report, which raises its
        90.25 HU threshold by these amounts) is subtracted from each level's HU mean and
        median before calibration, and the result is flagged ``contrast_corrected``; an
        enhanced scan of undetermined phase has no published offset and keeps its
        category withheld. Scans without detected contrast are not affected.

    Returns
    -------
    Result

    Raises
    ------
    InputError
        If the CT or the label map cannot be read.
    GeometryError
        If finished `labels` (:class:`VertebraLabels`) lie on another grid.
    CalibrationError
        If the calibration file is invalid or no stored calibration fits.
    SegmentationError, LabelingError
        If no vertebral body is found (no spine in view, empty label map).

    Examples
    --------
    A synthetic body with labels given (no model needed):

    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> from bmdqct.calibration import Calibration
    >>> k, j, i = np.mgrid[:40, :40, :50]
    >>> l1 = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1) & (k >= 2) & (k < 18)
    >>> l2 = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1) & (k >= 22) & (k < 38)
    >>> hu = np.where(l1 | l2, 130.0, 0.0)
    >>> ct = CTVolume.from_spacing(hu, (1.5, 1, 1))
    >>> lab = LabelVolume.from_spacing(l1 * 21 + l2 * 20, (1.5, 1, 1), names={"L1": 20, "L2": 21})
    >>> res = measure(ct, labels=lab, calibration=Calibration(slope=0.8, intercept=0.0))
    >>> res.bmd_l1_l2_mg_cm3, res.category.value, res.levels["T12"].status
    (104.0, 'osteopenia', 'missing')
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    volume, source = _as_volume(ct_or_path)
    timings["load_s"] = time.perf_counter() - t0
    if case is None:
        case = _case_name(source) if source else None
    for name in levels:
        level_index(name)  # validates names
    flags: list[QCFlag] = [QCFlag(code, None, message)  # reader's findings (bmdqct.io)
                           for code, message in volume.metadata.get("input_flags") or ()]

    t = time.perf_counter()
    canal = find_spinal_canal(volume)           # once: for contrast, the network's crop and the labelling
    contrast = detect_contrast(volume, canal=canal)
    contrast_offset_hu = contrast.offset_hu if (contrast.contrast and contrast_correction) else None
    if contrast.contrast:
        flags.append(QCFlag("contrast", contrast.phase, f"contrast-enhanced scan ({contrast.reason})"))
    if contrast_offset_hu is not None:
        flags.append(QCFlag("contrast_corrected", None,
                            f"{contrast.phase} phase: {contrast_offset_hu:g} HU subtracted from each level's HU "
                            "before calibration (TotalSegmentator spine report offset)"))
    timings["contrast_s"] = time.perf_counter() - t

    t = time.perf_counter()
    cal = _as_calibration(calibration, volume, calibration_window_days, calibration_fallback)
    if cal is None:
        flags.append(QCFlag("no_calibration", None, "no calibration given: HU only, no BMD and no category"))
    timings["calibration_s"] = time.perf_counter() - t

    t = time.perf_counter()
    vertebrae, model_id, label_source = _vertebrae(volume, labels, label_scheme, model, progress, timings, canal)
    timings["labeling_s"] = time.perf_counter() - t - timings.get("segmentation_s", 0.0)
    flags.extend(vertebrae.flags)

    t = time.perf_counter()
    measurements: dict[str, LevelMeasurement] = {}
    vois: dict[str, VOI] = {}
    for name in sorted(set(levels), key=level_index):
        m, voi = _measure_level(volume, vertebrae, name, cal, protocol)
        if contrast_offset_hu is not None:
            m = _contrast_corrected(m, contrast_offset_hu, cal)
        measurements[name] = m
        if voi is not None:
            vois[name] = voi
    measurements = _apply_exclusions(measurements, vertebrae, vois, volume)
    timings["voi_s"] = time.perf_counter() - t
    for m in measurements.values():
        flags.extend(f for f in m.flags if f not in flags)
    flags.extend(_inter_level_flags(measurements))

    excluded = {n: m.reason for n, m in measurements.items() if m.status not in ("measured", "missing")}
    if substitutes is None:
        thoracic_only = any(f.code == "thoracic_only" for f in vertebrae.flags)
        substitutes = {"L1": (), "L2": ()} if thoracic_only else DEFAULT_SUBSTITUTES
    if cal is not None:
        diagnosis = diagnose({n: m.bmd_mg_cm3 for n, m in measurements.items()}, excluded=excluded,
                             substitutes=substitutes, thresholds=thresholds, convention=convention)
    else:
        selection = select_levels({n: m.mean_hu for n, m in measurements.items()}, excluded=excluded,
                                  substitutes=substitutes)
        diagnosis = Diagnosis(None, None, selection.levels_used, selection.flags,
                              "no calibration: HU only, no category; " + selection.reason)
    flags.extend(diagnosis.flags)
    if contrast.contrast and contrast_offset_hu is None:
        diagnosis = _withhold_category(diagnosis, contrast, contrast_correction)
    used = diagnosis.levels_used
    mean_hu_l1_l2 = float(np.mean([measurements[n].mean_hu for n in used])) if used else None

    timings["total_s"] = time.perf_counter() - t0
    provenance = {
        "bmdqct_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": _versions(_PACKAGES + (("tensorflow", "keras") if model_id is not None else ())),
        "input": source,
        "scan": {k: volume.metadata.get(k) for k in ("manufacturer", "model", "device_serial", "station",
                                                     "kvp", "study_date", "kernel", "slice_thickness_mm",
                                                     "series_uid", "format", "series_choice")},
        "grid": {"shape": list(volume.shape), "spacing_mm": list(volume.spacing),
                 "orientation": "".join(volume.orientation)},
        "model_id": model_id,
        "labels": label_source,
        "calibration_id": None if cal is None else cal.id,
        "calibration_source": None if cal is None else cal.source,
        "voi_protocol": record_dict(protocol),
        "thresholds_mg_cm3": list(thresholds),
        "convention": convention,
        "contrast": {**contrast.to_dict(), "correction_requested": bool(contrast_correction),
                     "correction_hu": contrast_offset_hu},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    result = Result(
        levels=measurements, bmd_l1_l2_mg_cm3=diagnosis.bmd_mg_cm3, mean_hu_l1_l2=mean_hu_l1_l2,
        category=diagnosis.category, levels_used=used, diagnosis=diagnosis, flags=tuple(_unique(flags)),
        calibration=cal, provenance=provenance, labels=vertebrae, vois=vois, case=case)
    logger.info("%s", repr(result))
    return result


def report_text(result: Mapping) -> str:
    """Plain-text report of a result: :meth:`Result.to_dict`, or a ``result.json`` read back.

    Parameters
    ----------
    result : mapping
        The layout of ``result.json`` (``RESULT_FORMAT``; the names of formats
        1 and 2, ``hu_mean`` and ``hu_l1_l2``, are read too).

    Returns
    -------
    str
        A table of the levels (status, HU mean and SD, voxels, BMD, note),
        the diagnosis, the QC flags and the model and calibration used.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> k, j, i = np.mgrid[:40, :40, :50]
    >>> body = ((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1
    >>> lab = np.where(body & (k >= 2) & (k < 18), 21, 0) + np.where(body & (k >= 22) & (k < 38), 20, 0)
    >>> ct = CTVolume.from_spacing(np.where(lab > 0, 130.0, 0.0), (1.5, 1, 1))
    >>> res = measure(ct, labels=LabelVolume.from_spacing(lab, (1.5, 1, 1), names={"L1": 20, "L2": 21}))
    >>> text = report_text(res.to_dict())
    >>> [line for line in text.splitlines() if line.startswith(("HU", "QC"))]
    ['HU (L1+L2): 130.0 (no calibration: HU only); no category', 'QC flags: no_calibration']
    """
    provenance = result.get("provenance") or {}
    case = result.get("case")
    lines = [f"bmdqct report{f' - {case}' if case else ''} (bmdqct {provenance.get('bmdqct_version', '')})",
             f"{'level':<6}{'status':<10}{'HU mean':>9}{'SD':>7}{'voxels':>8}{'BMD':>9}  note"]
    for name, m in (result.get("levels") or {}).items():
        mean_hu, sd_hu = renamed_value(m, "mean_hu", "hu_mean"), renamed_value(m, "sd_hu", "hu_sd")
        hu = "" if mean_hu is None else f"{mean_hu:.1f}"
        sd = "" if sd_hu is None else f"{sd_hu:.1f}"
        bmd = "" if m.get("bmd_mg_cm3") is None else f"{m['bmd_mg_cm3']:.1f}"
        lines.append(f"{name:<6}{m.get('status', ''):<10}{hu:>9}{sd:>7}{m.get('n_voxels', 0):>8}{bmd:>9}  "
                     f"{m.get('reason', '')}")
    used = "+".join(result.get("levels_used") or []) or "none"
    calibration = result.get("calibration")
    if result.get("bmd_l1_l2_mg_cm3") is not None:
        mineral = (calibration or {}).get("mineral", "K2HPO4")
        lines.append(f"BMD ({used}): {result['bmd_l1_l2_mg_cm3']:.1f} mg/cm3 {mineral}-equivalent -> "
                     f"{str(result.get('category')).upper()}")
    elif renamed_value(result, "mean_hu_l1_l2", "hu_l1_l2") is not None:
        unit = "HU" if calibration else "(no calibration: HU only)"
        lines.append(f"HU ({used}): {renamed_value(result, 'mean_hu_l1_l2', 'hu_l1_l2'):.1f} {unit}; no category")
    lines.append(f"diagnosis: {(result.get('diagnosis') or {}).get('reason', '')}")
    flags = (result.get("qc") or {}).get("flags") or []
    if flags:
        lines.append("QC flags: " + ", ".join(flags))
    lines.append(f"model: {provenance.get('model_id')}; calibration: {provenance.get('calibration_id') or 'none'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _as_volume(ct_or_path) -> tuple[CTVolume, str | None]:
    if isinstance(ct_or_path, CTVolume):
        return ct_or_path, ct_or_path.metadata.get("source")
    if isinstance(ct_or_path, (str, os.PathLike)):
        from .io import load_ct

        path = Path(ct_or_path)
        if not path.exists():
            raise InputError(f"CT input {path} does not exist; expected a DICOM folder or a "
                             ".nii/.nii.gz/.mha/.nrrd file")
        return load_ct(path), str(path)
    raise TypeError(f"ct_or_path must be a CTVolume or a path, got {type(ct_or_path).__name__}")


#: File endings stripped from an input's name to make its case name.
_INPUT_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".dcm")


def _case_name(source) -> str:
    """Case name of an input: its file name without the image suffix (a DICOM folder's name)."""
    name = Path(str(source)).name
    for suffix in _INPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _as_calibration(calibration, volume: CTVolume, window_days: int, fallback=None):
    if calibration is None:
        return None
    from .calibration import Calibration, read_calibration, select_calibration

    if isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, (str, os.PathLike)):
        path = Path(calibration)
        if path.is_dir():
            return select_calibration(path, volume.metadata, window_days=window_days, fallback=fallback)
        if not path.exists():
            raise CalibrationError(f"calibration {path} does not exist; expected a calibration JSON file "
                                   "or a calibration store folder")
        return read_calibration(path)
    raise TypeError(f"calibration must be a Calibration, a JSON path or a store folder, "
                    f"got {type(calibration).__name__}")


def _vertebrae(volume, labels, label_scheme, model, progress, timings, canal=None):
    """(VertebraLabels, model_id, label source description)."""
    if labels is None:
        from .segment import segment_spine

        t = time.perf_counter()
        seg = segment_spine(volume, model, progress=progress, canal=canal)
        timings["segmentation_s"] = time.perf_counter() - t
        return (label_vertebrae(volume, seg.classes, confidence=seg.confidence, canal=canal),
                seg.model_id, "segmentation")
    if isinstance(labels, VertebraLabels):
        if not same_grid(volume, labels.labels):
            raise GeometryError(f"the VertebraLabels given lie on another grid (shape {labels.labels.shape}) than "
                                f"the CT (shape {volume.shape}); label this CT with label_vertebrae(ct, classes) "
                                "or vertebra_labels_from_map(ct, labels), or pass the label map itself")
        return labels, None, "VertebraLabels"
    source = "LabelVolume"
    if isinstance(labels, (str, os.PathLike)):
        from .io import load_labels

        path = Path(labels)
        if not path.exists():
            raise InputError(f"label map {path} does not exist; expected a NIfTI/MHA/NRRD label file")
        if label_scheme == "classes":     # a 4-class map, e.g. from `bmdqct segment`
            raw = load_labels(path, like=volume)
            labels = LabelVolume(raw.labels, raw.affine,
                                 {name: cid for cid, name in SEGMENTATION_CLASSES.items() if cid})
        else:
            labels = load_labels(path, like=volume,
                                 scheme="totalsegmentator" if label_scheme is None else label_scheme)
        source = str(path)
    if not isinstance(labels, LabelVolume):
        raise TypeError(f"labels must be a LabelVolume, VertebraLabels or a path, got {type(labels).__name__}")
    if not same_grid(volume, labels):
        from .preprocess import resample_like

        labels = resample_like(labels, volume)
    try:
        if _is_class_map(labels):
            return label_vertebrae(volume, labels, canal=canal), None, source + " (4-class)"
        return vertebra_labels_from_map(volume, labels), None, source
    except LabelingError as err:
        if source == "LabelVolume":
            raise
        scheme = "totalsegmentator" if label_scheme is None else label_scheme
        raise LabelingError(f"label map {source} (read with label_scheme={scheme!r}): {err}") from err


def _is_class_map(labels: LabelVolume) -> bool:
    class_names = {name for cid, name in SEGMENTATION_CLASSES.items() if cid}
    return bool(labels.names) and set(labels.names) <= class_names


def _measure_level(volume, vertebrae: VertebraLabels, name, cal, protocol):
    info = vertebrae.levels.get(name)
    if info is None:
        return LevelMeasurement(name, "missing", reason=f"{name} is not in the labels (not in view or "
                                                         "not segmented)"), None
    base = dict(height_mm=info.height_mm,
                confidence=None if math.isnan(info.confidence) else round(info.confidence, 4))
    if info.partial:
        return LevelMeasurement(name, "partial", reason="body cut by the edge of the scan", **base), None
    try:
        voi = vertebral_body_voi(volume, vertebrae, name, protocol=protocol)
    except MeasurementError as err:
        flag = QCFlag("voi_failed", name, str(err))
        return LevelMeasurement(name, "failed", reason=f"VOI could not be placed: {err}", flags=(flag,),
                                **base), None
    m = measure_voi(volume, voi, calibration=cal)
    return _replace(m, **base), voi


def _contrast_corrected(m: LevelMeasurement, offset_hu: float, cal) -> LevelMeasurement:
    """`m` with `offset_hu` subtracted from its HU mean and median and its BMD recomputed."""
    if m.mean_hu is None:
        return m
    mean_hu = m.mean_hu - offset_hu
    return _replace(m, mean_hu=mean_hu, median_hu=None if m.median_hu is None else m.median_hu - offset_hu,
                    bmd_mg_cm3=None if cal is None else float(cal.apply(mean_hu)))


def _withhold_category(diagnosis: Diagnosis, contrast: ContrastFinding, requested: bool) -> Diagnosis:
    """The diagnosis of an enhanced scan without correction: values kept, no category."""
    if requested:
        why = (f"contrast-enhanced scan ({contrast.phase}): no published correction for this phase, "
               "non-contrast cut-offs not applied")
    else:
        why = ("contrast-enhanced scan: non-contrast cut-offs not applied; pass contrast_correction=True "
               "to apply the published correction")
    return Diagnosis(None, diagnosis.bmd_mg_cm3, diagnosis.levels_used, diagnosis.flags,
                     f"{diagnosis.reason}; {why}" if diagnosis.reason else why)


def _apply_exclusions(measurements, vertebrae: VertebraLabels, vois, volume):
    out = dict(measurements)
    infos = vertebrae.levels
    for name, m in measurements.items():
        if m.status != "measured":
            continue
        reasons = []
        info = infos[name]
        neighbours = [infos[n] for n in _neighbours(name, infos) if not infos[n].partial]
        if neighbours:
            reference = float(np.mean([n.heights_mm[1] for n in neighbours]))
            ratio = info.heights_mm[1] / reference if reference > 0 else 1.0
            if ratio < HEIGHT_LOSS_RATIO:
                reasons.append(("height_loss", "fracture-like height loss: middle height "
                                               f"{info.heights_mm[1]:.0f} mm, {ratio:.0%} of its neighbours' "
                                               f"({', '.join(n.level for n in neighbours)})"))
        values = vois[name].values(volume).astype(np.float64)
        median = float(np.median(values))
        robust_sd = 1.4826 * float(np.median(np.abs(values - median)))
        excess = max(SCLEROSIS_MIN_EXCESS_HU, 5.0 * robust_sd)
        share = float(np.mean(values > median + excess))
        if share >= SCLEROSIS_FRACTION:
            reasons.append(("focal_sclerosis", f"focal sclerosis: {share:.1%} of the VOI exceeds the median "
                                               f"by more than {excess:.0f} HU"))
        if m.volume_mm3 < MIN_VOI_VOLUME_MM3:
            reasons.append(("failed_qc", f"VOI of {m.volume_mm3:.0f} mm3 is smaller than "
                                         f"{MIN_VOI_VOLUME_MM3:.0f} mm3"))
        if m.confidence is not None and m.confidence < MIN_CONFIDENCE:
            reasons.append(("failed_qc", f"segmentation confidence {m.confidence:.2f} below {MIN_CONFIDENCE}"))
        uncertain = [f for f in vertebrae.flags if f.code == "level_uncertain" and f.level == name]
        if uncertain:
            reasons.append(("level_uncertain", "the level name is uncertain (" + uncertain[0].message
                            + "): it may be another vertebra"))
        if reasons:
            # keep the first reason of each kind
            seen = {}
            for code, text in reasons:
                seen.setdefault(code, text)
            reason = "; ".join(seen.values())
            flags = m.flags + tuple(QCFlag(code, name, text) for code, text in seen.items()) + (
                QCFlag("excluded", name, reason),)
            out[name] = _replace(m, status="excluded", reason=reason, flags=flags)
    return out


def _neighbours(name: str, infos) -> list[str]:
    return [n for n in infos if abs(level_steps(name, n)) == 1]


def _inter_level_flags(measurements) -> list[QCFlag]:
    names = sorted((n for n, m in measurements.items() if m.status == "measured"), key=level_index)
    key = "bmd_mg_cm3" if all(measurements[n].bmd_mg_cm3 is not None for n in names) else None
    flags = []
    for i, name in enumerate(names[1:-1], start=1):
        if key is None:
            continue
        here = getattr(measurements[name], key)
        a = getattr(measurements[names[i - 1]], key)
        b = getattr(measurements[names[i + 1]], key)
        if min(abs(here - a), abs(here - b)) > INTER_LEVEL_DIFFERENCE_MG_CM3 and (here - a) * (here - b) > 0:
            flags.append(QCFlag("inter_level_outlier", name,
                                f"{name} differs by more than {INTER_LEVEL_DIFFERENCE_MG_CM3:g} mg/cm3 from "
                                "both neighbours"))
    return flags


#: Packages whose versions the provenance records (TensorFlow and Keras only when a model segmented).
_PACKAGES = ("numpy", "scipy", "scikit-image", "nibabel", "SimpleITK")


def _versions(names=_PACKAGES) -> dict:
    """Installed version of each package in `names` (None if absent)."""
    return package_versions(names)


def _replace(m: LevelMeasurement, **changes) -> LevelMeasurement:
    from dataclasses import replace

    return replace(m, **changes)


def _unique(flags):
    seen = set()
    out = []
    for f in flags:
        key = (f.code, f.level, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


_json_safe = json_safe


_atomic_write = atomic_write
_atomic_write_text = atomic_write_text
