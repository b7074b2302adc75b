"""The model grid: resampling, body/spine-centred crops and their exact inverse.

A CT (canonical S, P, L, see :mod:`bmdqct.volume`) goes to the network as
follows, and predictions come back along the same path reversed:

1. **Resample** to the preset's spacing (antialiased: Gaussian prefilter with
   sigma = (ratio - 1) / 2 source voxels, then linear interpolation), keeping the
   scan's extent: model voxel centre ``m`` sits at source index
   ``(m + 0.5) * ratio - 0.5`` along each axis.
2. **Crop** in-plane: ``"body"`` mode cuts one window centred on the patient's
   body (found by thresholding, the paper's rule); ``"spine"`` mode shifts
   every axial slice so that the spine's centre line, found by thresholding bone
   near the posterior midline and smoothing along z, sits in the middle of the
   window ("straightened" spine). Shifts are fractional (linear interpolation).
3. **Scale** HU: clip to the preset's window and map linearly to [-1, 1].

:func:`to_source_grid` maps class probabilities from the crop back onto any
region of the original grid by the inverse of steps 1-2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import SegmentationError
from ..volume import CTVolume

__all__ = ["Prepared", "prepare", "to_source_grid", "classes_on_source_grid", "footprint", "scale_hu", "resample_to_model_grid",
           "spine_centre_line", "canal_centre_line"]

logger = logging.getLogger(__name__)

_BODY_HU = -500.0
_BONE_HU = 200.0
# Crop centre relative to the bone centroid (posterior elements pull the
# centroid backwards; the vertebral body lies in front of it).
_SPINE_ANTERIOR_SHIFT_MM = 12.0


@dataclass(frozen=True, eq=False)
class Prepared:
    """A CT on the model grid, cropped, and what is needed to map results back.

    Attributes
    ----------
    image : (Z, H, W) float32 ndarray
        Scaled intensities in [-1, 1] (``scale_hu``), the network's input.
    hu : (Z, H, W) float32 ndarray
        The same crop in HU (used for QC and by training augmentation).
    ratio : (3,) ndarray
        Model spacing / source spacing along each axis.
    centre_vox : (Z, 2) ndarray
        Crop centre (row, column) on each model slice, in model-grid voxels.
    model_shape : tuple of int
        Shape of the (uncropped) model grid.
    source_shape : tuple of int
    """

    image: np.ndarray = field(repr=False)
    hu: np.ndarray = field(repr=False)
    ratio: np.ndarray
    centre_vox: np.ndarray = field(repr=False)
    model_shape: tuple
    source_shape: tuple


def scale_hu(hu, window) -> np.ndarray:
    """Clip HU to ``window = (low, high)`` and scale linearly to [-1, 1] (float32).

    Examples
    --------
    >>> scale_hu(np.array([-2000.0, -1000.0, 250.0, 1500.0, 3000.0]), (-1000, 1500)).tolist()
    [-1.0, -1.0, 0.0, 1.0, 1.0]
    """
    low, high = float(window[0]), float(window[1])
    out = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    out -= (low + high) / 2
    out *= 2.0 / (high - low)
    return out


def interpolation_matrix(n_source: int, positions, *, sigma: float = 0.0) -> np.ndarray:
    """Matrix ``M`` with ``M @ f`` = linear interpolation of ``f`` at `positions`.

    ``f`` is first smoothed with a Gaussian of `sigma` source voxels (truncated
    at 3 sigma, edges repeated) when ``sigma > 0``. Positions are source indices;
    those beyond the ends take the end value (``mode="nearest"``).

    Examples
    --------
    >>> interpolation_matrix(3, [0.0, 0.25, 2.0]) @ np.array([0.0, 4.0, 8.0])
    array([0., 1., 8.])
    """
    positions = np.clip(np.asarray(positions, dtype=np.float64), 0.0, n_source - 1.0)
    lower = np.minimum(np.floor(positions).astype(int), max(n_source - 2, 0))
    frac = positions - lower
    matrix = np.zeros((len(positions), n_source))
    rows = np.arange(len(positions))
    matrix[rows, lower] = 1.0 - frac
    matrix[rows, np.minimum(lower + 1, n_source - 1)] += frac
    if sigma > 0.1:
        radius = int(np.ceil(3.0 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps /= taps.sum()
        blur = np.zeros((n_source, n_source))
        for offset, tap in zip(range(-radius, radius + 1), taps):
            cols = np.clip(np.arange(n_source) + offset, 0, n_source - 1)
            np.add.at(blur, (np.arange(n_source), cols), tap)
        matrix = matrix @ blur
    return matrix


def _apply_along(array: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """Apply `matrix` (new, old) along one axis of `array` (BLAS, all cores)."""
    moved = np.moveaxis(array, axis, -1)
    out = moved @ matrix.T.astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))


def resample_to_model_grid(array, source_spacing, target_spacing, *, order: int = 1,
                           antialias: bool = True):
    """Resample an array to a coarser (or finer) axis-aligned grid of the same extent.

    Returns the resampled array and the per-axis ratio ``target / source``.
    CT values (``order=1``) are interpolated linearly after a Gaussian
    antialiasing prefilter of sigma ``(ratio - 1) / 2`` source voxels, as
    separable matrix products along each axis (fast, and exactly linear);
    labels use ``order=0`` (nearest neighbour) and no prefilter.
    """
    source_spacing = np.asarray(source_spacing, dtype=np.float64)
    ratio = np.asarray(target_spacing, dtype=np.float64) / source_spacing
    shape = np.maximum(1, np.round(np.asarray(array.shape) / ratio).astype(int))
    # voxel centre m of the new grid sits at (m + 0.5) * ratio - 0.5 in the old one
    positions = [_source_positions(n, r) for n, r in zip(shape, ratio)]
    if order == 0:
        index = [np.clip(np.round(p).astype(int), 0, n - 1) for p, n in zip(positions, array.shape)]
        return np.asarray(array)[np.ix_(*index)], ratio
    out = np.asarray(array, dtype=np.float32)
    # reduce the largest axes first: each product then works on less data
    for axis in np.argsort(-np.asarray(array.shape) / shape, kind="stable"):
        sigma = max(0.0, (ratio[axis] - 1.0) / 2.0) if antialias else 0.0
        matrix = interpolation_matrix(array.shape[axis], positions[axis], sigma=sigma)
        out = _apply_along(out, matrix, int(axis))
    return out, ratio


def _body_mask(hu: np.ndarray) -> np.ndarray:
    """Largest connected body region per scan, holes (lungs) filled slice by slice."""
    mask = ndimage.binary_opening(hu > _BODY_HU, iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    filled = np.empty_like(mask)
    for k in range(mask.shape[0]):
        filled[k] = ndimage.binary_fill_holes(mask[k])
    return filled


def _smooth_track(values: np.ndarray, valid: np.ndarray, sigma_vox: float) -> np.ndarray:
    """Fill gaps by linear interpolation, then a median and a Gaussian filter along z."""
    z = np.arange(len(values))
    filled = np.interp(z, z[valid], values[valid])
    size = max(3, int(round(2.0 * sigma_vox)) | 1)
    filled = ndimage.median_filter(filled, size=size, mode="nearest")
    return ndimage.gaussian_filter1d(filled, sigma_vox, mode="nearest")


def spine_centre_line(hu: np.ndarray, spacing_mm) -> np.ndarray:
    """Centre (row, column) of the vertebral column on every axial slice.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        Canonical CT in HU (rows anterior to posterior, columns right to left).
    spacing_mm : (3,) sequence of float

    Returns
    -------
    (Z, 2) ndarray
        Row and column (voxel units) of the crop centre: the centroid of bone
        within 30 mm of the body's left-right centre in the posterior part of
        the body, moved 12 mm anteriorly, smoothed along z.

    Raises
    ------
    SegmentationError
        If no bone is found near the posterior midline (no spine in view).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    body = _body_mask(hu)
    n_slices, n_rows, n_cols = hu.shape
    rows = np.arange(n_rows)[:, None]
    cols = np.arange(n_cols)[None, :]
    centre = np.full((n_slices, 2), np.nan)
    for k in range(n_slices):
        if body[k].sum() < 100:
            continue
        body_rows, body_cols = np.nonzero(body[k])
        col_mid = body_cols.mean()
        row_ant, row_post = body_rows.min(), body_rows.max()
        depth = row_post - row_ant
        region = (np.abs(cols - col_mid) * spacing[2] < 30.0) & \
                 (rows > row_ant + 0.35 * depth) & (rows < row_post - 5.0 / spacing[1])
        weight = np.clip(hu[k] - _BONE_HU, 0.0, 800.0) * (region & body[k])
        total = weight.sum()
        if total * spacing[1] * spacing[2] < 20.0 * 100.0:  # < ~20 mm^2 of dense bone
            continue
        centre[k] = ((weight * rows).sum() / total, (weight * cols).sum() / total)
    valid = np.isfinite(centre[:, 0])
    if valid.sum() < max(3, 0.2 * n_slices):
        raise SegmentationError(
            f"no spine found: dense bone near the posterior midline on only {valid.sum()} of "
            f"{n_slices} slices; expected a CT of the trunk with the spine in view")
    sigma = 8.0 / spacing[0]
    out = np.stack([_smooth_track(centre[:, i], valid, sigma) for i in range(2)], axis=1)
    out[:, 0] -= _SPINE_ANTERIOR_SHIFT_MM / spacing[1]
    return out


