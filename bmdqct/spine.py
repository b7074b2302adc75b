"""The vertebral column found from the image alone: the spinal canal and the bodies in front of it.

The spinal canal is a low-attenuation tube (cerebrospinal fluid and cord, about
0–60 HU) enclosed by bone: the vertebral body in front, the pedicles at the sides
and the laminae behind. :func:`find_spinal_canal` finds it slice by slice and
links the slices into one chain, without any segmentation network, so that the
network's crop can be centred on the column and its output checked against it.

Method
------
1. Per axial slice, bone is ``HU > bone_hu`` after a light in-plane smoothing,
   closed with a disc of ``closing_mm`` to bridge the thin gaps of a real
   neural arch. Holes of the closed bone mask (regions enclosed by bone) are
   candidates when their area is that of a canal (``canal_area_mm2``), their
   mean HU is that of fluid/soft tissue (``canal_hu``), and dense bone lies
   directly in front of them (the posterior wall of the vertebral body, mean
   HU above ``body_wall_hu`` in a strip ``wall_depth_mm`` deep).
2. Candidates are linked across slices into the best chain by dynamic
   programming over a directed acyclic graph (slice order): each candidate
   earns a reward, each step pays for in-plane displacement (the canal is
   straight to within a few mm per cm) and for slices skipped (at the
   intervertebral levels the neural arch is open and no hole is enclosed).
   Steps longer than ``max_gap_mm`` are not allowed.
3. Between the first and the last slice of the chain the canal centre is
   interpolated linearly where no hole was seen: those slices are ``valid``
   but not ``detected``.
4. The body centre is estimated in front of the canal: the centroid of the
   bone-like tissue (``HU > body_hu``) connected to the canal's anterior wall,
   within ``body_depth_mm`` in front of it, as an offset from the canal that
   is smoothed along the column.

Geometry follows :mod:`bmdqct.volume`: the volume must be canonical
(``('S', 'P', 'L')``), so ``hu[i]`` is an axial slice, rows run anterior to
posterior and the body lies at *smaller* row index than its canal.

Examples
--------
>>> import numpy as np
>>> from bmdqct.volume import CTVolume
>>> hu = np.full((20, 64, 64), 40.0)
>>> yy, xx = np.mgrid[:64, :64]
>>> ring = ((yy - 40) ** 2 + (xx - 32) ** 2 <= 14 ** 2) & ((yy - 40) ** 2 + (xx - 32) ** 2 > 8 ** 2)
>>> body = (yy - 20) ** 2 + (xx - 32) ** 2 <= 12 ** 2
>>> hu[:, ring] = 700.0
>>> hu[:, body] = 250.0
>>> canal = find_spinal_canal(CTVolume.from_spacing(hu, spacing=(2.0, 1.0, 1.0)))
>>> bool(canal.valid.all()), np.round(canal.centre_index[5]).tolist()
(True, [40.0, 32.0])
>>> bool(canal.body_centre_index[5, 0] < canal.centre_index[5, 0])
True
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ._util import worker_threads
from .errors import GeometryError, InputError
from .volume import CANONICAL_ORIENTATION, CTVolume

__all__ = [
    "SpinalCanal",
    "find_disc_planes",
    "find_sacrum",
    "find_spinal_canal",
    "distance_to_canal_mm",
    "column_mask",
]

logger = logging.getLogger(__name__)


def _readonly(array, dtype) -> np.ndarray:
    out = np.array(array, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class SpinalCanal:
    """The spinal canal and the vertebral-body line in front of it, per axial slice.

    Attributes
    ----------
    centre_index : (I, 2) ndarray
        Canal centre ``(row, column)`` in voxel indices of each axial slice
        ``hu[i]`` (row: anterior to posterior, column: right to left); NaN where
        not ``valid``.
    centre_mm : (I, 3) ndarray
        The same point in patient LPS mm; NaN where not ``valid``.
    valid : (I,) ndarray of bool
        Slices between the first and last slice where the canal was seen.
    detected : (I,) ndarray of bool
        Slices where an enclosed canal was actually seen (``valid`` also holds
        the slices in between, interpolated).
    diameter_mm : (I,) ndarray
        Equivalent diameter of the canal's cross-section where detected, else NaN.
    body_centre_index : (I, 2) ndarray
        Estimated centre of the vertebral body (or disc) in front of the canal,
        ``(row, column)``; NaN where not ``valid``.
    body_centre_mm : (I, 3) ndarray
        The same in LPS mm.
    spacing : tuple of float
        Voxel spacing (mm) of the volume the canal was found in.

    Examples
    --------
    >>> c = SpinalCanal.empty((3, 8, 8), np.eye(4))
    >>> c.n_valid, c.length_mm
    (0, 0.0)
    """

    centre_index: np.ndarray = field(repr=False)
    centre_mm: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    detected: np.ndarray = field(repr=False)
    diameter_mm: np.ndarray = field(repr=False)
    body_centre_index: np.ndarray = field(repr=False)
    body_centre_mm: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        for name, dtype in (("centre_index", np.float64), ("centre_mm", np.float64),
                            ("valid", bool), ("detected", bool), ("diameter_mm", np.float64),
                            ("body_centre_index", np.float64), ("body_centre_mm", np.float64)):
            object.__setattr__(self, name, _readonly(getattr(self, name), dtype))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @classmethod
    def empty(cls, shape, affine) -> SpinalCanal:
        """A canal that was not found anywhere in a volume of `shape`."""
        n = int(shape[0])
        spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
        nan2, nan3 = np.full((n, 2), np.nan), np.full((n, 3), np.nan)
        return cls(nan2, nan3, np.zeros(n, bool), np.zeros(n, bool), np.full(n, np.nan),
                   nan2, nan3, spacing)

    @property
    def n_valid(self) -> int:
        """Number of axial slices on which the canal is known."""
        return int(self.valid.sum())

    @property
    def length_mm(self) -> float:
        """Cranio-caudal extent of the valid chain, in mm."""
        if not self.valid.any():
            return 0.0
        idx = np.flatnonzero(self.valid)
        return float((idx[-1] - idx[0]) * self.spacing[0])

    @property
    def found(self) -> bool:
        """True when a chain of at least 3 detected slices was found."""
        return int(self.detected.sum()) >= 3

    def __repr__(self) -> str:
        return (f"SpinalCanal(valid={self.n_valid}/{self.valid.size} slices, "
                f"detected={int(self.detected.sum())}, length={self.length_mm:.0f} mm)")


#: Unit directions (row, column) of the rays cast from each pixel.
_N_RAYS = 16
_RAYS = np.stack([np.cos(np.linspace(0, 2 * np.pi, _N_RAYS, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, _N_RAYS, endpoint=False))], axis=1)


@functools.lru_cache(maxsize=8)
def _ray_offsets(max_steps: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per ray, the distinct pixel offsets of its steps 1 .. `max_steps` (rounded)."""
    steps = np.arange(1, max_steps + 1)
    return tuple(tuple(dict.fromkeys(zip(np.rint(dy * steps).astype(int).tolist(),
                                         np.rint(dx * steps).astype(int).tolist())))
                 for dy, dx in _RAYS)


