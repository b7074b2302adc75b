"""Automatic rod finding in phantom scans (private; see :mod:`bmdqct.calibration`).

Rods are cylinders along the scanner's z axis (array axis 0 of a canonical
volume). Each axial slice of the chosen slab shows them as discs whose HU differs
from the surrounding phantom body, by as little as ~20 HU (Mindways rods A/B) or
as much as several hundred HU, and of either sign.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._core import Calibration, _slice_range
from ._phantom import (
    _NOMINAL_SIGMA_REF,
    MAX_RESIDUAL_MG_CM3,
    MIN_R_SQUARED,
    WARN_R_SQUARED,
    WARN_RESIDUAL_MG_CM3,
    _fit_line,
    as_certificate,
    fit_phantom,
    get_phantom,
)
from .._util import deprecated_alias, record_dict
from ..errors import CalibrationError
from ..volume import CTVolume, to_canonical

logger = logging.getLogger(__name__)

#: HU above which a voxel belongs to the phantom (or table) rather than air.
_OBJECT_HU = -400.0
#: Fraction of the phantom's z extent dropped at each end before sampling (rod ends, caps).
_END_MARGIN = 0.2
#: Assignment rules of rods to certificate entries.
ASSIGNMENTS = ("hu-rank", "position")


@dataclass(frozen=True)
class RodROI:
    """A rod found in a phantom scan and the statistics of its ROI.

    Attributes
    ----------
    center_mm : tuple of float
        Rod axis at the middle of the sampled slab, LPS mm.
    center_vox : tuple of float
        (i, j, k) voxel index of `center_mm` (fractional) in the canonical orientation
        of the scan (:func:`bmdqct.volume.to_canonical`).
    radius_mm : float
        Rod radius measured at half contrast.
    roi_radius_mm : float
        Radius of the circular ROI sampled (``roi_fraction * radius_mm``).
    mean_hu, sd_hu : float
        Mean and SD (ddof=1) of the ROI voxels over all sampled slices, HU.
    n_voxels : int
        Voxels in the ROI (all slices).
    slices : (int, int)
        First and last axial slice index sampled (inclusive).
    contrast_hu : float
        Rod HU minus the local phantom-body background (slab average).
    hu_mean, hu_sd : float
        Deprecated read-only aliases of `mean_hu`, `sd_hu` (emit a :class:`DeprecationWarning`).
    """

    center_mm: tuple[float, float, float]
    center_vox: tuple[float, float, float]
    radius_mm: float
    roi_radius_mm: float
    mean_hu: float
    sd_hu: float
    n_voxels: int
    slices: tuple[int, int]
    contrast_hu: float

    hu_mean = deprecated_alias("mean_hu", "hu_mean")
    hu_sd = deprecated_alias("sd_hu", "hu_sd")

    def to_dict(self) -> dict:
        return record_dict(self)


def _slab(hu: np.ndarray, slices) -> np.ndarray:
    """Indices of the axial slices to sample."""
    if slices is not None:
        return _slice_range(slices, hu.shape[0])
    area = (hu > _OBJECT_HU).sum(axis=(1, 2))
    if area.max() == 0:
        raise CalibrationError("the phantom scan holds no voxel above -400 HU: no phantom in the "
                               "image (wrong series?)")
    present = np.flatnonzero(area >= 0.5 * area.max())
    first, last = int(present.min()), int(present.max())
    # At least one slice off each end whenever three or more remain: the end slices average the
    # phantom with the air or cap beyond it (partial volume along z).
    count = last - first + 1
    margin = max(int(_END_MARGIN * count), 1 if count >= 3 else 0)
    return np.arange(first + margin, last - margin + 1)


def _mode(values: np.ndarray) -> float:
    """Most frequent value (1-HU histogram smoothed over a few HU): the phantom body's HU."""
    from scipy import ndimage

    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi - lo < 2:
        return float(np.median(values))
    counts, edges = np.histogram(values, bins=int(np.ceil(hi - lo)), range=(lo, hi))
    counts = ndimage.gaussian_filter1d(counts.astype(float), 3.0)
    peak = int(np.argmax(counts))
    return float(0.5 * (edges[peak] + edges[peak + 1]))