#: The canal's body line is used for the crop when it covers at least this share of the slices ...
CANAL_MIN_SHARE = 0.5
#: ... on the slices where the bone-centroid line strays farther than this from it (mm). Both aim at
#: the body's centre and agree within about 13 mm on real chest CT (ricord_chest); the network was
#: trained on the bone-centroid crop and is sensitive to a shift of the whole crop, so the canal's
#: line only corrects a crop pulled away from the spine.
CANAL_OVERRIDE_MM = 20.0


def _spine_crop_centre(model_hu, spacing, ratio, canal) -> np.ndarray:
    """Crop centre per model slice: the bone-centroid line, corrected by the canal's body line."""
    line = None if canal is None else canal_centre_line(canal, ratio, model_hu.shape[0], spacing)
    try:
        centre = spine_centre_line(model_hu, spacing)
    except SegmentationError:
        if line is None:
            raise
        logger.info("no dense bone near the posterior midline: the crop follows the spinal canal")
        return line
    if line is None:
        return centre
    # only where the canal was seen (within 10 mm): beyond its ends the body line is only held
    # constant, and the column may bend away there (the sacrum)
    ks = _canal_slices(canal)
    source_k = _source_positions(model_hu.shape[0], ratio[0])
    margin = 10.0 / (float(spacing[0]) / float(ratio[0]))          # 10 mm in source slices
    seen = (source_k >= ks[0] - margin) & (source_k <= ks[-1] + margin)
    stray = seen & (np.hypot(*((centre - line) * np.asarray(spacing)[1:]).T) > CANAL_OVERRIDE_MM)
    if stray.any():
        logger.info("crop centre moved onto the spinal canal's body line on %d of %d slices", stray.sum(),
                    stray.size)
        corrected = np.where(stray[:, None], line, centre)
        sigma = 8.0 / float(spacing[0])
        centre = np.stack([_smooth_track(corrected[:, i], np.ones(len(corrected), bool), sigma)
                           for i in range(2)], axis=1)
    return centre