def _ray_hits(bone: np.ndarray, max_steps: int) -> np.ndarray:
    """Number of the 16 rays from each pixel of a 2-D mask that meet `bone` within `max_steps`."""
    ny, nx = bone.shape
    pad = max_steps + 1
    padded = np.pad(bone, pad)
    count = np.zeros(bone.shape, np.int16)
    hit = np.empty(bone.shape, bool)
    for offsets in _ray_offsets(max_steps):
        hit[:] = False
        for oy, ox in offsets:
            hit |= padded[pad + oy:pad + oy + ny, pad + ox:pad + ox + nx]
        count += hit
    return count


def _slice_candidates(grid2d, spacing_g, *, hit_hu, dense_hu, ray_mm, min_rays, min_dense_rays,
                      canal_area_mm2,
                      canal_hu, body_wall_hu, wall_depth_mm):
    """Low-HU regions of one axial slice enclosed by bone: list of (row, col, area_mm2, score).

    `grid2d` is the smoothed slice on an isotropic in-plane grid of `spacing_g` mm;
    rows and columns returned are in that grid.
    """
    dense = grid2d > dense_hu
    if dense.sum() < 4:
        return []
    fluid = (grid2d > canal_hu[0] - 60.0) & (grid2d < canal_hu[1] + 10.0)
    if not fluid.any():
        return []
    steps = max(int(round(ray_mm / spacing_g)), 2)
    enclosed = (fluid & (_ray_hits(grid2d > hit_hu, steps) >= min_rays)
                & (_ray_hits(dense, steps + 2) >= min_dense_rays))
    lab, n = ndimage.label(enclosed)
    if n == 0:
        return []
    px_mm2 = spacing_g * spacing_g
    idx = np.arange(1, n + 1)
    area = ndimage.sum(enclosed, lab, idx) * px_mm2
    lo_area, hi_area = canal_area_mm2
    objects = ndimage.find_objects(lab)
    depth = max(int(round(wall_depth_mm / spacing_g)), 1)
    out = []
    for q in np.flatnonzero((area >= lo_area) & (area <= hi_area)):
        sl = objects[q]
        rr, cc = np.nonzero(lab[sl] == q + 1)
        rr, cc = rr + sl[0].start, cc + sl[1].start
        h_mm = (rr.max() - rr.min() + 1) * spacing_g
        w_mm = (cc.max() - cc.min() + 1) * spacing_g
        if max(h_mm, w_mm) > 3.0 * min(h_mm, w_mm) + 2 * spacing_g:
            continue  # a slit, not a tube
        mean_hu = float(grid2d[rr, cc].mean())
        if not canal_hu[0] <= mean_hu <= canal_hu[1]:
            continue
        # Back wall of the vertebral body: dense tissue just in front (smaller row) of the region.
        cols = np.unique(cc)
        fronts = np.array([rr[cc == c].min() for c in cols])
        wall = [grid2d[max(r0 - depth, 0):r0, c] for r0, c in zip(fronts, cols) if r0 > 0]
        if not wall:
            continue
        wall_hu = float(np.mean(np.concatenate(wall)))
        if wall_hu < body_wall_hu or wall_hu - mean_hu < 50.0:
            continue
        size_term = -abs(np.log(area[q] / 200.0))
        hu_term = -abs(mean_hu - 30.0) / 60.0
        wall_term = min((wall_hu - body_wall_hu) / 150.0, 1.0)
        score = 2.0 + size_term + hu_term + wall_term
        out.append((float(rr.mean()), float(cc.mean()), float(area[q]), float(score)))
    return out


