"""Soft tissue around the spine: diaphragmatic crura and a soft-tissue texture (private).

The crura are painted after the torso pass and before the organs (the aorta runs
between them), the texture after the organs and before the skeleton (which
overwrites everything inside the bones), only when
the appearance options ask for them (``fat_planes``, ``soft_texture_hu``), so the
classic appearance is unchanged. The other fat planes live with their muscles: psoas
and quadratus lumborum sheaths in ``_organs``, prevertebral fat and the septa of the
erector spinae in ``_render``.
"""

from __future__ import annotations

import math

import numpy as np

#: Smoothness of the soft-tissue texture (FWHM, mm).
SOFT_TEXTURE_FWHM_MM = 5.0


class SoftTissue:
    """Paints the paraspinal soft tissue of a :class:`~bmdqct.synthetic._render.Renderer`."""

    def __init__(self, renderer):
        self.r = renderer
        self.s = renderer.s
        self.ap = renderer.appearance

    def crura(self):
        """Diaphragmatic crura in fat sheaths (before the organs: the aorta passes between them)."""
        fp = float(self.ap["fat_planes"])
        if fp > 0:
            self._crura(fp)

    def _crura(self, fp):
        s, r, t = self.s, self.r, self.r.tissue
        for side, low in ((-1.0, "L3"), (1.0, "L2")):  # the right crus is longer and thicker
            pts = []
            for name, lat, front in ((low, 0.32, 1.0), ("L1", 0.3, 2.5), ("T12", 0.3, 5.0), ("T11", 0.5, 12.0)):
                v = s.vertebrae[name]
                pts.append(v.center + v.frame[2] * side * lat * v.width_mm
                           - v.frame[1] * (0.55 * v.depth_mm + front))
            pts = np.array(pts)
            thick = (3.2 if side < 0 else 2.6) * s.size
            radii = np.array([[thick * 1.6, thick]] * len(pts))
            e1 = np.tile(s.vertebrae["L1"].frame[1], (len(pts), 1))
            r.tube(pts, radii + 0.6 + 2.0 * fp, t["fat"], region="abdomen", e1=e1, n_out=10)
            r.tube(pts, radii, t["muscle"], region="abdomen", e1=e1, n_out=10)

    def texture(self):
        """Smooth zero-mean texture (SD ``soft_texture_hu``) of fat and muscle near the spine."""
        sd_hu = float(self.ap["soft_texture_hu"])
        if sd_hu <= 0:
            return
        s, r, g = self.s, self.r, self.r.g
        zs = g.z
        xs, ys = s.spine_at_z(zs)
        _, ds = s.body_size_at_z(zs)
        lo = np.array([float(xs.min()) - 90.0, float(ys.min() - 0.5 * ds.max()) - 70.0, 0.0])
        hi = np.array([float(xs.max()) + 90.0, float(ys.max() + 0.5 * ds.max()) + 80.0, 0.0])
        corners = r.pw(np.array([[lo[0], lo[1], 0.0], [hi[0], lo[1], 0.0], [lo[0], hi[1], 0.0],
                                 [hi[0], hi[1], 0.0]]))
        box = g.box((corners[:, 0].min(), corners[:, 1].min(), zs[0]),
                    (corners[:, 0].max(), corners[:, 1].max(), zs[-1]))
        if box is None:
            return
        seq = s.streams["appearance"]
        rng = np.random.default_rng(np.random.SeedSequence(entropy=seq.entropy,
                                                           spawn_key=tuple(seq.spawn_key) + (1,)))
        field = _smooth_field(tuple(b.stop - b.start for b in box), g.spacing, SOFT_TEXTURE_FWHM_MM, rng)
        sub = r.hu[box]
        weight = np.clip((sub + np.float32(300.0)) / np.float32(100.0), 0.0, 1.0)
        weight *= np.clip((np.float32(350.0) - sub) / np.float32(100.0), 0.0, 1.0)
        field *= np.float32(sd_hu)
        field *= weight
        sub += field


def _smooth_field(shape, spacing, fwhm_mm, rng):
    """Unit-SD Gaussian random field of FWHM `fwhm_mm`, drawn on a coarse grid, linearly upsampled."""
    from scipy import ndimage

    step = [max(0.5 * fwhm_mm, float(sp)) for sp in spacing]
    coarse = tuple(int(math.ceil(n * sp / st)) + 2 for n, sp, st in zip(shape, spacing, step))
    field = rng.standard_normal(coarse).astype(np.float32)
    sigma = [fwhm_mm / 2.3548 / st for st in step]
    field = ndimage.gaussian_filter(field, sigma, mode="wrap")
    sd = float(field.std())
    if sd > 0:
        field *= np.float32(1.0 / sd)
    for axis, (n, sp, st) in enumerate(zip(shape, spacing, step)):
        pos = np.arange(n) * (sp / st)
        i0 = np.minimum(np.floor(pos).astype(np.intp), coarse[axis] - 2)
        t = (pos - i0).astype(np.float32)
        shp = [1, 1, 1]
        shp[axis] = n
        t = t.reshape(shp)
        field = np.take(field, i0, axis=axis) * (1.0 - t) + np.take(field, i0 + 1, axis=axis) * t
    return field.astype(np.float32, copy=False)