def canal_centre_line(canal, ratio, n_slices: int, spacing_mm) -> np.ndarray | None:
    """Crop centre (row, column) on each model slice from the spinal canal's body line.

    Parameters
    ----------
    canal : SpinalCanal
        :func:`bmdqct.spine.find_spinal_canal` of the CT (source grid).
    ratio : (3,) sequence of float
        Model spacing / source spacing (:func:`resample_to_model_grid`).
    n_slices : int
        Slices of the model grid.
    spacing_mm : (3,) sequence of float
        Model spacing.

    Returns
    -------
    (Z, 2) ndarray or None
        The body centre in front of the canal, in model-grid voxels, carried to the
        model slices (the nearest found centre beyond the canal's ends) and smoothed
        along z like :func:`spine_centre_line`; None when the canal was found on
        fewer than :data:`CANAL_MIN_SHARE` of the slices.

    Examples
    --------
    A straight canal whose body centre is at source row 40, column 50, on a grid
    halved in-plane:

    >>> from bmdqct.spine import SpinalCanal
    >>> n = 10
    >>> c = SpinalCanal(np.tile([60.0, 50.0], (n, 1)), np.zeros((n, 3)), np.ones(n, bool), np.ones(n, bool),
    ...                 np.full(n, 12.0), np.tile([40.0, 50.0], (n, 1)), np.zeros((n, 3)), (2.0, 1.0, 1.0))
    >>> canal_centre_line(c, (1.0, 2.0, 2.0), n, (2.0, 2.0, 2.0))[0].round(2).tolist()
    [19.75, 24.75]
    """
    centre = np.asarray(canal.body_centre_index, float)
    ks = _canal_slices(canal)
    if ks.size < max(3, CANAL_MIN_SHARE * centre.shape[0]):
        return None
    source_k = _source_positions(n_slices, ratio[0])
    out = np.empty((n_slices, 2))
    for axis in (0, 1):
        source = np.interp(source_k, ks, centre[ks, axis])
        out[:, axis] = (source + 0.5) / float(ratio[axis + 1]) - 0.5
    sigma = 8.0 / float(spacing_mm[0])
    valid = np.ones(n_slices, bool)
    return np.stack([_smooth_track(out[:, i], valid, sigma) for i in range(2)], axis=1)