def _best_chain(cands, spacing, *, max_gap_mm, step_sigma_mm, skip_cost):
    """Most rewarding chain through per-slice candidates (DAG dynamic programming)."""
    sz, sy, sx = spacing
    nodes = [(k, r, c, a, s) for k, lst in enumerate(cands) for (r, c, a, s) in lst]
    if not nodes:
        return []
    nodes.sort(key=lambda t: t[0])
    n = len(nodes)
    best = np.array([t[4] for t in nodes], dtype=float)
    prev = np.full(n, -1)
    max_gap = max(int(np.floor(max_gap_mm / sz)), 1)
    ks = np.array([t[0] for t in nodes])
    for j in range(n):
        kj, rj, cj = nodes[j][:3]
        lo = np.searchsorted(ks, kj - max_gap, side="left")
        for i in range(lo, j):
            ki, ri, ci = nodes[i][:3]
            dk = kj - ki
            if dk <= 0:
                continue
            d_mm = np.hypot((rj - ri) * sy, (cj - ci) * sx)
            dz = dk * sz
            if d_mm > 8.0 + 0.6 * dz:
                continue
            cost = (d_mm / step_sigma_mm) ** 2 / max(dz / 3.0, 1.0) + skip_cost * (dk - 1) * sz / 3.0
            val = best[i] + nodes[j][4] - cost
            if val > best[j]:
                best[j], prev[j] = val, i
    j = int(np.argmax(best))
    chain = []
    while j >= 0:
        chain.append(nodes[j])
        j = int(prev[j])
    return chain[::-1]


