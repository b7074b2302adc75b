"""Phantomless (internal) calibration from the patient's own tissues — EXPERIMENTAL (private).

The simplest internal-calibration family (qct-reference §1.3 family 1, §2.3):
each reference tissue (air outside the body, subcutaneous fat, paraspinal
muscle, aortic blood) is given an *equivalent density* — the BMD a phantom
calibration of the same scanner and kVp assigns to that tissue — measured once
on reference scans (:func:`build_internal_reference`). A new scan is then
calibrated by finding the tissues automatically (:func:`find_reference_tissues`),
checking their HU against expected windows (Ogo's sanity windows, §2.1) and
fitting a line through (HU, equivalent density). The equivalent densities are
scanner- and kVp-specific configuration, never built-in constants.

Results are flagged ``experimental=True``: this method has not been validated
against phantom calibration on real scans in bmdqct.
"""

from __future__ import annotations

import json
import logging
import math
import os
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ._core import (
    SCANNER_FIELDS,
    Calibration,
    _atomic_write_text,
    _is_finite_number,
    _iso_date,
    _read_json,
    _slice_range,
    normalize_mineral,
)
from ._phantom import _ols
from .._util import deprecated_alias, record_dict
from ..errors import CalibrationError, CalibrationWarning
from ..io import HU_AIR, PADDING_THRESHOLD_HU
from ..volume import CTVolume, to_canonical

logger = logging.getLogger(__name__)

#: Reference tissues found automatically, in the order they are reported.
TISSUES = ("air", "fat", "muscle", "blood")

#: Accepted mean HU of each tissue (Bonelab/Ogo ``ImageCalibration.py`` sanity windows, §2.1).
TISSUE_WINDOWS_HU: Mapping[str, tuple[float, float]] = {
    "air": (-1030.0, -980.0),
    "fat": (-130.0, -70.0),
    "muscle": (-5.0, 65.0),
    "blood": (-20.0, 60.0),
}

# Broad HU ranges used only to *select* candidate voxels (on a smoothed image); the
# measured mean of the raw voxels is then checked against TISSUE_WINDOWS_HU.
_SELECT_HU = {"fat": (-220.0, -40.0), "muscle": (-30.0, 110.0), "blood": (-30.0, 100.0)}
_BODY_HU = -500.0
_BONE_HU = 250.0
INTERNAL_REFERENCE_FORMAT = "bmdqct-internal-reference"


@dataclass(frozen=True)
class TissueROI:
    """A reference-tissue ROI found in a scan.

    Attributes
    ----------
    tissue : str
        ``"air"``, ``"fat"``, ``"muscle"`` or ``"blood"``.
    mean_hu, sd_hu : float
        Mean and SD (ddof=1) of the ROI voxels, HU.
    n_voxels : int
    volume_mm3 : float
    center_mm : tuple of float
        ROI centroid, LPS mm.
    window_hu : (float, float)
        Expected range of `mean_hu`.
    in_window : bool
    hu_mean, hu_sd : float
        Deprecated read-only aliases of `mean_hu`, `sd_hu` (emit a :class:`DeprecationWarning`).
    """

    tissue: str
    mean_hu: float
    sd_hu: float
    n_voxels: int
    volume_mm3: float
    center_mm: tuple[float, float, float]
    window_hu: tuple[float, float]
    in_window: bool

    hu_mean = deprecated_alias("mean_hu", "hu_mean")
    hu_sd = deprecated_alias("sd_hu", "hu_sd")

    def to_dict(self) -> dict:
        return record_dict(self)


