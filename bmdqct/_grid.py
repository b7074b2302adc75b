"""Private grid helpers shared by every stage: the one grid check and the resampling core.

Importable from everywhere (it imports only :mod:`bmdqct.volume` and
:mod:`bmdqct.errors`), so :mod:`bmdqct.io` (oblique scans, writing on the input
grid) and :mod:`bmdqct.preprocess` (:func:`~bmdqct.preprocess.resample`,
:func:`~bmdqct.preprocess.resample_like`) use the same code without io
importing to its right.

* :func:`check_same_grid` — refuse two volumes on different grids (shape or
  affine), naming what differs and how to fix it;
* :func:`resample_array` — an array from one affine grid onto another in
  physical space (SimpleITK);
* :func:`resample_volume` — a CTVolume or LabelVolume onto a grid, right
  interpolation per type;
* :func:`bounding_grid` — the grid with given axes that covers a volume.
"""

from __future__ import annotations

import numpy as np

from .errors import GeometryError
from .volume import CTVolume, LabelVolume, same_grid

__all__ = ["HU_AIR", "check_same_grid", "resample_array", "resample_volume", "bounding_grid"]

#: CT number of air, the fill value of CT resampling (the same as :data:`bmdqct.io.HU_AIR`).
HU_AIR = -1000.0


def check_same_grid(reference, other, what: str = "labels", *, fix: str | None = None,
                    atol_mm: float = 1e-3) -> None:
    """Raise :class:`~bmdqct.errors.GeometryError` unless `other` lies on `reference`'s grid.

    Parameters
    ----------
    reference, other
        Anything with ``shape`` and ``affine`` (volumes, VOIs).
    what : str, optional
        Name of `other` in the message.
    fix : str, optional
        What the user should do (default: resample with
        ``bmdqct.preprocess.resample_like``).
    atol_mm : float, optional
        Tolerance on the affine (:func:`bmdqct.volume.same_grid`).

    Examples
    --------
    >>> ct = CTVolume.from_spacing(np.zeros((2, 3, 4)), (1, 1, 1))
    >>> check_same_grid(ct, LabelVolume.from_spacing(np.zeros((2, 3, 4), int), (1, 1, 1)))
    >>> check_same_grid(ct, LabelVolume.from_spacing(np.zeros((2, 3, 4), int), (2, 1, 1)))
    Traceback (most recent call last):
    ...
    bmdqct.errors.GeometryError: labels must lie on the grid of shape (2, 3, 4) and spacing (1, 1, 1) mm; got shape (2, 3, 4) and spacing (2, 1, 1) mm (different affine); resample them with bmdqct.preprocess.resample_like
    """
    if same_grid(reference, other, atol_mm=atol_mm):
        return
    differs = "shape" if tuple(other.shape) != tuple(reference.shape) else "affine"
    fix = fix or "resample them with bmdqct.preprocess.resample_like"
    raise GeometryError(f"{what} must lie on the grid of {_describe(reference)}; got {_describe(other)} "
                        f"(different {differs}); {fix}")


def _describe(grid) -> str:
    spacing = np.linalg.norm(np.asarray(grid.affine, float)[:3, :3], axis=0)
    return f"shape {tuple(int(n) for n in grid.shape)} and spacing ({', '.join(f'{s:g}' for s in spacing)}) mm"


def bounding_grid(affine, shape, target) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Grid with the axes of `target` that covers every voxel centre of (affine, shape).

    Examples
    --------
    >>> grid, shape = bounding_grid(np.diag([2.0, 2.0, 2.0, 1.0]), (3, 3, 3), np.eye(4))
    >>> shape, grid[:3, 3].tolist()
    ((5, 5, 5), [0.0, 0.0, 0.0])
    """
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:4]
    index = np.linalg.solve(target[:3, :3], world)
    low, high = index.min(axis=1), index.max(axis=1)
    out = target.copy()
    out[:3, 3] = target[:3, :3] @ low
    new_shape = tuple(int(np.ceil(h - lo - 1e-6)) + 1 for lo, h in zip(low, high))
    return out, new_shape


def resample_array(array: np.ndarray, source_affine, target_affine, target_shape, *,
                   order: int, fill: float) -> np.ndarray:
    """Resample `array` from one grid onto another in physical space (SimpleITK).

    Both grids are given to ITK in index space (unit spacing, zero origin) and linked by
    the affine transform ``inv(source_affine) @ target_affine``, so any affine (oblique,
    flipped, permuted) works. SimpleITK's resampler is multi-threaded and was 1.3-2.7x
    faster than ``scipy.ndimage.affine_transform`` on a 512x512x300 volume (see
    benchmarks/bench_io.py). ITK counts a point as inside the input up to half a voxel
    beyond the outer voxel centres (the voxel's extent).

    Examples
    --------
    >>> a = np.arange(8.0).reshape(2, 2, 2)
    >>> shift = np.eye(4); shift[2, 3] = 1.0
    >>> resample_array(a, np.eye(4), shift, (2, 2, 2), order=0, fill=-1.0)[0].tolist()
    [[1.0, -1.0], [3.0, -1.0]]
    """
    import SimpleITK as sitk

    interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}
    if order not in interpolators:
        raise ValueError(f"order must be 0 (nearest), 1 (linear) or 3 (cubic B-spline), "
                         f"got {order!r}")
    mapping = np.linalg.inv(np.asarray(source_affine, float)) @ np.asarray(target_affine, float)
    flip = np.eye(3)[::-1]  # numpy axes (i, j, k) are ITK axes (z, y, x)
    transform = sitk.AffineTransform((flip @ mapping[:3, :3] @ flip).ravel().tolist(),
                                     (flip @ mapping[:3, 3]).tolist(), (0.0, 0.0, 0.0))
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in target_shape[::-1]])
    resampler.SetTransform(transform)
    resampler.SetInterpolator(interpolators[order])
    resampler.SetDefaultPixelValue(float(fill))
    resampler.SetOutputPixelType(image.GetPixelID())
    return sitk.GetArrayFromImage(resampler.Execute(image))


def resample_volume(volume, affine, shape, *, order: int | None = None, fill: float | None = None):
    """`volume` (CTVolume or LabelVolume) on the grid (affine, shape), same type.

    Labels are resampled with nearest neighbour (``order=0``) and filled with 0,
    CT linearly (``order=1``) and filled with air; a volume already on the grid
    is returned as it is.
    """
    is_labels = isinstance(volume, LabelVolume)
    if not is_labels and not isinstance(volume, CTVolume):
        raise TypeError(f"expected a CTVolume or LabelVolume, got {type(volume).__name__}")
    if order is None:
        order = 0 if is_labels else 1
    if is_labels and order != 0:
        raise ValueError(f"labels are resampled with nearest neighbour (order=0); got order="
                         f"{order}: interpolating label ids would invent labels")
    if fill is None:
        fill = 0 if is_labels else HU_AIR
    shape = tuple(int(n) for n in shape)
    if volume.shape == shape and np.allclose(volume.affine, affine, rtol=0, atol=1e-6):
        return volume
    array = volume.labels if is_labels else volume.hu
    out = resample_array(array, volume.affine, affine, shape, order=order, fill=fill)
    if is_labels:
        return LabelVolume(out, affine, names=volume.names)
    return CTVolume(out, affine, metadata=volume.metadata)