def find_spinal_canal(volume: CTVolume, *, hit_hu: float = 95.0, dense_hu: float = 250.0,
                      ray_mm: float = 16.0, min_rays: int = 14, min_dense_rays: int = 5,
                      grid_mm: float = 1.5,
                      canal_area_mm2: tuple[float, float] = (35.0, 650.0),
                      canal_hu: tuple[float, float] = (-60.0, 60.0),
                      body_wall_hu: float = 90.0, wall_depth_mm: float = 8.0,
                      body_hu: float = 90.0, body_depth_mm: float = 60.0,
                      max_gap_mm: float = 36.0) -> SpinalCanal:
    """Find the spinal canal and the vertebral-body line in front of it.

    Parameters
    ----------
    volume : CTVolume
        A canonical (``('S', 'P', 'L')``) CT volume in HU.
    hit_hu : float, optional
        Tissue above this HU stops a ray (bone: cortex, neural arch, trabecular body).
    dense_hu : float, optional
        Dense bone (cortex, neural arch); at least `min_dense_rays` rays must meet it.
    ray_mm : float, optional
        Length of the 16 rays cast in-plane from each fluid-dense pixel; a pixel is
        enclosed when at least `min_rays` of them meet bone. Rays tolerate the
        thin gaps of a real, partial-volumed neural arch that a hole-filling
        test would not.
    min_rays : int, optional
        Rays (of 16) that must meet bone.
    min_dense_rays : int, optional
        Rays (of 16) that must meet dense bone.
    grid_mm : float, optional
        In-plane grid on which the search runs (finer slices are resampled to it).
    canal_area_mm2 : (float, float), optional
        Accepted cross-sectional area of the enclosed region.
    canal_hu : (float, float), optional
        HU range of the canal's content (fluid, cord, epidural fat).
    body_wall_hu : float, optional
        Minimum mean HU of the strip in front of the canal (the body's back wall).
    wall_depth_mm : float, optional
        Depth of that strip.
    body_hu : float, optional
        Threshold of the tissue counted as vertebral body/disc for the body centre.
    body_depth_mm : float, optional
        How far in front of the canal the body centre is looked for.
    max_gap_mm : float, optional
        Longest run along the column without an enclosed canal that is bridged.

    Returns
    -------
    SpinalCanal
        Empty (``found`` False) when no canal chain is seen.

    Raises
    ------
    GeometryError
        If `volume` is not canonical.
    InputError
        If `volume` is not a :class:`~bmdqct.volume.CTVolume`.
    """
    if not isinstance(volume, CTVolume):
        raise InputError(f"find_spinal_canal expects a CTVolume, got {type(volume).__name__}")
    if tuple(volume.orientation) != CANONICAL_ORIENTATION:
        raise GeometryError(
            f"find_spinal_canal needs a canonical ('S', 'P', 'L') volume, got "
            f"{volume.orientation}; pass it through bmdqct.volume.to_canonical first")
    spacing = volume.spacing
    sz, sy, sx = spacing
    hu = volume.hu
    n, ny, nx = hu.shape
    g = max(float(grid_mm), sy, sx)
    my, mx = max(int(round(ny * sy / g)), 2), max(int(round(nx * sx / g)), 2)
    fy, fx = (ny - 1) / (my - 1), (nx - 1) / (mx - 1)  # grid index -> volume index
    sigma = (0.5 * g / sy if g > 1.2 * sy else 0.0, 0.5 * g / sx if g > 1.2 * sx else 0.0)
    grid = np.empty((n, my, mx), np.float32)

    def to_grid(k):
        sl = ndimage.gaussian_filter(hu[k], sigma) if max(sigma) > 0 else hu[k]
        # grid index -> volume index is (fy, fx) * index: an exact output shape, unlike zoom
        grid[k] = (ndimage.affine_transform(sl, (fy, fx), output_shape=(my, mx), order=1, mode="nearest")
                   if (my, mx) != (ny, nx) else sl)

    # scipy.ndimage releases the GIL: the slices are filtered on every usable core
    with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
        list(pool.map(to_grid, range(n)))
    cands = [
        [(r * fy, c * fx, a, sc) for (r, c, a, sc) in _slice_candidates(
            grid[k], g, hit_hu=hit_hu, dense_hu=dense_hu, ray_mm=ray_mm, min_rays=min_rays,
            min_dense_rays=min_dense_rays,
            canal_area_mm2=canal_area_mm2, canal_hu=canal_hu, body_wall_hu=body_wall_hu,
            wall_depth_mm=wall_depth_mm)]
        for k in range(n)
    ]
    chain = _best_chain(cands, spacing, max_gap_mm=max_gap_mm, step_sigma_mm=3.0, skip_cost=0.15)
    if len(chain) < 2:
        logger.info("no spinal canal chain found (%d candidate slices)",
                    sum(bool(c) for c in cands))
        return SpinalCanal.empty(hu.shape, volume.affine)
    ks = np.array([t[0] for t in chain])
    rows = np.array([t[1] for t in chain])
    cols = np.array([t[2] for t in chain])
    areas = np.array([t[3] for t in chain])
    valid = np.zeros(n, bool)
    valid[ks[0]:ks[-1] + 1] = True
    detected = np.zeros(n, bool)
    detected[ks] = True
    kk = np.arange(n)
    centre = np.full((n, 2), np.nan)
    centre[valid, 0] = np.interp(kk[valid], ks, rows)
    centre[valid, 1] = np.interp(kk[valid], ks, cols)
    diameter = np.full(n, np.nan)
    diameter[ks] = 2.0 * np.sqrt(areas / np.pi)
    body = _body_line(grid, centre / np.array([fy, fx]), valid, diameter, (sz, g, g),
                      body_hu=body_hu, body_depth_mm=body_depth_mm) * np.array([fy, fx])
    canal = SpinalCanal(centre, _to_mm(volume, centre), valid, detected, diameter, body,
                        _to_mm(volume, body), spacing)
    logger.info("spinal canal: %r", canal)
    return canal