@dataclass(frozen=True)
class InternalReference:
    """Equivalent densities of reference tissues for one scanner and kVp.

    Parameters
    ----------
    equivalent_mg_cm3 : mapping of str to float
        Tissue -> equivalent density, mg/cm³ of `mineral` (may be negative:
        air is far below the K2HPO4 scale's zero).
    mineral : {"K2HPO4", "HA"}, optional
    manufacturer, model, device_serial, station : str, optional
        Scanner the values were measured on.
    kvp : float, optional
    n_scans : int, optional
        Reference scans averaged.
    note : str, optional

    Examples
    --------
    >>> ref = InternalReference({"air": -850.0, "fat": -85.0, "muscle": 25.0}, kvp=120)
    >>> sorted(ref.equivalent_mg_cm3)
    ['air', 'fat', 'muscle']
    """

    equivalent_mg_cm3: Mapping[str, float]
    mineral: str = "K2HPO4"
    manufacturer: str | None = None
    model: str | None = None
    device_serial: str | None = None
    station: str | None = None
    kvp: float | None = None
    n_scans: int = 1
    note: str = ""
    source: str | None = field(default=None, compare=False)

    def __post_init__(self):
        values = {}
        for tissue, value in dict(self.equivalent_mg_cm3).items():
            if not _is_finite_number(value):
                raise CalibrationError(f"internal reference: equivalent density of {tissue!r} must be a "
                                       f"finite number, got {value!r}")
            values[str(tissue)] = float(value)
        if len(values) < 2:
            raise CalibrationError(f"internal reference needs at least two tissues, got {sorted(values)}")
        object.__setattr__(self, "equivalent_mg_cm3", types.MappingProxyType(values))
        try:
            object.__setattr__(self, "mineral", normalize_mineral(self.mineral))
        except ValueError as err:
            raise CalibrationError(f"internal reference: {err}") from err
        if self.kvp is not None and not _is_finite_number(self.kvp):
            raise CalibrationError(f"internal reference: kvp must be a number (kV) or None, got {self.kvp!r}")
        object.__setattr__(self, "kvp", None if self.kvp is None else float(self.kvp))

    @property
    def scanner(self) -> dict:
        return {name: getattr(self, name) for name in SCANNER_FIELDS}

    def to_dict(self) -> dict:
        return {"format": INTERNAL_REFERENCE_FORMAT, **record_dict(self, exclude=("source",))}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write as indented JSON (atomically); returns the path."""
        path = Path(path)
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", overwrite=True)
        return path


def read_internal_reference(path: str | os.PathLike) -> InternalReference:
    """Read an :class:`InternalReference` JSON file.

    Raises
    ------
    CalibrationError
        If the file is missing, not JSON, lacks ``equivalent_mg_cm3`` or holds an
        invalid field; the message names the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> ref = InternalReference({"air": -850.0, "fat": -85.0, "muscle": 25.0}, kvp=120, station="CT1")
    >>> back = read_internal_reference(ref.to_json(pathlib.Path(tempfile.mkdtemp()) / "ref.json"))
    >>> back == ref, dict(back.equivalent_mg_cm3)["fat"]
    (True, -85.0)
    """
    data = _read_json(path, "internal reference")
    if not isinstance(data, Mapping) or "equivalent_mg_cm3" not in data:
        raise CalibrationError(f"internal reference {path}: missing field 'equivalent_mg_cm3'")
    if not isinstance(data["equivalent_mg_cm3"], Mapping):
        raise CalibrationError(f"internal reference {path}: 'equivalent_mg_cm3' must be an object "
                               '{"tissue": mg/cm3, ...}')
    data = {k: v for k, v in data.items() if k != "format"}
    known = {f.name for f in fields(InternalReference)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CalibrationError(f"internal reference {path}: unknown field(s) {unknown}; known fields are "
                               f"{sorted(known)}")
    try:
        return InternalReference(**data, source=str(path))
    except CalibrationError as err:
        raise CalibrationError(f"internal reference {path}: {str(err).removeprefix('internal reference: ')}"
                               ) from err
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"internal reference {path}: invalid field value ({err})") from err


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, range(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def _central_slab(volume: CTVolume, slices, slab_mm: float) -> np.ndarray:
    n = volume.shape[0]
    if slices is not None:
        return _slice_range(slices, n)
    half = max(1, int(round(slab_mm / volume.spacing[0] / 2)))
    mid = n // 2
    return np.arange(max(0, mid - half), min(n, mid + half + 1))


def find_reference_tissues(volume: CTVolume, *, tissues: Sequence[str] = TISSUES, slices=None,
                           slab_mm: float = 30.0) -> dict[str, TissueROI]:
    """Find air, subcutaneous fat, paraspinal muscle and aortic blood ROIs automatically.

    Parameters
    ----------
    volume : CTVolume
        Chest or abdominal CT (non-contrast); searched in its canonical orientation
        (:func:`bmdqct.volume.to_canonical`).
    tissues : sequence of str, optional
        Which of :data:`TISSUES` to look for.
    slices : (int, int), optional
        Axial slices (of the canonical volume) to search; default a `slab_mm` slab at the
        middle of the scan.
    slab_mm : float, optional
        Thickness of the default slab, mm.

    Returns
    -------
    dict of str to TissueROI
        Tissues found (a tissue that cannot be located is left out and logged).

    Notes
    -----
    Per axial slice: the body is the largest region above -500 HU (holes
    filled). *Air*: voxels 10–40 mm outside the body, at least 10 mm from any
    object, anterior to the body centre (away from the table). *Fat*: the shell
    2–15 mm under the skin, voxels whose smoothed HU lies in −220..−40.
    *Muscle*: beside the spinous process (15–55 mm from the midline, between the
    vertebral body centre and the subcutaneous fat), smoothed HU −30..110, away
    from bone. *Blood*: the round soft-tissue region (15–40 mm across) closest
    to the vertebral body on its anterior-left side — the descending aorta. The
    spine is the largest bone (> 250 HU) region near the body's left-right
    centre in its posterior half. Candidate voxels are selected on a smoothed
    image and eroded; the mean of the *raw* voxels is reported, leaving out
    voxels more than 4 robust SDs (1.4826 MAD) from the ROI median (a calcified
    plaque, a lung pixel at the rim).
    """
    from scipy import ndimage

    unknown = [t for t in tissues if t not in TISSUES]
    if unknown:
        raise ValueError(f"unknown tissue(s) {unknown}; choose from {TISSUES}")
    volume = to_canonical(volume)  # axis 0 inferior->superior, 1 anterior->posterior, 2 right->left
    zs = _central_slab(volume, slices, slab_mm)
    hu = volume.hu[zs].astype(np.float32)
    sj, sk = volume.spacing[1:]
    smooth = ndimage.median_filter(hu, size=(1, 3, 3))
    masks = {t: np.zeros(hu.shape, bool) for t in tissues}
    jj, kk = np.meshgrid(np.arange(hu.shape[1]) * sj, np.arange(hu.shape[2]) * sk, indexing="ij")
    contexts = [_tissue_masks_in_slice(smooth[z], masks, z, (sj, sk), jj, kk) for z in range(hu.shape[0])]
    spines = [c for c in contexts if c is not None]
    if "blood" in masks and spines:
        # the vertebral body's front over the slab (a slice through a disc shows only the posterior elements)
        front = float(np.percentile([c["spine_front"] for c in spines], 10))
        midline = float(np.median([c["spine_k"] for c in spines]))
        found = {z: _aorta(smooth[z], c, front, midline, jj, kk, (sj, sk)) for z, c in enumerate(contexts)
                 if c is not None}
        centers = {z: (float(jj[m].mean()), float(kk[m].mean())) for z, m in found.items() if m.any()}
        if centers:  # keep the slices that agree on where the aorta is (the oesophagus lies close by)
            median = np.median(np.array(list(centers.values())), axis=0)
            for z, center in centers.items():
                if math.dist(center, median) <= 8.0:
                    masks["blood"][z] = found[z]
    out = {}
    for tissue in tissues:
        mask = masks[tissue]
        if mask.sum() < 10:
            logger.info("internal calibration: no %s ROI found", tissue)
            continue
        values = hu[mask].astype(np.float64)
        # drop outliers (a calcified plaque, a lung pixel at the ROI's rim): beyond 4 robust SDs
        median = np.median(values)
        spread = 4.0 * 1.4826 * np.median(np.abs(values - median))
        keep = np.abs(values - median) <= max(spread, 1e-6)
        if (~keep).any():
            logger.debug("internal calibration: %d of %d %s voxels dropped as outliers", int((~keep).sum()),
                         values.size, tissue)
        values = values[keep]
        idx = np.argwhere(mask).mean(axis=0) + (zs[0], 0, 0)
        window = TISSUE_WINDOWS_HU[tissue]
        mean = float(values.mean())
        out[tissue] = TissueROI(tissue=tissue, mean_hu=mean, sd_hu=float(values.std(ddof=1)),
                                n_voxels=int(values.size), volume_mm3=float(values.size * volume.voxel_volume_mm3),
                                center_mm=tuple(float(v) for v in volume.index_to_world(idx)),
                                window_hu=window, in_window=bool(window[0] <= mean <= window[1]))
        logger.info("internal calibration: %s %.1f HU (SD %.1f, %d voxels)", tissue, mean, out[tissue].sd_hu,
                    values.size)
    return out


def _tissue_masks_in_slice(img, masks, z, spacing, jj, kk) -> dict | None:
    """Fill air, fat and muscle masks of slice `z`; return what the aorta search needs."""
    from scipy import ndimage

    objects = img > _BODY_HU
    body = _largest(ndimage.binary_fill_holes(objects))
    if body.sum() < 100:
        return None
    inner_depth = ndimage.distance_transform_edt(body, sampling=spacing)
    body_j = float((jj * body).sum() / body.sum())
    body_k = float((kk * body).sum() / body.sum())
    if "air" in masks:
        # outside-FOV padding (<= -1500 HU, or exactly -1000 HU once a reader replaced it) is not air
        padding = (img <= PADDING_THRESHOLD_HU) | (img == HU_AIR)
        outside = ndimage.distance_transform_edt(~(objects | padding), sampling=spacing)
        to_body = ndimage.distance_transform_edt(~body, sampling=spacing)
        masks["air"][z] = (to_body >= 10) & (to_body <= 40) & (outside >= 10) & (jj < body_j)
    if "fat" in masks:
        lo, hi = _SELECT_HU["fat"]
        fat = (inner_depth >= 2) & (inner_depth <= 15) & (img >= lo) & (img <= hi)
        masks["fat"][z] = ndimage.binary_erosion(fat)
    spine = _spine(img, body, body_k, body_j, jj, kk)
    if spine is None:
        return None
    bone_far = ndimage.distance_transform_edt(~(img > _BONE_HU), sampling=spacing) > 4
    spine_k = float(kk[spine].mean())
    if "muscle" in masks:
        lo, hi = _SELECT_HU["muscle"]
        lateral = np.abs(kk - spine_k)
        box = (lateral >= 15) & (lateral <= 55) & (jj >= float(jj[spine].mean())) \
            & (jj <= float(jj[spine].max()) + 30)
        muscle = box & (img >= lo) & (img <= hi) & bone_far & (inner_depth >= 12)
        masks["muscle"][z] = ndimage.binary_erosion(muscle, iterations=2)
    return {"body": body, "bone_far": bone_far, "spine_front": float(jj[spine].min()), "spine_k": spine_k}


def _spine(img, body, body_k, body_j, jj, kk):
    """Vertebra: the largest bone (> 250 HU) region within 35 mm of the midline, centred behind
    the point 30 mm in front of the body centre (which leaves out the sternum)."""
    from scipy import ndimage

    bone = ndimage.binary_opening(img > _BONE_HU) & body & (np.abs(kk - body_k) <= 35)
    labels, n = ndimage.label(bone)
    best, best_size = None, 20
    for index in range(1, n + 1):
        region = labels == index
        size = int(region.sum())
        if size > best_size and jj[region].mean() >= body_j - 30:
            best, best_size = region, size
    return best


def _aorta(img, context, spine_front, spine_k, jj, kk, spacing):
    """Disc inside the descending aorta: a soft-tissue "bulb" 10-32 mm across, 8-45 mm left of
    the vertebral midline, from 25 mm in front of the vertebral body to 30 mm behind its front.

    The aorta often touches the heart, the oesophagus or the crus, so connected
    components do not isolate it; the local maxima of the distance transform of the
    soft-tissue mask do: the aorta's centre is one, with the aorta's radius as value.
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max

    lo, hi = _SELECT_HU["blood"]
    soft = ndimage.binary_opening((img >= lo) & (img <= hi) & context["body"] & context["bone_far"])
    depth = ndimage.distance_transform_edt(soft, sampling=spacing)
    peaks = peak_local_max(depth, min_distance=max(1, int(round(5.0 / min(spacing)))), threshold_abs=5.0,
                           exclude_border=False)
    best, best_distance = None, np.inf
    for pj, pk in peaks:
        radius = float(depth[pj, pk])
        cj, ck = float(jj[pj, pk]), float(kk[pj, pk])
        if radius > 16.0 or not -25.0 <= cj - spine_front <= 30.0 or not 8.0 <= ck - spine_k <= 45.0:
            continue
        distance = math.hypot(cj - spine_front, ck - (spine_k + 20.0))
        if distance < best_distance:
            best, best_distance = (cj, ck, radius), distance
    if best is None:
        return np.zeros(img.shape, bool)
    cj, ck, radius = best
    return ((jj - cj) ** 2 + (kk - ck) ** 2 <= (0.6 * radius) ** 2) & ndimage.binary_erosion(soft)


