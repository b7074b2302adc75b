"""Resampling and HU clipping of CT and label volumes.

Interpolation is chosen by type (TorchIO's rule): linear for a
:class:`~bmdqct.volume.CTVolume` (outside the input: air, -1000 HU), nearest
neighbour for a :class:`~bmdqct.volume.LabelVolume` (outside: 0). Resampling always
works in physical space through both affines, so grids of any orientation, origin
or obliquity can be mixed. The work is done by SimpleITK's multi-threaded
resampler (faster than ``scipy.ndimage.affine_transform`` on a 512x512x300 volume;
``benchmarks/bench_io.py`` prints both).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ._grid import HU_AIR, resample_volume  # noqa: F401  (HU_AIR: used in examples)
from .volume import CTVolume, LabelVolume

__all__ = ["resample", "resample_like", "clip_hu"]

logger = logging.getLogger(__name__)


def resample(volume_or_labels, spacing_mm: float | Sequence[float], *, order: int | None = None):
    """Resample onto a grid of the given voxel size covering the same box.

    Parameters
    ----------
    volume_or_labels : CTVolume or LabelVolume
        Input; its axes keep their directions.
    spacing_mm : float or sequence of 3 floats
        New voxel size in mm, in array-axis order (one value: isotropic).
    order : {None, 0, 1, 3}, optional
        Interpolation: 0 nearest, 1 linear, 3 cubic B-spline. None picks 1 for a CT and
        0 for labels (the only order allowed for labels).

    Returns
    -------
    CTVolume or LabelVolume
        Same type, names and metadata. The new grid spans the same physical box: the
        outer voxel faces stay where they were (up to rounding of the voxel count),
        so ``shape = round(old_shape * old_spacing / spacing_mm)``.

    Raises
    ------
    ValueError
        If `spacing_mm` is not 1 or 3 positive numbers, or `order` is unsupported.

    Examples
    --------
    >>> vol = CTVolume.from_spacing(np.zeros((10, 20, 20)), spacing=(3.0, 0.5, 0.5))
    >>> out = resample(vol, 1.0)
    >>> out.shape, out.spacing
    ((30, 10, 10), (1.0, 1.0, 1.0))
    >>> lab = LabelVolume.from_spacing(np.ones((2, 2, 2)), spacing=(2.0, 2.0, 2.0))
    >>> int(resample(lab, (1.0, 1.0, 1.0)).labels.sum())
    64
    """
    if not isinstance(volume_or_labels, (CTVolume, LabelVolume)):
        raise TypeError(f"expected a CTVolume or LabelVolume, got "
                        f"{type(volume_or_labels).__name__}")
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)) \
        if np.ndim(spacing_mm) == 0 else np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing_mm must be one or three positive numbers (mm), "
                         f"got {spacing_mm!r}")
    old_spacing = np.asarray(volume_or_labels.spacing)
    old_shape = np.asarray(volume_or_labels.shape)
    extent = old_shape * old_spacing
    shape = np.maximum(1, np.round(extent / spacing)).astype(int)
    directions = volume_or_labels.affine[:3, :3] / old_spacing
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    # first voxel centre: half a new voxel inside the old outer face
    start = (spacing - old_spacing) / 2
    affine[:3, 3] = volume_or_labels.affine[:3, 3] + directions @ start
    logger.debug("resample %s -> shape %s at %s mm", volume_or_labels, tuple(shape),
                 tuple(spacing))
    return resample_volume(volume_or_labels, affine, tuple(shape), order=order)


def resample_like(volume_or_labels, like, *, order: int | None = None,
                  fill: float | None = None):
    """Resample onto the grid (shape and affine) of another volume, in physical space.

    Parameters
    ----------
    volume_or_labels : CTVolume or LabelVolume
        Input.
    like : CTVolume or LabelVolume
        Provides the target grid; its voxels are not used.
    order : {None, 0, 1, 3}, optional
        Interpolation: 0 nearest, 1 linear, 3 cubic B-spline. None picks 1 for a CT and
        0 for labels (the only order allowed for labels).
    fill : float, optional
        Value outside the input; -1000 HU for a CT and 0 for labels by default.

    Returns
    -------
    CTVolume or LabelVolume
        Same type as the input (metadata or names kept), on `like`'s grid. The input
        itself is returned when it is already on that grid.

    Examples
    --------
    >>> ct = CTVolume.from_spacing(np.zeros((4, 4, 4)), spacing=(1, 1, 1))
    >>> lab = LabelVolume.from_spacing(np.full((2, 2, 2), 5), spacing=(2, 2, 2),
    ...                                origin=(0.5, 0.5, 0.5))
    >>> out = resample_like(lab, ct)
    >>> out.shape, int(out.labels.sum()) // 5
    ((4, 4, 4), 64)
    >>> vol = CTVolume.from_spacing(np.full((2, 2, 2), 50.0), spacing=(1, 1, 1))
    >>> resample_like(vol, ct).hu[:, 0, 0].tolist()   # outside the input: air
    [50.0, 50.0, -1000.0, -1000.0]
    """
    if not isinstance(like, (CTVolume, LabelVolume)):
        raise TypeError(f"like must be a CTVolume or LabelVolume, got {type(like).__name__}")
    return resample_volume(volume_or_labels, like.affine, like.shape, order=order, fill=fill)


def clip_hu(volume: CTVolume, low_hu: float, high_hu: float) -> CTVolume:
    """Clip HU to ``[low_hu, high_hu]``; a new volume, same grid and metadata.

    Parameters
    ----------
    volume : CTVolume
        Input (not modified).
    low_hu, high_hu : float
        Bounds in HU, ``low_hu < high_hu``; e.g. :data:`HU_AIR` and 3071 (12-bit
        scanner maximum).

    Examples
    --------
    >>> vol = CTVolume.from_spacing(np.array([[[-3024.0, 40.0, 3000.0]]]), spacing=(1, 1, 1))
    >>> clip_hu(vol, HU_AIR, 1500.0).hu.tolist()
    [[[-1000.0, 40.0, 1500.0]]]
    """
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not low_hu < high_hu:
        raise ValueError(f"low_hu must be below high_hu, got {low_hu} and {high_hu}")
    return volume.with_hu(np.clip(volume.hu, np.float32(low_hu), np.float32(high_hu)))
