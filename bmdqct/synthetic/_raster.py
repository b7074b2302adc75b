"""Rasterization of analytic shapes defined in continuous millimetres (private).

Every shape is a signed distance ``sd`` in mm (negative inside) evaluated at
voxel centres inside the shape's bounding box only. The painted fraction of a
voxel is a linear ramp ``clip(0.5 - sd / w, 0, 1)`` whose width ``w`` is the
voxel's extent along the surface normal, ``sqrt(px² (1 - nz²) + sz² nz²)``: a box
filter of the voxel, so any grid samples the same continuous subject with
partial-volume edges. Painting composites ``hu += f * (value - hu)``.

World coordinates here are LPS mm as ``(x, y, z)`` tuples; array axes are
``(z, y, x)`` (canonical S, P, L).
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-6


class Grid:
    """Canonical voxel grid: shape (nz, ny, nx), spacing (sz, sy, sx) mm, origin (x, y, z) mm."""

    def __init__(self, shape, spacing, origin_xyz):
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = tuple(float(o) for o in origin_xyz)
        nz, ny, nx = self.shape
        sz, sy, sx = self.spacing
        self.z = (self.origin[2] + sz * np.arange(nz)).astype(np.float64)
        self.y = (self.origin[1] + sy * np.arange(ny)).astype(np.float64)
        self.x = (self.origin[0] + sx * np.arange(nx)).astype(np.float64)

    @property
    def pixel_mm(self) -> float:
        return 0.5 * (self.spacing[1] + self.spacing[2])

    def box(self, lo_xyz, hi_xyz):
        """Index slices (z, y, x) of voxel centres inside the world box, or None."""
        out = []
        for axis, coords, lo, hi in ((0, self.z, lo_xyz[2], hi_xyz[2]),
                                     (1, self.y, lo_xyz[1], hi_xyz[1]),
                                     (2, self.x, lo_xyz[0], hi_xyz[0])):
            step = self.spacing[axis]
            start = max(0, int(math.ceil((lo - coords[0]) / step - 1e-9)))
            stop = min(coords.size, int(math.floor((hi - coords[0]) / step + 1e-9)) + 1)
            if stop <= start:
                return None
            out.append(slice(start, stop))
        return tuple(out)

    def coords(self, box):
        """World coordinates of a box as broadcastable float32 arrays Z, Y, X."""
        z = self.z[box[0]].astype(np.float32)[:, None, None]
        y = self.y[box[1]].astype(np.float32)[None, :, None]
        x = self.x[box[2]].astype(np.float32)[None, None, :]
        return z, y, x

    def ramp_width(self, nz2):
        """Ramp width (mm) for a surface whose unit normal has squared z-component nz2."""
        px2 = np.float32(self.pixel_mm ** 2)
        sz2 = np.float32(self.spacing[0] ** 2)
        return np.sqrt(px2 + (sz2 - px2) * nz2)


def coverage(sd, width):
    """Fraction of a voxel inside a shape from its signed distance (mm) and ramp width (mm)."""
    f = np.float32(0.5) - sd / width
    np.clip(f, 0.0, 1.0, out=f)
    return f


def paint(hu, box, fraction, value):
    """Composite ``value`` (scalar or array) into ``hu[box]`` with the given fraction."""
    sub = hu[box]
    sub += fraction * (np.float32(value) - sub) if np.isscalar(value) else fraction * (value - sub)


def _local(z, y, x, center, frame):
    """Local coordinates of world points in a frame whose rows are unit vectors (x, y, z comps)."""
    dx, dy, dz = x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2])
    out = []
    for row in frame:
        out.append(np.float32(row[0]) * dx + np.float32(row[1]) * dy + np.float32(row[2]) * dz)
    return out


def ellipsoid_sd(grid, box, center, frame, radii):
    """Signed distance (mm) and ramp width for an ellipsoid; frame rows are its axes (x, y, z)."""
    z, y, x = grid.coords(box)
    q = _local(z, y, x, center, frame)
    r = [np.float32(v) for v in radii]
    g2 = (q[0] / r[0]) ** 2 + (q[1] / r[1]) ** 2 + (q[2] / r[2]) ** 2
    dist = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    g = np.sqrt(np.maximum(g2, _EPS))
    sd = dist * (1.0 - 1.0 / g)
    # surface normal ~ gradient of the quadratic form; its z component sets the ramp width
    n = [q[i] / (r[i] * r[i]) for i in range(3)]
    nzc = sum(np.float32(frame[i][2]) * n[i] for i in range(3))
    nn2 = n[0] ** 2 + n[1] ** 2 + n[2] ** 2 + np.float32(_EPS)
    return sd, grid.ramp_width(nzc * nzc / nn2)


def ellipsoid_box(center, frame, radii, pad):
    """World bounding box (lo, hi) of an ellipsoid plus `pad` mm."""
    frame = np.asarray(frame, dtype=np.float64)
    ext = np.sqrt(((frame * np.asarray(radii, dtype=np.float64)[:, None]) ** 2).sum(axis=0)) + pad
    c = np.asarray(center, dtype=np.float64)
    return c - ext, c + ext


def capsule_sd(grid, box, p0, p1, e1, radii0, radii1):
    """Elliptic capsule: segment p0->p1 swept by an ellipse (radii along e1 and t x e1), tapered.

    Returns (sd, width, tau) with tau the unclamped position along the segment (0 at p0,
    1 at p1); consecutive segments of a chain partition space by ``0 <= tau < 1``.
    """
    z, y, x = grid.coords(box)
    p0 = np.asarray(p0, dtype=np.float64)
    axis = np.asarray(p1, dtype=np.float64) - p0
    length = float(np.linalg.norm(axis))
    t = axis / max(length, _EPS)
    e1 = np.asarray(e1, dtype=np.float64)
    e1 = e1 - t * float(e1 @ t)
    e1 /= max(float(np.linalg.norm(e1)), _EPS)
    e2 = np.array([t[1] * e1[2] - t[2] * e1[1], t[2] * e1[0] - t[0] * e1[2], t[0] * e1[1] - t[1] * e1[0]])
    dx, dy, dz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
    along = np.float32(t[0]) * dx + np.float32(t[1]) * dy + np.float32(t[2]) * dz
    tau_raw = along / np.float32(max(length, _EPS))
    tau = np.clip(tau_raw, 0.0, 1.0)
    c = along - tau * np.float32(length)
    a = np.float32(e1[0]) * dx + np.float32(e1[1]) * dy + np.float32(e1[2]) * dz
    b = np.float32(e2[0]) * dx + np.float32(e2[1]) * dy + np.float32(e2[2]) * dz
    ra = np.float32(radii0[0]) + tau * np.float32(radii1[0] - radii0[0])
    rb = np.float32(radii0[1]) + tau * np.float32(radii1[1] - radii0[1])
    rc = np.minimum(ra, rb)
    g2 = (a / ra) ** 2 + (b / rb) ** 2 + (c / rc) ** 2
    g = np.sqrt(np.maximum(g2, _EPS))
    dist = np.sqrt(a * a + b * b + c * c)
    sd = dist * (1.0 - 1.0 / g)
    na, nb, nc = a / (ra * ra), b / (rb * rb), c / (rc * rc)
    nzc = np.float32(e1[2]) * na + np.float32(e2[2]) * nb + np.float32(t[2]) * nc
    nn2 = na * na + nb * nb + nc * nc + np.float32(_EPS)
    return sd, grid.ramp_width(nzc * nzc / nn2), tau_raw


class TubeField:
    """Minimum signed distance of a chain of elliptic capsules on a shared bounding box."""

    def __init__(self, grid, lo, hi):
        self.grid = grid
        self.box = grid.box(lo, hi)
        if self.box is None:
            self.sd = None
            return
        shape = tuple(s.stop - s.start for s in self.box)
        self.sd = np.full(shape, np.float32(1e4), dtype=np.float32)
        self.width = np.full(shape, np.float32(grid.pixel_mm), dtype=np.float32)
        self.param = np.zeros(shape, dtype=np.float32)

    def add(self, p0, p1, e1, radii0, radii1, pad, param0=0.0, param1=1.0):
        """Union with one capsule; `param` records the position along the chain (param0..param1)."""
        if self.sd is None:
            return
        r = max(radii0[0], radii0[1], radii1[0], radii1[1]) + pad
        lo = np.minimum(p0, p1) - r
        hi = np.maximum(p0, p1) + r
        sub = self.grid.box(lo, hi)
        if sub is None:
            return
        sub = tuple(slice(max(s.start, b.start), min(s.stop, b.stop)) for s, b in zip(sub, self.box))
        if any(s.stop <= s.start for s in sub):
            return
        sd, width, tau = capsule_sd(self.grid, sub, p0, p1, e1, radii0, radii1)
        tau = np.clip(tau, 0.0, 1.0)
        local = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, self.box))
        cur = self.sd[local]
        better = sd < cur
        cur[better] = sd[better]
        self.width[local][better] = width[better]
        self.param[local][better] = (np.float32(param0) + tau * np.float32(param1 - param0))[better]


def polyline_frames(points):
    """Unit tangents of a polyline (n, 3) at its segments."""
    points = np.asarray(points, dtype=np.float64)
    d = np.diff(points, axis=0)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), _EPS)


def smooth_polyline(points, n_out):
    """Resample a polyline with a Catmull-Rom spline to `n_out` points (continuous mm)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        t = np.linspace(0, 1, n_out)[:, None]
        return p[0] * (1 - t) + p[-1] * t
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    seg_len = np.linalg.norm(np.diff(p, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    s = np.linspace(0.0, cum[-1], n_out)
    idx = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(p) - 2)
    u = ((s - cum[idx]) / np.maximum(seg_len[idx], _EPS))[:, None]
    p0, p1, p2, p3 = ext[idx], ext[idx + 1], ext[idx + 2], ext[idx + 3]
    return 0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3)