def build_internal_reference(tissues: Mapping, calibration: Calibration, *, note: str = "") -> InternalReference:
    """Equivalent densities of tissues under a phantom calibration of the same scanner and kVp.

    Parameters
    ----------
    tissues : mapping of str to TissueROI or float, or a sequence of such mappings
        Tissue HU measured on scans calibrated by `calibration`; several
        mappings (several reference scans) are averaged per tissue.
    calibration : Calibration
        Phantom calibration of those scans.
    note : str, optional

    Returns
    -------
    InternalReference
        ``equivalent = calibration.apply(mean HU)`` per tissue, with the
        calibration's scanner, kVp and mineral.

    Examples
    --------
    >>> cal = Calibration(slope=0.85, intercept=0.0, kvp=120)
    >>> ref = build_internal_reference({"air": -1000.0, "fat": -100.0, "muscle": 40.0}, cal)
    >>> ref.equivalent_mg_cm3["fat"]
    -85.0
    """
    scans = [tissues] if isinstance(tissues, Mapping) else list(tissues)
    collected: dict[str, list[float]] = {}
    for scan in scans:
        for tissue, value in scan.items():
            hu = value.mean_hu if isinstance(value, TissueROI) else float(value)
            collected.setdefault(tissue, []).append(hu)
    equivalents = {t: float(calibration.apply(float(np.mean(v)))) for t, v in collected.items()}
    return InternalReference(equivalents, mineral=calibration.mineral, **calibration.scanner,
                             kvp=calibration.kvp, n_scans=len(scans),
                             note=note or f"derived from calibration {calibration.id}")


