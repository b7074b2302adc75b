"""Mask helpers shared by the labelling and the rib check: boxes, crops, profiles."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import GeometryError
from ..levels import level_index
from ..volume import CTVolume, LabelVolume, same_grid


def _level_boxes(labels: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box (index slices) of every nonzero id in `labels`.

    One pass over the volume finds the box of all labels (a projection
    along axis 0, no full-size temporary); the ids are then located inside
    that box only, which on a CT is a small part of the volume.
    """
    labels = np.asarray(labels)
    footprint = np.any(labels, axis=0)
    if not footprint.any():
        return {}
    rows = np.nonzero(footprint.any(axis=1))[0]
    cols = np.nonzero(footprint.any(axis=0))[0]
    plane = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    ks = np.nonzero(np.any(labels[(slice(None), *plane)], axis=(1, 2)))[0]
    box = (slice(int(ks[0]), int(ks[-1]) + 1), *plane)
    offset = [b.start for b in box]
    # ids are >= 0 (LabelVolume checks it); find_objects lists ids 1..max
    objects = ndi.find_objects(labels[box])
    return {i: tuple(slice(b.start + o, b.stop + o) for b, o in zip(obj, offset))
            for i, obj in enumerate(objects, start=1) if obj is not None}


def _crop_of(labels: np.ndarray, lid: int, box, pad: int = 0) -> _Crop:
    """The mask of id `lid` cropped to `box` (from :func:`_level_boxes`) grown by `pad` voxels."""
    shape = labels.shape
    grown = tuple(slice(max(b.start - pad, 0), min(b.stop + pad, n)) for b, n in zip(box, shape))
    return _Crop(grown, np.asarray(labels[grown]) == lid, shape)


def _is_level(name: str) -> bool:
    try:
        level_index(name)
    except KeyError:
        return False
    return True


def _check_grid(volume, labels, what: str) -> None:
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not isinstance(labels, LabelVolume):
        raise TypeError(f"{what} must be a LabelVolume, got {type(labels).__name__}")
    if not same_grid(volume, labels):
        differs = "shape" if labels.shape != volume.shape else "affine"
        raise GeometryError(f"{what} must lie on the CT's grid (shape {volume.shape}); got shape "
                            f"{labels.shape} (different {differs}); resample them with "
                            "bmdqct.preprocess.resample_like(labels, ct)")


def _bbox(mask: np.ndarray, pad=(0, 0, 0)) -> tuple[slice, ...]:
    out = []
    for axis, p in enumerate(pad):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.nonzero(mask.any(axis=other))[0]
        out.append(slice(max(int(idx[0]) - p, 0), min(int(idx[-1]) + 1 + p, mask.shape[axis])))
    return tuple(out)


def _disc_element(radius_mm: float, spacing) -> np.ndarray:
    ry = max(int(np.floor(radius_mm / spacing[1])), 1)
    rx = max(int(np.floor(radius_mm / spacing[2])), 1)
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    disc = (yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2 <= radius_mm ** 2 + 1e-9
    return disc[None]


class _Crop:
    """A mask stored as its bounding box inside a grid of `shape`."""

    __slots__ = ("box", "mask", "shape")

    def __init__(self, box, mask, shape):
        self.box = tuple(box)
        self.mask = mask
        self.shape = tuple(shape)

    @property
    def offset(self) -> np.ndarray:
        return np.array([b.start for b in self.box], dtype=np.float64)

    def full(self) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        out[self.box] = self.mask
        return out

    def centroid(self) -> np.ndarray:
        """Centre of mass in full-grid voxel indices."""
        return np.array(ndi.center_of_mass(self.mask)) + self.offset

    def edge_sides(self) -> tuple[bool, bool]:
        """(touches the inferior end, touches the superior end) of the scan."""
        lo = self.box[0].start == 0 and self.mask[0].any()
        hi = self.box[0].stop == self.shape[0] and self.mask[-1].any()
        return bool(lo), bool(hi)

    def touches_edge(self) -> bool:
        for axis in range(3):
            first = [slice(None)] * 3
            last = [slice(None)] * 3
            first[axis], last[axis] = 0, -1
            if self.box[axis].start == 0 and self.mask[tuple(first)].any():
                return True
            if self.box[axis].stop == self.shape[axis] and self.mask[tuple(last)].any():
                return True
        return False


def _area_profile(mask: np.ndarray) -> np.ndarray:
    return mask.sum(axis=(1, 2)).astype(np.float64)