def _to_mm(volume, centre_index):
    n = centre_index.shape[0]
    ijk = np.column_stack([np.arange(n, dtype=float), centre_index])
    out = volume.index_to_world(np.nan_to_num(ijk))
    out[~np.isfinite(centre_index).all(axis=1)] = np.nan
    return out


def _body_line(smooth, centre, valid, diameter, spacing, *, body_hu, body_depth_mm):
    """Body centre in front of the canal: centroid of body-like tissue touching the canal's front."""
    sz, sy, sx = spacing
    n, ny, nx = smooth.shape
    offsets = np.full((n, 2), np.nan)
    depth = int(round(body_depth_mm / sy))
    half_w = int(round(25.0 / sx))
    med_d = float(np.nanmedian(diameter)) if np.isfinite(diameter).any() else 15.0
    for k in np.flatnonzero(valid):
        r0, c0 = centre[k]
        front = int(round(r0 - 0.5 * med_d / sy))
        r_lo, r_hi = max(front - depth, 0), max(min(front + 1, ny), 0)
        c_lo, c_hi = max(int(round(c0)) - half_w, 0), min(int(round(c0)) + half_w + 1, nx)
        if r_hi - r_lo < 3 or c_hi - c_lo < 3:
            continue
        win = smooth[k, r_lo:r_hi, c_lo:c_hi] > body_hu
        lab, m = ndimage.label(win)
        if m == 0:
            continue
        # The component touching the window's back edge (the canal's front wall) nearest the midline.
        back = lab[-3:, :]
        ids = np.unique(back[back > 0])
        if ids.size == 0:
            continue
        sizes = ndimage.sum(win, lab, ids)
        q = ids[int(np.argmax(sizes))]
        rr, cc = np.nonzero(lab == q)
        if rr.size * sy * sx < 80.0:
            continue
        offsets[k] = (rr.mean() + r_lo - r0, cc.mean() + c_lo - c0)
    body = np.full((n, 2), np.nan)
    ok = np.isfinite(offsets).all(axis=1)
    if not ok.any():
        # No body seen: a typical 22 mm in front of the canal centre.
        body[valid] = centre[valid] - np.array([22.0 / sy, 0.0])
        return body
    kk = np.arange(n)
    smooth_off = np.zeros((n, 2))
    win = max(int(round(30.0 / sz)), 1)
    okk = np.flatnonzero(ok)
    for k in np.flatnonzero(valid):
        near = okk[np.abs(okk - k) <= win]
        if near.size == 0:
            near = okk[np.argsort(np.abs(okk - k))[:3]]
        smooth_off[k] = np.median(offsets[near], axis=0)
    body[valid] = centre[valid] + smooth_off[valid]
    del kk
    return body