def _canal_slices(canal) -> np.ndarray:
    """Source slices where the canal's body centre is known (valid and finite)."""
    known = np.asarray(canal.valid, bool) & np.isfinite(np.asarray(canal.body_centre_index, float)).all(axis=1)
    return np.flatnonzero(known)


def _source_positions(n: int, ratio: float) -> np.ndarray:
    """Source-grid index of each of `n` model voxel centres along one axis (step 1 of the module notes)."""
    return (np.arange(n) + 0.5) * float(ratio) - 0.5


def _body_centre(hu: np.ndarray) -> np.ndarray:
    body = _body_mask(hu)
    if not body.any():
        raise SegmentationError("no body found in the scan (nothing above -500 HU)")
    rows, cols = np.nonzero(body.any(axis=0))
    return np.array([rows.mean(), cols.mean()])


def _crop(array: np.ndarray, centre: np.ndarray, crop_shape, *, order: int, cval: float):
    """Cut a (Z, H, W) window whose slice k is centred on ``centre[k]``."""
    height, width = crop_shape
    grid_r, grid_c = np.meshgrid(np.arange(height) - (height - 1) / 2.0,
                                 np.arange(width) - (width - 1) / 2.0, indexing="ij")
    out = np.empty((array.shape[0], height, width), dtype=array.dtype)
    for k in range(array.shape[0]):
        coords = np.stack([grid_r + centre[k, 0], grid_c + centre[k, 1]])
        out[k] = ndimage.map_coordinates(array[k], coords, order=order, mode="constant",
                                         cval=cval, prefilter=False)
    return out


def prepare(volume: CTVolume, preset, *, labels=None, canal=None):
    """Resample, crop and scale a canonical CT for a preset.

    Parameters
    ----------
    volume : CTVolume
        Canonical CT (as returned by :func:`bmdqct.io.load_ct`).
    preset : Preset
    labels : (I, J, K) int ndarray, optional
        Labels on the CT's grid to carry along (training); returned cropped.
    canal : SpinalCanal, optional
        The CT's spinal canal (:func:`bmdqct.spine.find_spinal_canal`). In ``"spine"``
        mode the crop follows the bone-centroid line :func:`spine_centre_line`, the
        centring the network was trained with; on slices where that line lies more than
        :data:`CANAL_OVERRIDE_MM` from the vertebral-body line in front of the canal
        (:func:`canal_centre_line`) -- a cropped field of view, a bright aorta or heart
        pulling it away -- or where it finds no bone, the body line is used instead.

    Returns
    -------
    Prepared, or (Prepared, ndarray) when `labels` is given.
    """
    model_hu, ratio = resample_to_model_grid(volume.hu, volume.spacing, preset.spacing_mm)
    spacing = np.asarray(preset.spacing_mm)
    if preset.crop_mode == "spine":
        centre = _spine_crop_centre(model_hu, spacing, ratio, canal)
    elif preset.crop_mode == "body":
        centre = np.repeat(_body_centre(model_hu)[None, :], model_hu.shape[0], axis=0)
    else:
        raise ValueError(f"unknown crop_mode {preset.crop_mode!r}; expected 'body' or 'spine'")
    hu_crop = _crop(model_hu, centre, preset.crop_shape, order=1, cval=-1000.0)
    prepared = Prepared(scale_hu(hu_crop, preset.hu_window), hu_crop, ratio, centre,
                        tuple(model_hu.shape), tuple(volume.shape))
    if labels is None:
        return prepared
    model_labels, _ = resample_to_model_grid(labels, volume.spacing, preset.spacing_mm, order=0,
                                             antialias=False)
    return prepared, _crop(model_labels, centre, preset.crop_shape, order=0, cval=0)


def to_source_grid(probabilities: np.ndarray, prepared: Prepared, *, box=None) -> np.ndarray:
    """Map crop probabilities ``(Z, H, W, C)`` back onto the source grid.

    The exact inverse of :func:`prepare`'s resampling and crop, with linear
    interpolation: along z each source slice blends its two nearest model
    slices; in-plane the (scaled, shifted) mapping is applied as two small
    interpolation matrices per slice.

    Parameters
    ----------
    probabilities : (Z, H, W, C) ndarray
        Network output on the crop.
    prepared : Prepared
    box : tuple of slices, optional
        Region of the source grid to fill (default: the crop's footprint, see
        :func:`footprint`). Outside the crop the background class gets 1.

    Returns
    -------
    (..., C) float32 ndarray on ``box``.
    """
    box = footprint(prepared) if box is None else box
    shape = tuple(s.stop - s.start for s in box)
    out = np.zeros(shape + (probabilities.shape[-1],), dtype=np.float32)
    out[..., 0] = 1.0
    for k, rows, cols, mapped in _mapped_slices(probabilities, prepared, box):
        out[k, rows, cols] = np.moveaxis(mapped, 0, -1)
    return out