def _background(avg: np.ndarray, inside: np.ndarray, spacing_yx, size_mm: float, step_mm: float, *,
                rods_excluded: bool = False):
    """Phantom-body background: median filter over `size_mm`, computed on a coarse grid.

    Pixels outside `inside` are filled with the body's typical HU first: the mode of
    the (lightly smoothed) image while rods are still in it, the median once the rods
    found are excluded (more precise; a thin pad leaves half of each window to the fill).
    """
    from scipy import ndimage
    from skimage.measure import block_reduce

    factors = tuple(max(1, int(step_mm // s)) for s in spacing_yx)
    if rods_excluded:
        fill = float(np.median(avg[inside]))
    else:
        fill = _mode(ndimage.gaussian_filter(avg, [2.0 / s for s in spacing_yx])[inside])
    filled = np.where(inside, avg, fill)
    coarse = block_reduce(filled, factors, np.mean)
    size = tuple(max(3, int(round(size_mm / (s * f))) | 1) for s, f in zip(spacing_yx, factors))
    coarse = ndimage.median_filter(coarse, size=size, mode="nearest")
    zoom = tuple(n / c for n, c in zip(avg.shape, coarse.shape))
    return ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)[: avg.shape[0], : avg.shape[1]]


def _noise_of_smoothed_mean(slab: np.ndarray, avg: np.ndarray, sigma_px, inside: np.ndarray) -> float:
    """Noise SD (HU) of the smoothed slab average, from slice-to-slice differences.

    Everything constant along z (rods, body, background) cancels in ``slice - average``,
    so the spread of the smoothed residuals across slices is noise only; it is
    divided by sqrt(slices) for the average. 0 with a single slice.
    """
    from scipy import ndimage

    n = slab.shape[0]
    if n < 2:
        return 0.0
    residual = np.stack([ndimage.gaussian_filter(s - avg, sigma_px) for s in slab.astype(np.float64)])
    sd = residual.std(axis=0, ddof=1)[inside]
    return float(np.median(sd) / math.sqrt(n)) if sd.size else 0.0


def _detect(smooth, inside, threshold, spacing_yx, d_min, d_max, *, max_eccentricity=0.75,
            min_solidity=0.85) -> list:
    """Rod-like regions of `smooth` (either contrast sign): [(centroid_vox, radius_mm, contrast_hu)]."""
    from scipy import ndimage
    from skimage.measure import regionprops

    pixel_area_mm2 = spacing_yx[0] * spacing_yx[1]
    area_hi = 1.5 * math.pi * (d_max / 2) ** 2
    candidates = []
    for sign in (1.0, -1.0):
        regions, _ = ndimage.label((sign * smooth > threshold) & inside)
        seen = []  # half-contrast regions already taken (noise can split a faint rod's core)
        for region in regionprops(regions):
            if region.area * pixel_area_mm2 > area_hi:
                continue
            coords = tuple(region.coords.T)
            peak = float(np.percentile(sign * smooth[coords], 95))
            half_labels, _ = ndimage.label((sign * smooth > 0.5 * peak) & inside)
            ids = np.bincount(half_labels[coords][half_labels[coords] > 0])
            if ids.size == 0:
                continue
            # holes (an air bubble in the rod) are filled: the rod is still found, and its ROI shows the bubble
            rod_mask = ndimage.binary_fill_holes(half_labels == int(np.argmax(ids)))
            if any(np.logical_and(rod_mask, other).any() for other in seen):
                continue
            seen.append(rod_mask)
            rod = regionprops(rod_mask.astype(np.uint8))[0]
            diameter = 2.0 * math.sqrt(rod.area * pixel_area_mm2 / math.pi)
            if rod.eccentricity >= max_eccentricity or rod.solidity <= min_solidity \
                    or not d_min <= diameter <= d_max:
                logger.debug("rejected blob at %s: diameter %.1f mm, eccentricity %.2f, solidity %.2f",
                             np.round(rod.centroid, 1), diameter, rod.eccentricity, rod.solidity)
                continue
            candidates.append((rod.centroid, diameter / 2.0, sign * peak))
    return candidates


def find_rods(volume: CTVolume, *, n_rods: int | None = None,
              rod_diameter_mm: tuple[float, float] = (6.0, 40.0), slices=None,
              roi_fraction: float = 0.6) -> tuple[RodROI, ...]:
    """Find the rods of a calibration phantom and measure a circular ROI in each.

    Parameters
    ----------
    volume : CTVolume
        Phantom scan, rods along the scanner (z) axis; it is searched in its canonical
        orientation (:func:`bmdqct.volume.to_canonical`), where they run along array axis 0.
    n_rods : int, optional
        Expected number of rods; a different count raises.
    rod_diameter_mm : (float, float), optional
        Smallest and largest rod diameter to accept, mm.
    slices : (int, int), optional
        First and last axial slice (of the canonical volume) to sample. Default: the slices where the
        phantom fills at least half its largest cross-section, minus 20 % of
        that range (at least one slice when three or more remain) at each end.
    roi_fraction : float, optional
        ROI radius as a fraction of the measured rod radius (``0.6`` keeps the
        ROI well clear of the blurred rod edge).

    Returns
    -------
    tuple of RodROI
        Ordered from the patient's right to left (array axis 2), then anterior to
        posterior.

    Raises
    ------
    CalibrationError
        If no phantom is found, the rods are too small for a ROI, or the number
        of rods differs from `n_rods` (the candidates are listed).

    Notes
    -----
    Method: average the slab (noise falls with the square root of the slice
    count), subtract the phantom-body background (a median filter 2.5 rod
    diameters wide, so rods of either contrast sign stand out), smooth, and
    keep connected regions above five robust noise SDs whose size and shape are
    those of a rod (eccentricity < 0.75, solidity > 0.85). Each region is then
    re-thresholded at half its own peak contrast, which puts its edge at the
    blurred rod edge whatever the contrast; centre and radius come from that
    region (holes, e.g. an air bubble, filled). Unless `n_rods` rods are
    already found, a second pass smooths over a quarter of the diameter of the rods found
    and looks for faint rods of that size (a 0 mg/cm³ insert in water-equivalent
    resin differs from the body by ~10 HU). The noise SD of the smoothed average
    is measured from slice-to-slice differences, which cancel every structure
    that runs along z. scikit-image's Hough circle transform was considered, but
    it needs edges, and the edges of ~10-20 HU rods drown in noise before
    averaging; the phantom outline and the couch dominate its accumulator.

    Examples
    --------
    >>> from bmdqct.synthetic import synthesize_phantom_scan
    >>> vol, truth = synthesize_phantom_scan("mindways-model3-ct", 0, 20.0, 1.3, shape=(128, 128),
    ...                                      pixel_mm=1.6, n_slices=6, noise_hu=0)
    >>> rods = find_rods(vol, n_rods=5)
    >>> [round(r.mean_hu, 1) for r in rods], rods[0].slices
    ([-46.0, -3.7, 213.3, 378.2, 513.9], (2, 3))
    >>> [round(v, 1) for v in truth.rod_hu.values()]
    [-46.0, -3.7, 213.3, 378.2, 513.9]
    """
    from scipy import ndimage

    if not 0.1 <= roi_fraction <= 0.9:
        raise ValueError(f"roi_fraction must be in [0.1, 0.9], got {roi_fraction}")
    d_min, d_max = (float(d) for d in rod_diameter_mm)
    if not 0 < d_min < d_max:
        raise ValueError(f"rod_diameter_mm must be (smallest, largest) > 0, got {rod_diameter_mm}")
    volume = to_canonical(volume)  # axis 0 inferior->superior, 1 anterior->posterior, 2 right->left
    hu = volume.hu
    zs = _slab(hu, slices)
    spacing_yx = volume.spacing[1:]
    avg = hu[zs].mean(axis=0, dtype=np.float64)

    body = ndimage.binary_fill_holes(avg > _OBJECT_HU)
    labels, count = ndimage.label(body)
    if count == 0:
        raise CalibrationError("no phantom found in the sampled slices")
    body = labels == (1 + int(np.argmax(ndimage.sum_labels(body, labels, range(1, count + 1)))))
    depth_mm = ndimage.distance_transform_edt(body, sampling=spacing_yx)
    inside = depth_mm > 3.0

    background = _background(avg, inside, spacing_yx, 2.5 * d_max, max(d_max / 8, 2 * min(spacing_yx)))
    contrast = np.where(inside, avg - background, 0.0)
    sigma_px = [max(0.5, d_min / 6 / s) for s in spacing_yx]
    smooth = ndimage.gaussian_filter(contrast, sigma_px)
    noise = _noise_of_smoothed_mean(hu[zs], avg, sigma_px, inside)
    threshold = max(5.0 * noise, 3.0)
    logger.debug("rod finding: %d slices, noise %.2f HU, threshold %.1f HU", zs.size, noise, threshold)

    candidates = _detect(smooth, inside, threshold, spacing_yx, d_min, d_max)
    if candidates and (n_rods is None or len(candidates) < n_rods):
        # second pass for faint rods: smooth over a quarter of the rod diameter found so far
        d_est = float(np.median([2 * c[1] for c in candidates]))
        coarse_px = [max(0.5, d_est / 4 / s) for s in spacing_yx]
        # background again, without the rods found (they bias the median where rods are dense)
        rods_mask = np.zeros(avg.shape, bool)
        rows, cols = np.indices(avg.shape)
        for (cj, ck), radius_mm, _ in candidates:
            rods_mask |= np.hypot((rows - cj) * spacing_yx[0], (cols - ck) * spacing_yx[1]) <= radius_mm + 3.0
        valid = inside & ~rods_mask
        background = _background(avg, valid, spacing_yx, 2.5 * d_max, max(d_max / 8, 2 * min(spacing_yx)),
                                 rods_excluded=True)
        # normalized convolution: the zeros outside the body do not dim a faint rod near its edge
        weight = ndimage.gaussian_filter(valid.astype(float), coarse_px)
        coarse = ndimage.gaussian_filter(np.where(valid, avg - background, 0.0), coarse_px)
        coarse = np.where(weight > 0.2, coarse / np.maximum(weight, 1e-6), 0.0)
        coarse_noise = _noise_of_smoothed_mean(hu[zs], avg, coarse_px, inside)
        # a faint rod's half-contrast outline is ragged: accept slightly less round shapes
        extra = _detect(coarse, inside, max(5.0 * coarse_noise, 2.0), spacing_yx, 0.7 * d_est, 1.3 * d_est,
                        max_eccentricity=0.8, min_solidity=0.8)
        for centroid, _, peak in extra:
            distances = [math.dist(np.multiply(centroid, spacing_yx), np.multiply(c[0], spacing_yx))
                         for c in candidates]
            if min(distances) > d_est:
                logger.debug("faint rod found at %s (contrast %+.1f HU)", np.round(centroid, 1), peak)
                candidates.append((centroid, d_est / 2.0, peak))
        logger.debug("second pass: noise %.2f HU at sigma %s px", coarse_noise, np.round(coarse_px, 2))

    if n_rods is not None and len(candidates) != n_rods:
        found = ", ".join(f"at voxel ({c[0]:.0f}, {c[1]:.0f}) diameter {2 * r:.1f} mm contrast {p:+.0f} HU"
                          for c, r, p in candidates) or "none"
        raise CalibrationError(
            f"found {len(candidates)} rods where the phantom has {n_rods} ({found}). A rod is missing "
            "or hidden, or this is another phantom; check the phantom choice, or pass slices= / "
            f"rod_diameter_mm= (now {rod_diameter_mm}) to narrow the search")
    if not candidates:
        raise CalibrationError("no rods found in the phantom scan; check the series and rod_diameter_mm")

    z_mid = 0.5 * (zs[0] + zs[-1])
    jj, kk = np.meshgrid(np.arange(avg.shape[0]) * spacing_yx[0], np.arange(avg.shape[1]) * spacing_yx[1],
                         indexing="ij")
    rods = []
    for (cj, ck), radius_mm, peak in candidates:
        roi_radius_mm = roi_fraction * radius_mm
        disk = (jj - cj * spacing_yx[0]) ** 2 + (kk - ck * spacing_yx[1]) ** 2 <= roi_radius_mm ** 2
        if disk.sum() < 5:
            raise CalibrationError(f"rod of diameter {2 * radius_mm:.1f} mm leaves a ROI of only "
                                   f"{int(disk.sum())} pixels at {spacing_yx} mm; use a finer reconstruction")
        samples = hu[zs][:, disk].astype(np.float64)
        center_vox = (float(z_mid), float(cj), float(ck))
        rods.append(RodROI(
            center_mm=tuple(float(v) for v in volume.index_to_world(center_vox)), center_vox=center_vox,
            radius_mm=float(radius_mm), roi_radius_mm=float(roi_radius_mm),
            mean_hu=float(samples.mean()), sd_hu=float(samples.std(ddof=1)), n_voxels=int(samples.size),
            slices=(int(zs[0]), int(zs[-1])), contrast_hu=float(peak)))
    rods.sort(key=lambda r: (round(r.center_vox[2], 1), r.center_vox[1]))
    return tuple(rods)


def _assign(rods: Sequence[RodROI], cert, assignment: str) -> list[RodROI]:
    """Order `rods` like the certificate entries (see :func:`calibrate_phantom`)."""
    if assignment == "position":
        centers = np.array([r.center_mm[:2] for r in rods])
        centered = centers - centers.mean(axis=0)
        direction = np.linalg.svd(centered, full_matrices=False)[2][0]
        if direction[0] < 0 or (direction[0] == 0 and direction[1] < 0):
            direction = -direction  # towards the patient's left (+x in LPS)
        order = np.argsort(centered @ direction, kind="stable")
        return [rods[i] for i in order]
    water = cert.water_mg_cm3 if cert.definition.fit == "two-component" else None
    return _rank_assign(rods, cert.density_mg_cm3, water)


def _rank_assign(rods: Sequence[RodROI], density: np.ndarray, water: np.ndarray | None) -> list[RodROI]:
    """HU-rank rule: k-th lowest measured HU <-> k-th lowest expected HU (re-ranked with fitted sigma)."""
    measured = np.argsort([r.mean_hu for r in rods], kind="stable")
    sigma = _NOMINAL_SIGMA_REF
    ordered: list[RodROI] = []
    for _ in range(3):
        expected = density if water is None else water + sigma * density
        ranks = np.argsort(np.argsort(expected, kind="stable"), kind="stable")
        ordered = [rods[measured[rank]] for rank in ranks]
        if water is None:
            break
        try:
            new_sigma = _fit_line(np.array([r.mean_hu for r in ordered]), density, water)[4][
                "sigma_ref_hu_per_mg_cm3"]
        except CalibrationError:  # a hopeless fit; fit_phantom reports it with the rod table
            break
        if abs(new_sigma - sigma) < 1e-6:
            break
        sigma = new_sigma
    return ordered


def calibrate_phantom(scan, certificate, *, phantom=None, assignment: str = "hu-rank",
                      slices=None, roi_fraction: float = 0.6, rod_diameter_mm=None,
                      series_uid: str | None = None, metadata: Mapping | None = None,
                      warn_r_squared: float = WARN_R_SQUARED, min_r_squared: float = MIN_R_SQUARED,
                      warn_residual_mg_cm3: float = WARN_RESIDUAL_MG_CM3,
                      max_residual_mg_cm3: float = MAX_RESIDUAL_MG_CM3) -> Calibration:
    """Calibrate from a phantom scan: find the rods, assign them, fit.

    Parameters
    ----------
    scan : CTVolume or path
        The phantom scan; a path goes through :func:`bmdqct.io.load_ct` (DICOM
        folder or file, NIfTI, MHA, NRRD).
    certificate : Certificate, mapping or path
        Certified values of this phantom serial (:func:`read_certificate`).
    phantom : str, optional
        Phantom model (:data:`PHANTOMS`); must agree with the certificate's.
    assignment : {"hu-rank", "position"}, optional
        How found rods are matched to certificate entries.
        ``"hu-rank"`` (default): the rod with the k-th lowest mean HU is the
        certificate entry with the k-th lowest *expected* HU: density for
        linear phantoms; ``water + sigma_ref * K2HPO4`` for Mindways rods, first
        with a nominal sigma_ref = 1.4 HU per mg/cm³, then re-ranked with the
        fitted sigma_ref until stable. Independent of how the phantom lay.
        ``"position"``: rods ordered along the line through their centres, from
        the patient's right to left, match the certificate order (A, B, ...);
        use it only if you know the phantom's orientation.
    slices, roi_fraction, rod_diameter_mm
        Passed to :func:`find_rods` (`rod_diameter_mm` defaults to the phantom's).
    series_uid : str, optional
        Passed to :func:`bmdqct.io.load_ct` for a DICOM folder with several series.
    metadata : mapping, optional
        Overrides of the scan metadata (e.g. ``{"study_date": "2024-01-31"}``).
    warn_r_squared, min_r_squared, warn_residual_mg_cm3, max_residual_mg_cm3
        Fit-quality limits, see :func:`fit_phantom`.

    Returns
    -------
    Calibration
        With the rod table (centre, ROI radius, mean/SD HU, voxels) in
        ``details["rods"]`` and the scanner, kVp, kernel and date of the scan.

    Raises
    ------
    CalibrationError
        If the phantom and certificate disagree, the rod count is wrong, or the
        fit is bad (the per-rod residuals are listed).

    Examples
    --------
    A noise-free synthetic scan of a scanner whose bone line is ``HU = 20 + 1.3 rho``:

    >>> from bmdqct.synthetic import synthesize_phantom_scan
    >>> vol, truth = synthesize_phantom_scan("mindways-model3-ct", 0, 20.0, 1.3, shape=(128, 128),
    ...                                      pixel_mm=1.6, n_slices=6, noise_hu=0)
    >>> cal = calibrate_phantom(vol, truth.certificate)
    >>> cal.details["fit"], round(cal.slope, 4), round(cal.intercept, 2)
    ('two-component', 0.7692, -15.38)
    >>> round(truth.slope, 4), round(truth.intercept, 2)
    (0.7692, -15.38)
    """
    cert = as_certificate(certificate)
    if phantom is not None and get_phantom(phantom).name != cert.phantom:
        raise CalibrationError(f"--phantom {get_phantom(phantom).name} does not match the certificate, which "
                               f"is for {cert.phantom} (serial {cert.serial}); use the certificate of "
                               "the phantom that was scanned")
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}")
    if isinstance(scan, CTVolume):
        volume, source = scan, scan.metadata.get("source")
    else:
        from ..io import load_ct

        volume, source = load_ct(scan, series_uid=series_uid), str(scan)
    meta = {**dict(volume.metadata), **dict(metadata or {})}
    definition = cert.definition
    rods = find_rods(volume, slices=slices, roi_fraction=roi_fraction,
                     rod_diameter_mm=rod_diameter_mm or definition.rod_diameter_mm)
    if len(rods) != len(cert.rods):
        raise CalibrationError(_count_mismatch_message(rods, cert))
    ordered = _assign(rods, cert, assignment)
    table = [{"label": spec.label, **rod.to_dict()} for spec, rod in zip(cert.rods, ordered)]
    cal = fit_phantom([r.mean_hu for r in ordered], cert, rod_sd_hu=[r.sd_hu for r in ordered],
                      metadata=meta, warn_r_squared=warn_r_squared, min_r_squared=min_r_squared,
                      warn_residual_mg_cm3=warn_residual_mg_cm3, max_residual_mg_cm3=max_residual_mg_cm3,
                      details={"assignment": assignment, "rod_rois": table,
                               "scan": None if source is None else str(source),
                               "series_uid": meta.get("series_uid")})
    return cal


def _count_mismatch_message(rods: Sequence[RodROI], cert) -> str:
    """Explain a wrong rod count; with too few rods, fit each subset of the certificate to name the gap."""
    from itertools import combinations

    found = "; ".join(f"{r.mean_hu:.1f} HU at ({r.center_mm[0]:.0f}, {r.center_mm[1]:.0f}) mm" for r in rods)
    text = (f"found {len(rods)} rods in the phantom scan but the certificate ({cert.phantom}, serial "
            f"{cert.serial}) lists {len(cert.rods)}: {found or 'none'}.")
    if 2 <= len(rods) < len(cert.rods):
        density = cert.density_mg_cm3
        water = cert.water_mg_cm3 if cert.definition.fit == "two-component" else None
        best = None
        for keep in combinations(range(len(cert.rods)), len(rods)):
            keep = list(keep)
            sub_water = None if water is None else water[keep]
            if np.ptp(density[keep]) == 0:
                continue
            ordered = _rank_assign(rods, density[keep], sub_water)
            try:
                _, _, r2, residuals, _ = _fit_line(np.array([r.mean_hu for r in ordered]), density[keep],
                                                   sub_water)
            except CalibrationError:
                continue
            if best is None or r2 > best[0]:
                best = (r2, keep, residuals)
        if best is not None:
            missing = [cert.rods[i].label for i in range(len(cert.rods)) if i not in best[1]]
            table = ", ".join(f"{cert.rods[i].label} {res:+.1f}" for i, res in zip(best[1], best[2]))
            text += (f" The rods found fit best without rod(s) {missing} (R2 = {best[0]:.4f}; residuals in "
                     f"mg/cm3: {table}): is that rod missing, outside the field of view, or too faint?")
    elif len(rods) > len(cert.rods):
        text += " More rods than certified: is this another phantom?"
    return text + " Check the phantom choice, or pass slices= / rod_diameter_mm= to narrow the search"
