"""Elliptical-cylinder volume of interest in a vertebral body (Pan et al. 2020).

The VOI of one body, from its mask alone:

1. the **middle axial section** is the slice halfway along the body's height
   (the extent over which its section area is at least half the largest
   section, so that partial-volume slivers at the endplates do not shift it;
   when that falls between two slices, the one nearer the body's centroid);
   holes in the section are filled;
2. the ellipse is centred at the section's **centroid**; its short,
   antero-posterior semi-axis is 20 % of the section's **longest left-right
   row** and its long, left-right semi-axis follows from the ellipse's area,
   30 % of the section's area;
3. the ellipse is extruded along array axis 0 over the **middle 9 mm** of the
   body: the slices whose centres lie within ±4.5 mm (closed interval) of the
   middle section's centre. At 3 mm slices that is 3 slices (9 mm), at 1 mm
   9 slices, at 2.5 mm 3 slices (7.5 mm): the covered height is always within
   one slice thickness of the nominal one and symmetric about the section;
4. **voxel inclusion by centre**: a voxel belongs to the VOI if its centre
   lies inside the ellipse (in mm, using the in-plane spacing) and its slice
   is one of those above. The VOI volume is therefore ``n_voxels`` times the
   voxel volume, which approaches ``π a b h`` as voxels shrink;
5. if any VOI voxel falls outside the body's (hole-filled) section on its
   slice, both semi-axes are shrunk by 5 % steps until none does, and the VOI
   carries a ``voi_shrunk`` flag.

The fractions, height and shrink rule are the fields of :class:`VOIProtocol`;
the defaults are the paper's. Geometry follows :mod:`bmdqct.volume`: array
axis 1 is antero-posterior, axis 2 left-right, all lengths in mm. The
cylinder's axis is the scanner's axis 0, not the body's own axis; in the
mid-body slab used here the difference is small for the usual lordosis and
kyphosis.

References
----------
.. [1] Pan Y, Shi D, Wang H, et al. Automatic opportunistic osteoporosis
   screening using low-dose chest computed tomography scans obtained for lung
   cancer screening. Eur Radiol 2020;30(7):4107-4116.
   doi:10.1007/s00330-020-06679-y
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ._util import record_dict
from .errors import GeometryError, MeasurementError
from .labeling import VertebraLabels
from .labeling._geometry import _level_boxes
from .qc import QCFlag
from .volume import CTVolume, LabelVolume, axis_codes, same_grid

__all__ = ["VOIProtocol", "DEFAULT_VOI_PROTOCOL", "VOI", "vertebral_body_voi"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VOIProtocol:
    """Parameters of the elliptical-cylinder VOI (defaults: Pan et al. 2020).

    Parameters
    ----------
    area_fraction : float
        Ellipse area as a fraction of the middle section's area (0.30).
    ap_fraction_of_row : float
        Antero-posterior semi-axis as a fraction of the section's longest
        left-right row (0.20).
    height_mm : float
        Nominal height of the cylinder (9 mm).
    shrink_step : float
        Factor applied to both semi-axes at each shrink step when the ellipse
        leaves the body (0.95).
    min_scale : float
        Smallest total shrink factor accepted; below it the VOI cannot be
        placed (0.5).
    margin_mm : float
        Distance the ellipse must keep from the body's edge (0: it must stay
        inside the body mask).

    Examples
    --------
    >>> VOIProtocol().height_mm
    9.0
    >>> VOIProtocol(height_mm=7.5).area_fraction
    0.3
    """

    area_fraction: float = 0.30
    ap_fraction_of_row: float = 0.20
    height_mm: float = 9.0
    shrink_step: float = 0.95
    min_scale: float = 0.5
    margin_mm: float = 0.0

    def __post_init__(self):
        for name in ("area_fraction", "ap_fraction_of_row", "min_scale"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"VOIProtocol.{name} must lie in (0, 1], got {value}")
        if not 0 < self.shrink_step < 1:
            raise ValueError(f"VOIProtocol.shrink_step must lie in (0, 1), got {self.shrink_step}")
        if not self.height_mm > 0:
            raise ValueError(f"VOIProtocol.height_mm must be positive, got {self.height_mm}")
        if not self.margin_mm >= 0:
            raise ValueError(f"VOIProtocol.margin_mm must be >= 0, got {self.margin_mm}")


#: The paper's protocol: 30 % of the section, 20 % of the longest row, 9 mm.
DEFAULT_VOI_PROTOCOL = VOIProtocol()


@dataclass(frozen=True, eq=False)
class VOI:
    """An elliptical-cylinder VOI on a CT grid.

    The mask is stored as a bounding box (:attr:`box`, :attr:`box_mask`);
    :attr:`mask` expands it to the full grid on demand.

    Attributes
    ----------
    level : str
        Vertebral level.
    shape : (int, int, int)
        Shape of the CT grid.
    affine : (4, 4) ndarray
        Voxel-to-LPS affine of the CT grid the VOI was placed on (read-only
        copy). With `shape` it is the VOI's grid: :meth:`values` refuses a
        volume on any other grid (:func:`bmdqct.volume.same_grid`).
    box : tuple of 3 (start, stop)
        Index ranges of the bounding box along each array axis.
    box_mask : ndarray of bool
        The VOI inside the box (read-only).
    center_mm : (3,) tuple of float
        Centre of the ellipse on the middle section, patient LPS mm.
    center_vox : (3,) tuple of float
        The same in (fractional) array indices.
    semi_axis_ap_mm, semi_axis_lr_mm : float
        Semi-axes after any shrinking, mm.
    height_mm : float
        Nominal height (the protocol's).
    covered_height_mm : float
        Number of VOI slices times the slice spacing.
    slice_range : (int, int)
        First and last slice of the VOI.
    middle_slice : int
        The body's middle axial section.
    section_area_mm2 : float
        Area of the middle section (holes filled).
    longest_row_mm : float
        Longest left-right row of the middle section (first to last voxel,
        voxel widths included).
    scale : float
        Shrink factor applied to the semi-axes (1.0 if none).
    n_voxels : int
        Voxels in the VOI.
    volume_mm3 : float
        ``n_voxels`` times the voxel volume.
    flags : tuple of QCFlag
        ``voi_shrunk`` if the ellipse had to shrink.
    """

    level: str
    shape: tuple[int, int, int]
    affine: np.ndarray = field(repr=False)
    box: tuple[tuple[int, int], ...]
    box_mask: np.ndarray = field(repr=False)
    center_mm: tuple[float, float, float]
    center_vox: tuple[float, float, float]
    semi_axis_ap_mm: float
    semi_axis_lr_mm: float
    height_mm: float
    covered_height_mm: float
    slice_range: tuple[int, int]
    middle_slice: int
    section_area_mm2: float
    longest_row_mm: float
    scale: float
    n_voxels: int
    volume_mm3: float
    flags: tuple[QCFlag, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        affine = np.array(self.affine, dtype=np.float64)     # a copy: the caller's array stays writable
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise GeometryError(f"VOI.affine must be a finite 4x4 voxel-to-LPS matrix, got shape {affine.shape}")
        affine.setflags(write=False)
        object.__setattr__(self, "affine", affine)
        box_mask = np.asarray(self.box_mask, bool)
        box_mask = box_mask.view() if box_mask is self.box_mask else box_mask
        box_mask.setflags(write=False)
        object.__setattr__(self, "box_mask", box_mask)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """The bounding box as index slices."""
        return tuple(slice(a, b) for a, b in self.box)

    @property
    def mask(self) -> np.ndarray:
        """The VOI as a boolean array on the full CT grid (a new array)."""
        out = np.zeros(self.shape, bool)
        out[self.slices] = self.box_mask
        return out

    def values(self, volume: CTVolume) -> np.ndarray:
        """HU of the VOI's voxels (1-D float32 array, a copy).

        Parameters
        ----------
        volume : CTVolume
            A CT on the grid the VOI was placed on (same shape and affine,
            :func:`bmdqct.volume.same_grid`).

        Raises
        ------
        GeometryError
            If `volume` lies on another grid: another shape, spacing, origin
            or orientation.

        Examples
        --------
        >>> import numpy as np
        >>> from bmdqct.volume import CTVolume, LabelVolume
        >>> k, j, i = np.mgrid[:30, :40, :50]
        >>> body = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1) & (k >= 3) & (k < 27)
        >>> ct = CTVolume.from_spacing(np.where(body, 150.0, 0.0), (1, 1, 1))
        >>> voi = vertebral_body_voi(ct, LabelVolume.from_spacing(body * 20, (1, 1, 1), names={"L1": 20}), "L1")
        >>> float(voi.values(ct).mean())
        150.0
        >>> voi.values(CTVolume.from_spacing(ct.hu, (1, 1, 1), origin=(0, 0, 5)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bmdqct.errors.GeometryError: the VOI of L1 was placed on a grid of shape (30, 40, 50), ...
        """
        self._check_grid(volume, "values")
        return np.asarray(volume.hu[self.slices][self.box_mask], np.float32)

    def _check_grid(self, volume, what: str) -> None:
        """Raise GeometryError unless `volume` lies on the VOI's grid."""
        if not (hasattr(volume, "shape") and hasattr(volume, "affine")):
            raise TypeError(f"VOI.{what} expects a CTVolume, got {type(volume).__name__}")
        if same_grid(self, volume):
            return
        raise GeometryError(
            f"the VOI of {self.level} was placed on a grid of shape {self.shape}, {_describe_grid(self.affine)}; "
            f"got a volume of shape {tuple(volume.shape)}, {_describe_grid(volume.affine)}. Place the VOI on "
            "this volume (vertebral_body_voi(volume, labels, level)) or resample the volume onto the VOI's "
            "grid (bmdqct.preprocess.resample_like)")

    def to_dict(self) -> dict:
        """JSON-safe summary (no arrays).

        ``frame`` is ``"LPS"``: ``center_mm`` is patient LPS mm; ``center_index``
        is the same point as (fractional) voxel indices ``[i, j, k]`` on the CT
        grid, from :attr:`affine`.
        """
        center_index = np.linalg.solve(self.affine, [*map(float, self.center_mm), 1.0])[:3]
        return {"level": self.level, "frame": "LPS",   # the frame first, beside the level it describes
                **record_dict(self, exclude=("level", "shape", "affine", "box", "box_mask"),
                              center_index=center_index, flags=[str(f) for f in self.flags])}

    def __repr__(self) -> str:
        return (f"VOI(level={self.level!r}, semi_axes=({self.semi_axis_ap_mm:.1f}, "
                f"{self.semi_axis_lr_mm:.1f}) mm, height={self.covered_height_mm:.1f} mm, "
                f"n_voxels={self.n_voxels})")


def vertebral_body_voi(volume: CTVolume, labels: VertebraLabels | LabelVolume, level: str, *,
                       protocol: VOIProtocol = DEFAULT_VOI_PROTOCOL) -> VOI:
    """Place the elliptical-cylinder VOI in one vertebral body.

    Parameters
    ----------
    volume : CTVolume
        The CT (canonical orientation; only its grid is used).
    labels : VertebraLabels or LabelVolume
        Per-level vertebral bodies on the CT grid; ``labels.names`` (or the
        levels of a :class:`~bmdqct.labeling.VertebraLabels`) must hold `level`.
    level : str
        Level name, e.g. ``"L1"``.
    protocol : VOIProtocol, optional
        VOI parameters; defaults to Pan et al.'s.

    Returns
    -------
    VOI

    Raises
    ------
    GeometryError
        If `labels` is not on the CT grid.
    KeyError
        If `level` is not labelled.
    MeasurementError
        If the body is empty, or the ellipse cannot be fitted inside it even
        shrunk to ``protocol.min_scale``.

    Notes
    -----
    See the module docstring for the construction. Semi-axes on a section of
    area ``A`` and longest row ``L``: ``b = 0.2 L`` (antero-posterior) and
    ``a = 0.3 A / (π b)`` (left-right), so that ``π a b = 0.3 A``.

    Examples
    --------
    An elliptic-cylinder body (semi-axes 15 x 20 mm, 25 mm tall) on a 1 mm grid:

    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> k, j, i = np.mgrid[:40, :50, :60]
    >>> body = (((j - 25) / 15.0) ** 2 + ((i - 30) / 20.0) ** 2 <= 1) & (k >= 5) & (k < 30)
    >>> ct = CTVolume.from_spacing(np.where(body, 150.0, 0.0), (1, 1, 1))
    >>> labels = LabelVolume.from_spacing(body * 20, (1, 1, 1), names={"L1": 20})
    >>> voi = vertebral_body_voi(ct, labels, "L1")
    >>> voi.middle_slice, voi.slice_range, voi.covered_height_mm
    (17, (13, 21), 9.0)
    >>> round(voi.semi_axis_ap_mm, 1), round(voi.semi_axis_lr_mm, 1)
    (8.2, 10.9)
    """
    if isinstance(labels, VertebraLabels):
        if level not in labels.levels:
            raise KeyError(f"level {level!r} is not labelled; labelled levels are {list(labels.levels)}")
        grid = labels.labels
        lid = labels.levels[level].label_id
        bbox = labels.levels[level].bbox
    elif isinstance(labels, LabelVolume):
        if level not in labels.names:
            raise KeyError(f"no label named {level!r}; names are {sorted(labels.names)}")
        grid = labels
        lid = labels.names[level]
        bbox = None
    else:
        raise TypeError(f"labels must be VertebraLabels or LabelVolume, got {type(labels).__name__}")
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not same_grid(volume, grid):
        raise GeometryError(f"labels must lie on the CT's grid (shape {volume.shape}), got shape {grid.shape}; "
                            "resample them with bmdqct.preprocess.resample_like(labels, ct)")
    raw = np.asarray(grid.labels)
    if bbox is None:
        found = _level_boxes(raw).get(lid)
        bbox = None if found is None else tuple((b.start, b.stop) for b in found)
    if bbox is None:
        raise MeasurementError(f"the body of {level} is empty; cannot place a VOI")
    # all work on the body's bounding box: (k0, j0, c0) is its corner in the volume
    box = tuple(slice(a, b) for a, b in bbox)
    body = raw[box] == lid
    if not body.any():
        raise MeasurementError(f"the body of {level} is empty; cannot place a VOI")
    k0, j0, c0 = (b.start for b in box)
    dz, dy, dx = volume.spacing
    flags: list[QCFlag] = []

    # 1. middle axial section: centre of the half-maximum extent of the area profile
    area = body.sum(axis=(1, 2)).astype(np.float64)
    above = np.nonzero(area >= 0.5 * area.max())[0]
    middle = 0.5 * (above[0] + above[-1])
    # between two slices: the one nearer the body's centroid (then the lower one)
    centroid_k = float(np.dot(np.arange(area.size), area) / area.sum())
    candidates = sorted({int(math.floor(middle)), int(math.ceil(middle))})
    k_local = min(candidates, key=lambda k: (abs(k - centroid_k), k))
    k_mid = k0 + k_local
    section = ndi.binary_fill_holes(body[k_local])
    section_area_mm2 = float(section.sum()) * dy * dx
    cj_local, ck_local = ndi.center_of_mass(section)
    cj, ck = j0 + cj_local, c0 + ck_local
    longest_row_mm = _longest_row(section) * dx

    # 2. ellipse: short AP semi-axis from the longest row, long LR semi-axis from the area
    b0 = protocol.ap_fraction_of_row * longest_row_mm
    a0 = protocol.area_fraction * section_area_mm2 / (math.pi * b0)

    # 3. slices within +-h/2 of the middle section (voxel centres, closed interval)
    half = int(math.floor(0.5 * protocol.height_mm / dz + 1e-6))
    k_lo, k_hi = k_mid - half, k_mid + half
    if k_lo < 0 or k_hi >= volume.shape[0]:
        raise MeasurementError(f"the {protocol.height_mm:g} mm VOI of {level} around slice {k_mid} leaves the "
                               f"scan (slices 0-{volume.shape[0] - 1}); the body is cut by the scan's edge")
    # the plane: the body's box with a ring of background (so that the margin's distance
    # transform sees the body's edge), grown to hold the unshrunk ellipse
    rj, rk = int(math.ceil(b0 / dy)) + 1, int(math.ceil(a0 / dx)) + 1
    j_lo, j_hi = max(min(j0 - 1, int(cj) - rj), 0), min(max(box[1].stop + 1, int(cj) + rj + 1), volume.shape[1])
    c_lo, c_hi = max(min(c0 - 1, int(ck) - rk), 0), min(max(box[2].stop + 1, int(ck) + rk + 1), volume.shape[2])
    inside = np.zeros((k_hi - k_lo + 1, j_hi - j_lo, c_hi - c_lo), bool)
    for i, k in enumerate(range(k_lo, k_hi + 1)):
        if box[0].start <= k < box[0].stop:
            inside[i, j0 - j_lo:box[1].stop - j_lo, c0 - c_lo:box[2].stop - c_lo] = \
                ndi.binary_fill_holes(body[k - k0])
    if protocol.margin_mm > 0:
        inside = _erode_in_plane(inside, protocol.margin_mm, (dy, dx))
    empty = [k_lo + i for i, s in enumerate(inside) if not s.any()]
    if empty:
        raise MeasurementError(f"the body of {level} does not cover the {protocol.height_mm:g} mm VOI: slices "
                               f"{empty} hold no body (height {above.size * dz:.1f} mm); a collapsed or cut body?")

    # 4.-5. voxel inclusion by centre; shrink until the ellipse stays in the body
    jj = (np.arange(j_lo, j_hi) - cj)[:, None] * dy
    kk = (np.arange(c_lo, c_hi) - ck)[None, :] * dx
    scale = 1.0
    while True:
        ellipse = (jj / (scale * b0)) ** 2 + (kk / (scale * a0)) ** 2 <= 1.0
        if not np.any(ellipse[None] & ~inside):
            break
        scale *= protocol.shrink_step
        if scale < protocol.min_scale - 1e-12:
            raise MeasurementError(
                f"the VOI of {level} leaves the body even shrunk to {protocol.min_scale:.0%} of its size "
                f"(semi-axes {b0:.1f} x {a0:.1f} mm); the body mask is irregular or tilted")
    if not ellipse.any():
        raise MeasurementError(f"the VOI of {level} holds no voxel centre (semi-axes {scale * b0:.2f} x "
                               f"{scale * a0:.2f} mm on {dy:g} x {dx:g} mm pixels)")
    if scale < 1.0:
        flags.append(QCFlag("voi_shrunk", level, f"the ellipse left the body and was shrunk to "
                                                 f"{scale:.0%} of its size"))
        logger.info("VOI of %s shrunk to %.2f", level, scale)
    rows = np.nonzero(ellipse.any(axis=1))[0]
    cols = np.nonzero(ellipse.any(axis=0))[0]
    plane = ellipse[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box_out = ((k_lo, k_hi + 1), (j_lo + int(rows[0]), j_lo + int(rows[-1]) + 1),
               (c_lo + int(cols[0]), c_lo + int(cols[-1]) + 1))
    box_mask = np.broadcast_to(plane, (k_hi - k_lo + 1, *plane.shape)).copy()
    n_voxels = int(box_mask.sum())
    center_vox = (float(k_mid), float(cj), float(ck))
    center_mm = tuple(float(v) for v in volume.index_to_world(center_vox))
    return VOI(
        level=level, shape=tuple(volume.shape), affine=volume.affine, box=box_out, box_mask=box_mask,
        center_mm=tuple(round(v, 3) for v in center_mm),
        center_vox=tuple(round(v, 3) for v in center_vox),
        semi_axis_ap_mm=float(scale * b0), semi_axis_lr_mm=float(scale * a0),
        height_mm=float(protocol.height_mm), covered_height_mm=float((k_hi - k_lo + 1) * dz),
        slice_range=(k_lo, k_hi), middle_slice=int(k_mid),
        section_area_mm2=section_area_mm2, longest_row_mm=float(longest_row_mm), scale=float(scale),
        n_voxels=n_voxels, volume_mm3=float(n_voxels * volume.voxel_volume_mm3), flags=tuple(flags))


def _describe_grid(affine) -> str:
    """'spacing (..) mm, origin (..) mm, orientation XYZ' of a voxel-to-LPS affine."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = ", ".join(f"{v:g}" for v in np.linalg.norm(affine[:3, :3], axis=0))
    origin = ", ".join(f"{v:g}" for v in affine[:3, 3])
    try:
        orientation = "".join(axis_codes(affine))
    except (ValueError, np.linalg.LinAlgError):   # a degenerate affine has no axis codes
        orientation = "?"
    return f"spacing ({spacing}) mm, origin ({origin}) mm, orientation {orientation}"


def _longest_row(section: np.ndarray) -> int:
    """Longest left-right row of a 2-D mask, in voxels (first to last voxel)."""
    rows = np.nonzero(section.any(axis=1))[0]
    if rows.size == 0:
        return 0
    sub = section[rows]
    first = np.argmax(sub, axis=1)
    last = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    return int(np.max(last - first + 1))


def _erode_in_plane(mask: np.ndarray, margin_mm: float, pixel_mm) -> np.ndarray:
    """Erode each slice of `mask` by `margin_mm` (Euclidean, in mm)."""
    out = np.empty_like(mask)
    for i, s in enumerate(mask):
        out[i] = ndi.distance_transform_edt(s, sampling=pixel_mm) > margin_mm
    return out