def distance_to_canal_mm(canal: SpinalCanal, point_index) -> float:
    """In-plane distance (mm) from a voxel-index point ``(i, j, k)`` to the canal on its slice.

    NaN when the slice is outside the canal's valid range.

    Examples
    --------
    >>> import numpy as np
    >>> c = SpinalCanal(np.array([[10.0, 10.0]]), np.zeros((1, 3)), [True], [True], [15.0],
    ...                 np.array([[0.0, 10.0]]), np.zeros((1, 3)), (3.0, 0.5, 0.5))
    >>> distance_to_canal_mm(c, (0, 10, 16))
    3.0
    """
    i, j, k = (float(v) for v in point_index)
    s = int(round(i))
    if s < 0 or s >= canal.valid.size or not canal.valid[s]:
        return float("nan")
    r, c = canal.centre_index[s]
    return float(np.hypot((j - r) * canal.spacing[1], (k - c) * canal.spacing[2]))


def column_mask(canal: SpinalCanal, shape, *, radius_mm: float = 35.0) -> np.ndarray:
    """Boolean mask of a cylinder of `radius_mm` around the body line, on valid slices.

    The vertebral bodies lie inside it; organs in front of or beside the
    column do not. Shape is the volume's shape ``(I, J, K)``.

    Examples
    --------
    >>> import numpy as np
    >>> c = SpinalCanal(np.array([[8.0, 5.0]]), np.zeros((1, 3)), [True], [True], [4.0],
    ...                 np.array([[4.0, 5.0]]), np.zeros((1, 3)), (1.0, 1.0, 1.0))
    >>> m = column_mask(c, (1, 10, 10), radius_mm=2.0)
    >>> int(m.sum()), bool(m[0, 4, 5])
    (13, True)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[0] != canal.valid.size:
        raise InputError(f"column_mask: shape must be (I, J, K) with I = {canal.valid.size}, "
                         f"got {shape}")
    _, sy, sx = canal.spacing
    yy, xx = np.mgrid[:shape[1], :shape[2]]
    out = np.zeros(shape, bool)
    for k in np.flatnonzero(canal.valid):
        r, c = canal.body_centre_index[k]
        if not np.isfinite(r):
            continue
        out[k] = ((yy - r) * sy) ** 2 + ((xx - c) * sx) ** 2 <= radius_mm ** 2
    return out


def find_disc_planes(volume: CTVolume, canal: SpinalCanal, *, core_mm: float = 6.0,
                     min_body_mm: float = 12.0, prominence_hu: float = 20.0,
                     endplate_gap_mm: float = 12.0) -> np.ndarray:
    """Candidate axial slices of the intervertebral discs along the column, from the image alone.

    The CT is sampled along the body line (:attr:`SpinalCanal.body_centre_index`):
    the median HU of a disc of radius `core_mm` about the line on each valid
    slice, smoothed along the column (1.5 mm). Discs lie between the dense
    endplates of two bodies: they are the minima of this profile that stand
    out by `prominence_hu` and lie at least `min_body_mm` apart (the smallest
    body plus a disc), and whose flanking maxima (the endplates) lie at most
    `endplate_gap_mm` plus two slice spacings apart (partial volume widens
    each endplate by about a slice): the trabecular middle of a body is a
    minimum too, but between its own endplates, a body height apart.

    The minima include, on thick slices and in low-density bone, the
    trabecular middle of some bodies; the labelling therefore cuts a segmented
    component at these planes only where it is too tall to be one body.

    Parameters
    ----------
    volume : CTVolume
        Canonical CT in HU.
    canal : SpinalCanal
        From :func:`find_spinal_canal` on the same volume.
    core_mm, min_body_mm, prominence_hu : float, optional
        See above.

    Returns
    -------
    ndarray of int
        Slice indices, increasing (caudal first); empty when the canal was
        not found.

    Examples
    --------
    Bodies of 24 mm with 2 mm endplates (500 HU) and discs of 6 mm (80 HU)
    on 2 mm slices, with a canal given by hand:

    >>> import numpy as np
    >>> hu = np.full((60, 20, 20), 250.0)
    >>> for z0 in (14, 29, 44):
    ...     hu[z0 - 1] = hu[z0 + 3] = 500.0
    ...     hu[z0:z0 + 3] = 80.0
    >>> n = hu.shape[0]
    >>> c = SpinalCanal(np.tile([15.0, 10.0], (n, 1)), np.zeros((n, 3)), np.ones(n, bool),
    ...                 np.ones(n, bool), np.full(n, 12.0), np.tile([6.0, 10.0], (n, 1)),
    ...                 np.zeros((n, 3)), (2.0, 1.0, 1.0))
    >>> find_disc_planes(CTVolume.from_spacing(hu, (2.0, 1.0, 1.0)), c).tolist()
    [15, 30, 45]
    """
    from scipy.signal import argrelextrema, find_peaks

    valid = np.flatnonzero(canal.valid & np.isfinite(canal.body_centre_index).all(axis=1))
    if valid.size < 3:
        return np.array([], int)
    sz, sy, sx = volume.spacing
    ry, rx = max(int(core_mm / sy), 1), max(int(core_mm / sx), 1)
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    disk = (yy * sy) ** 2 + (xx * sx) ** 2 <= core_mm ** 2
    dy, dx = yy[disk], xx[disk]
    hu = volume.hu
    n, ny, nx = hu.shape
    profile = np.full(n, np.nan)
    for k in valid:
        r, c = (int(round(v)) for v in canal.body_centre_index[k])
        profile[k] = float(np.median(np.asarray(hu[k])[np.clip(r + dy, 0, ny - 1), np.clip(c + dx, 0, nx - 1)]))
    span = np.arange(valid[0], valid[-1] + 1)
    known = np.isfinite(profile[span])
    filled = np.interp(span, span[known], profile[span][known])
    smooth = ndimage.gaussian_filter1d(filled, 1.5 / sz, mode="nearest")
    minima, _ = find_peaks(-smooth, distance=max(int(round(min_body_mm / sz)), 1), prominence=prominence_hu)
    # a disc lies between two endplates: the maxima on either side of it are close; the
    # trabecular middle of a body lies between its own endplates, a body height apart
    maxima = argrelextrema(smooth, np.greater, order=1)[0]
    keep = []
    for m in minima:
        left, right = maxima[maxima < m], maxima[maxima > m]
        if left.size and right.size and (right[0] - left[-1]) * sz > endplate_gap_mm + 2.0 * sz:
            continue
        keep.append(m)
    return span[np.array(keep, int)].astype(int)


def find_sacrum(volume: CTVolume, canal: SpinalCanal, *, below: int | None = None, bone_hu: float = 150.0,
                wide_mm: float = 130.0, wing_mm2: float = 300.0) -> int | None:
    """Axial slice of the top of the sacrum (S1) below the column, from the image alone; None if not seen.

    Below the lumbar spine the column's bone widens abruptly: the sacral alae
    join the iliac bones at the sacroiliac joints, so the bone connected to
    the column spans far more than a lumbar vertebra with its transverse
    processes (under 100 mm). Slice by slice from `below` (default the lowest
    valid slice of the canal) down, bone (CT blurred by 1 mm above `bone_hu`)
    touching the column (a box from 40 mm in front of the body line to 30 mm
    behind the canal, 30 mm to either side) is measured across; the top of the
    sacrum is the first slice from which at least 3 of 4 consecutive slices
    span `wide_mm` or more. To tell the pelvis from a rib cage (ribs joined to
    their vertebrae are wide too) the iliac wings must be seen within 40 mm
    above that slice: a bone region of `wing_mm2` or more on each side, more
    than 50 mm from the column and not joined to it.

    Parameters
    ----------
    volume : CTVolume
        Canonical CT in HU.
    canal : SpinalCanal
        From :func:`find_spinal_canal` on the same volume (the column's position
        below its lowest valid slice is taken from that slice).
    below : int, optional
        First slice to look at (going down), e.g. the lowest slice of the
        lowest labelled body.
    bone_hu, wide_mm, wing_mm2 : float, optional
        See above.

    Returns
    -------
    int or None
    """
    valid = np.flatnonzero(canal.valid & np.isfinite(canal.body_centre_index).all(axis=1))
    if valid.size == 0:
        return None
    k_ref = int(valid[0])
    start = k_ref if below is None else min(int(below), volume.shape[0] - 1)
    sz, sy, sx = volume.spacing
    by, bx = canal.body_centre_index[k_ref]
    cy = canal.centre_index[k_ref, 0]
    r0, r1 = max(int(by - 40.0 / sy), 0), int(cy + 30.0 / sy)
    c0, c1 = max(int(bx - 30.0 / sx), 0), int(bx + 30.0 / sx)
    pixel_mm2 = sy * sx
    wide, wings = {}, {}
    for k in range(start, -1, -1):
        bone = ndimage.gaussian_filter(np.asarray(volume.hu[k], np.float32), 1.0 / np.array([sy, sx])) > bone_hu
        lab, n = ndimage.label(bone)
        if n == 0:
            wide[k], wings[k] = False, False
            continue
        ids = np.unique(lab[r0:r1, c0:c1])
        ids = ids[ids > 0]
        column = np.isin(lab, ids)
        cols = np.flatnonzero(column.any(axis=0))
        wide[k] = bool(cols.size) and (cols[-1] - cols[0] + 1) * sx >= wide_mm and \
            (bx - cols[0]) * sx >= 50.0 and (cols[-1] - bx) * sx >= 50.0
        sides = set()
        areas = ndimage.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1)) * pixel_mm2
        centres = ndimage.center_of_mass(bone, lab, np.arange(1, n + 1))
        for i, (area, centre) in enumerate(zip(areas, centres), start=1):
            if i in ids or area < wing_mm2:
                continue
            offset = (centre[1] - bx) * sx
            if abs(offset) > 50.0:
                sides.add(np.sign(offset))
        wings[k] = len(sides) == 2
    window = max(int(round(40.0 / sz)), 1)
    for k in range(start, 2, -1):
        run = [wide.get(k - i, False) for i in range(4)]
        if sum(run) >= 3 and run[0]:
            if any(wings.get(k + i, False) for i in range(0, window + 1)):
                return int(k)
    return None