def internal_calibration(volume: CTVolume, reference: InternalReference, *, tissues: Sequence[str] | None = None,
                         windows: Mapping[str, tuple[float, float]] | None = None, min_tissues: int = 3,
                         check_scanner: bool = True, slices=None) -> Calibration:
    """EXPERIMENTAL phantomless calibration from the patient's own tissues.

    Parameters
    ----------
    volume : CTVolume
        The patient scan (non-contrast).
    reference : InternalReference
        Equivalent densities for this scanner and kVp.
    tissues : sequence of str, optional
        Tissues to use; default those of `reference` that :data:`TISSUES` knows.
    windows : mapping, optional
        Expected mean HU per tissue (default :data:`TISSUE_WINDOWS_HU`). A tissue
        outside its window is left out with a :class:`CalibrationWarning`.
    min_tissues : int, optional
        Fewest tissues to fit (Ogo requires three).
    check_scanner : bool, optional
        Require the reference's scanner and kVp to match the scan's metadata.
    slices : (int, int), optional
        Axial slices to search (see :func:`find_reference_tissues`).

    Returns
    -------
    Calibration
        ``method="internal"``, ``experimental=True``; the tissue table is in
        ``details["tissues"]``.

    Raises
    ------
    CalibrationError
        Scanner/kVp mismatch, or fewer than `min_tissues` usable tissues.

    Warns
    -----
    CalibrationWarning
        For each tissue whose mean HU falls outside its window.

    Notes
    -----
    The line is fitted as HU on equivalent density (OLS) and inverted, like a
    phantom fit, so the tissue points play the part of phantom rods.
    """
    meta = volume.metadata
    if check_scanner:
        from ._store import scanner_matches

        probe = Calibration(slope=1.0, intercept=0.0, **reference.scanner, kvp=reference.kvp)
        kvp = meta.get("kvp")
        if not scanner_matches(probe, meta) or reference.kvp is None or kvp is None \
                or abs(reference.kvp - float(kvp)) >= 0.5:
            raise CalibrationError(
                f"internal reference is for scanner {reference.scanner} at {reference.kvp} kV but the scan "
                f"is from ({', '.join(f'{k}={meta.get(k)!r}' for k in SCANNER_FIELDS)}) at {kvp} kV; "
                "equivalent densities are scanner- and kVp-specific. Build a reference for this scanner "
                "(build_internal_reference) or pass check_scanner=False knowingly")
    windows = {**TISSUE_WINDOWS_HU, **dict(windows or {})}
    wanted = [t for t in (tissues or TISSUES) if t in reference.equivalent_mg_cm3]
    found = find_reference_tissues(volume, tissues=wanted, slices=slices)
    used, table = [], []
    for tissue in wanted:
        roi = found.get(tissue)
        if roi is None:
            continue
        lo, hi = windows[tissue]
        ok = lo <= roi.mean_hu <= hi
        table.append({**roi.to_dict(), "window_hu": [lo, hi], "in_window": ok,
                      "equivalent_mg_cm3": reference.equivalent_mg_cm3[tissue]})
        if ok:
            used.append(tissue)
        else:
            warnings.warn(f"internal calibration: {tissue} ROI mean {roi.mean_hu:.1f} HU is outside the "
                          f"expected {lo:g}..{hi:g} HU; left out", CalibrationWarning, stacklevel=2)
    if len(used) < min_tissues:
        raise CalibrationError(
            f"internal calibration needs at least {min_tissues} tissues within their HU windows, got "
            f"{used or 'none'} (found {sorted(found)}; looked for {wanted}). Contrast-enhanced scan, "
            "unusual anatomy, or a reference lacking tissues?")
    hu = np.array([found[t].mean_hu for t in used])
    density = np.array([reference.equivalent_mg_cm3[t] for t in used])
    line = _ols(density, hu)
    if line.slope <= 0:
        raise CalibrationError(f"internal calibration gave a non-positive slope from tissues {used}: "
                               f"HU {np.round(hu, 1).tolist()} vs equivalents {density.tolist()}")
    slope, intercept = 1.0 / line.slope, -line.intercept / line.slope
    residuals = slope * hu + intercept - density
    return Calibration(
        slope=slope, intercept=intercept, mineral=reference.mineral, method="internal",
        **{k: meta.get(k) for k in SCANNER_FIELDS}, kvp=meta.get("kvp"), kernel=meta.get("kernel"),
        acquisition_date=_iso_date(meta.get("acquisition_date") or meta.get("study_date"), "scan date"),
        r_squared=line.r_squared, n=len(used),
        residuals_mg_cm3=dict(zip(used, residuals.tolist())), experimental=True,
        details={"fit": "internal-tissues", "tissues": table,
                 "reference": {**reference.to_dict(), "source": reference.source}})