def classes_on_source_grid(probabilities: np.ndarray, prepared: Prepared, *, box=None):
    """Most probable class and its probability on the source grid, slice by slice.

    Same mapping as :func:`to_source_grid`, without holding every class's
    probability for the whole box at once (a quarter of the memory).

    Returns
    -------
    classes : int16 ndarray on ``box``
    confidence : float32 ndarray on ``box``
    """
    box = footprint(prepared) if box is None else box
    shape = tuple(s.stop - s.start for s in box)
    classes = np.zeros(shape, dtype=np.int16)
    confidence = np.ones(shape, dtype=np.float32)
    for k, rows, cols, mapped in _mapped_slices(probabilities, prepared, box):
        classes[k, rows, cols] = np.argmax(mapped, axis=0)
        confidence[k, rows, cols] = np.max(mapped, axis=0)
    return classes, confidence


def _mapped_slices(probabilities: np.ndarray, prepared: Prepared, box):
    """Yield ``(k, rows, cols, (C, r, c) probabilities)`` for each source slice of `box`."""
    n_slices, height, width, _ = probabilities.shape
    starts = np.array([s.start for s in box])
    shape = tuple(s.stop - s.start for s in box)
    ratio = prepared.ratio
    # model coordinates of the box's source voxels, separable per axis
    mz = (np.arange(shape[0]) + starts[0] + 0.5) / ratio[0] - 0.5
    my = (np.arange(shape[1]) + starts[1] + 0.5) / ratio[1] - 0.5
    mx = (np.arange(shape[2]) + starts[2] + 0.5) / ratio[2] - 0.5
    z_model = np.arange(prepared.centre_vox.shape[0])
    cy = np.interp(mz, z_model, prepared.centre_vox[:, 0])
    cx = np.interp(mz, z_model, prepared.centre_vox[:, 1])
    channels_first = np.moveaxis(np.asarray(probabilities, dtype=np.float32), -1, 1)  # Z,C,H,W
    for k in range(shape[0]):
        if not -0.5 <= mz[k] <= n_slices - 0.5:
            continue
        z = float(np.clip(mz[k], 0.0, n_slices - 1.0))
        z0 = min(int(np.floor(z)), max(n_slices - 2, 0))
        f = z - z0
        plane = channels_first[z0] * (1.0 - f)
        if f > 0:
            plane = plane + channels_first[min(z0 + 1, n_slices - 1)] * f
        rows = my - cy[k] + (height - 1) / 2.0
        cols = mx - cx[k] + (width - 1) / 2.0
        in_rows = np.flatnonzero((rows >= -0.5) & (rows <= height - 0.5))
        in_cols = np.flatnonzero((cols >= -0.5) & (cols <= width - 0.5))
        if not len(in_rows) or not len(in_cols):
            continue
        w_rows = interpolation_matrix(height, rows[in_rows]).astype(np.float32)
        w_cols = interpolation_matrix(width, cols[in_cols]).astype(np.float32)
        yield (k, slice(in_rows[0], in_rows[-1] + 1), slice(in_cols[0], in_cols[-1] + 1),
               w_rows @ plane @ w_cols.T)


def footprint(prepared: Prepared, *, margin_vox: int = 1) -> tuple:
    """Bounding box (slices of the source grid) of the region the crop covers."""
    ratio = prepared.ratio
    half = (np.asarray(prepared.image.shape[1:]) - 1) / 2.0
    lo = (prepared.centre_vox - half).min(axis=0)
    hi = (prepared.centre_vox + half).max(axis=0)
    box = [slice(0, prepared.source_shape[0])]
    for axis, (a, b) in enumerate(zip(lo, hi), start=1):
        start = int(np.floor((a + 0.5) * ratio[axis] - 0.5)) - margin_vox
        stop = int(np.ceil((b + 0.5) * ratio[axis] - 0.5)) + 1 + margin_vox
        box.append(slice(max(0, start), min(prepared.source_shape[axis], stop)))
    return tuple(box)
