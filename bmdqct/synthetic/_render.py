"""Render a :class:`~bmdqct.synthetic._anatomy.Subject` on a voxel grid (private).

Order: couch and air (one 2-D image reused on every slice) -> torso layers, lungs,
diaphragm and mediastinal fat slice by slice from polar radius tables -> organs and
vessels as 3-D ellipsoids and tubes in their bounding boxes -> spine, ribs, sternum,
clavicles and scapulae with their truth labels. All shapes are defined in mm in
the patient frame and mapped to the world (LPS) by a small roll and an offset.
"""

from __future__ import annotations

import math

import numpy as np

from . import _physics
from ._raster import (
    Grid,
    capsule_sd,
    coverage,
    ellipsoid_box,
    ellipsoid_sd,
    paint,
    smooth_polyline,
)
from ._appearance import classic_appearance
from ._torso import N_THETA, THETA, Torso

_SHELL_MG_CM3 = 650.0  # vertebral cortical shell and endplates (thin, blurred in CT)
_PE_SHELL_MG_CM3 = 700.0  # posterior elements
_RIB_SHELL_MG_CM3 = 800.0


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _frame_from_axis(axis, hint=(0.0, 0.0, 1.0)):
    e1 = _unit(axis)
    hint = np.asarray(hint, dtype=np.float64)
    if abs(float(hint @ e1)) > 0.9:
        hint = np.array([1.0, 0.0, 0.0])
    e2 = _unit(np.cross(hint, e1))
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3])


class Renderer:
    """Holds the subject, grid, output arrays and the patient->world mapping."""

    def __init__(self, subject, grid: Grid, *, kvp, a_hu, b_hu, texture_hu, labels=True, appearance=None):
        self.s = subject
        self.g = grid
        self.kvp = kvp
        self.a = float(a_hu)
        self.b = float(b_hu)
        self.texture_hu = float(texture_hu)
        #: resolved appearance options (see bmdqct.synthetic._appearance); classic by default
        self.appearance = {**classic_appearance(), **(appearance or {})}
        self.tissue = _physics.tissue_table(kvp, a_hu=a_hu, b_hu_per_mg_cm3=b_hu)
        self.torso = Torso(subject)
        self.hu = np.empty(grid.shape, dtype=np.float32)
        self.want_labels = labels
        if labels:
            self.levels = np.zeros(grid.shape, dtype=np.int16)
            self.trabecular = np.zeros(grid.shape, dtype=np.int16)
            self.ribs = np.zeros(grid.shape, dtype=np.int16)
            self.classes = np.zeros(grid.shape, dtype=np.int16)
        self.body_boxes = {}
        self.rib_ids = set()
        # patient -> world: rotate about the chest centre, then offset (world (0, 0) = isocentre)
        _, depth7, *_ = subject.torso_at_z(subject.level_z("T7"))
        self.c_p = np.array([0.0, -0.5 * float(depth7)])
        self.rot = np.array([[math.cos(subject.roll_rad), -math.sin(subject.roll_rad)],
                             [math.sin(subject.roll_rad), math.cos(subject.roll_rad)]])
        self.off = np.asarray(subject.offset_xy, dtype=np.float64)
        self.z_lo = float(grid.z[0] - grid.spacing[0])
        self.z_hi = float(grid.z[-1] + grid.spacing[0])
        self.tab = {key: np.asarray(v, dtype=np.float32) if key != "yc" else v
                    for key, v in self.torso.tables(grid.z).items()}

    # -- coordinates --------------------------------------------------------------------
    def pw(self, p):
        """Patient points (..., 3) -> world."""
        p = np.asarray(p, dtype=np.float64)
        out = p.copy()
        out[..., :2] = (p[..., :2] - self.c_p) @ self.rot.T + self.off
        return out

    def dw(self, d):
        """Patient directions (..., 3) -> world."""
        d = np.asarray(d, dtype=np.float64)
        out = d.copy()
        out[..., :2] = d[..., :2] @ self.rot.T
        return out

    def patient_xy(self, box):
        """Patient x, y (2-D arrays) of the in-plane pixels of a box."""
        y = self.g.y[box[1]][:, None]
        x = self.g.x[box[2]][None, :]
        wx, wy = x - self.off[0], y - self.off[1]
        px = self.rot[0, 0] * wx + self.rot[1, 0] * wy + self.c_p[0]
        py = self.rot[0, 1] * wx + self.rot[1, 1] * wy + self.c_p[1]
        return px.astype(np.float32), py.astype(np.float32)

    def in_z(self, z0, z1):
        return z1 >= self.z_lo and z0 <= self.z_hi

    def bone(self, rho):
        return _physics.bone_hu(rho, self.a, self.b)

    # -- height fields (diaphragm, lung apices) ----------------------------------------------
    def _setup_fields(self):
        s, t = self.s, self.torso
        z_dome = s.diaphragm["right_top_z"]
        tab = t.tables([z_dome])
        yc = float(tab["yc"][0])
        lat = float(tab["cage"][0][np.argmin(np.abs(THETA))])
        ant = float(tab["cage"][0][np.argmin(np.abs(THETA + np.pi / 2))])
        self.cav_half_width = lat
        self.cav_front = yc - ant
        self.y_gutter_dome = float(tab["y_gutter"][0])
        self.dome = {"yc": yc, "lat": lat, "y_mid": yc + 0.15 * ant}
        t1 = s.vertebrae["T1"]
        tab1 = t.tables([t1.center[2]])
        self.apex = {"x": 0.42 * float(tab1["cage"][0][np.argmin(np.abs(THETA))]),
                     "y": float(t1.center[1]) - 8.0,
                     "z": float(t1.center[2] + 0.5 * t1.height_mm + 18.0 * s.size)}

    def diaphragm_z(self, px, py):
        """Height of the diaphragm (lung base) at patient (x, y); arrays in, array out.

        Two elliptic domes (right higher) that fall to the lateral, anterior and posterior
        costophrenic recesses at the cavity wall (the posterior recess is the lowest).
        """
        s, d = self.s, self.dome
        zr, zl = s.diaphragm["right_top_z"], s.diaphragm["left_top_z"]
        side = np.clip(0.5 + px / 60.0, 0.0, 1.0)
        z_top = zr + (zl - zr) * side * side * (3 - 2 * side)
        x_dome = 0.42 * d["lat"]
        dx = np.clip((np.abs(px) - x_dome) / max(0.58 * d["lat"], 1.0), -1.0, 1.0)
        dx = np.where(dx < 0, dx * 0.45, dx)
        post = np.clip((py - d["y_mid"]) / max(self.y_gutter_dome - d["y_mid"], 1.0), 0.0, 1.0)
        antr = np.clip((d["y_mid"] - py) / max(d["y_mid"] - self.cav_front, 1.0), 0.0, 1.0)
        drop_post = z_top - s.diaphragm["recess_z"]
        central = 8.0 * np.exp(-((px / 40.0) ** 2)) * np.clip(antr * 2.0, 0.0, 1.0)
        return (z_top - 50.0 * dx ** 2 - 0.6 * drop_post * post ** 2 - 35.0 * antr ** 2 - central
                - 0.4 * drop_post * post ** 2 * np.clip(dx + 0.3, 0.0, 1.0)).astype(np.float32)

    def ceiling_z(self, px, py):
        """Height of the lung apices at patient (x, y)."""
        a = self.apex
        dx = np.abs(px) - a["x"]
        dy = py - a["y"]
        r2 = dx * dx + 0.6 * dy * dy + 1.2 * np.minimum(dy, 0.0) ** 2
        return (a["z"] - 70.0 * (1.0 - np.exp(-r2 / (2.0 * 42.0 ** 2)))).astype(np.float32)

    def _field_width(self, field_fn, px, py):
        """Ramp width for a height field: depends on its slope."""
        h = 1.0
        gx = (field_fn(px + h, py) - field_fn(px - h, py)) / (2 * h)
        gy = (field_fn(px, py + h) - field_fn(px, py - h)) / (2 * h)
        g2 = gx * gx + gy * gy
        nz2 = 1.0 / (1.0 + g2)
        return self.g.ramp_width(nz2.astype(np.float32))

    # -- torso slice pass ------------------------------------------------------------------
    def background(self):
        """Air, mattress and couch: one 2-D image for all slices (world coordinates)."""
        g, s = self.g, self.s
        t = self.tissue
        y = g.y[:, None]
        x = g.x[None, :]
        img = np.full((g.shape[1], g.shape[2]), t["air"], dtype=np.float32)
        back_w = float(((np.array([0.0, 0.0]) - self.c_p) @ self.rot.T + self.off)[1])
        rng = np.random.default_rng(s.streams["scan"])
        pad = float(rng.uniform(8.0, 35.0))
        radius = 900.0
        y_top = back_w + pad - x * x / (2 * radius)
        d = (y - y_top).astype(np.float32)
        px = g.pixel_mm
        inside = np.abs(x) < 235.0

        def band(lo, hi):
            return np.clip(np.minimum(d - lo, hi - d) / px + 0.5, 0.0, 1.0) * inside

        img += band(-pad, 0.0) * (t["table_foam"] - img)
        img += band(0.0, 18.0) * (t["table_foam"] - img)
        img += band(0.0, 2.0) * (t["table"] - img)
        img += band(16.0, 18.0) * (t["table"] - img)
        cradle = np.abs(x) < 190.0
        img += band(52.0, 80.0) * cradle * (-850.0 - img)
        img += band(52.0, 55.5) * cradle * (t["table"] - img)
        img += band(76.5, 80.0) * cradle * (t["table"] - img)
        return img

    def _crop_slices(self, base, xmin, xmax, ymin, ymax, pad=3):
        """Index slices, relative to the crop `base`, covering a patient-frame rectangle."""
        corners = self.pw(np.array([[xmin, ymin, 0.0], [xmax, ymin, 0.0], [xmin, ymax, 0.0],
                                    [xmax, ymax, 0.0]]))
        g = self.g
        j0 = int(math.floor((corners[:, 1].min() - g.y[0]) / g.spacing[1])) - pad
        j1 = int(math.ceil((corners[:, 1].max() - g.y[0]) / g.spacing[1])) + pad + 1
        i0 = int(math.floor((corners[:, 0].min() - g.x[0]) / g.spacing[2])) - pad
        i1 = int(math.ceil((corners[:, 0].max() - g.x[0]) / g.spacing[2])) + pad + 1
        j0, j1 = max(j0, base[1].start), min(j1, base[1].stop)
        i0, i1 = max(i0, base[2].start), min(i1, base[2].stop)
        if j1 <= j0 or i1 <= i0:
            return None
        return (slice(j0 - base[1].start, j1 - base[1].start), slice(i0 - base[2].start, i1 - base[2].start))

    def torso_pass(self):
        g, s, t = self.g, self.s, self.tissue
        self._setup_fields()
        bg = self.background()
        self.hu[:] = bg[None]
        half_w = float(np.max(s.torso_half_width)) + 60.0
        depth = float(np.max(s.torso_depth)) + 60.0
        corners = self.pw(np.array([[-half_w, -depth, 0.0], [half_w, -depth, 0.0],
                                    [-half_w, 25.0, 0.0], [half_w, 25.0, 0.0]]))
        lo = np.min(corners, axis=0)
        hi = np.max(corners, axis=0)
        box = g.box((lo[0], lo[1], g.z[0]), (hi[0], hi[1], g.z[-1]))
        if box is None:
            return
        self.crop = box
        px2, py2 = self.patient_xy(box)
        zd = self.diaphragm_z(px2, py2)
        wd = self._field_width(self.diaphragm_z, px2, py2)
        zc = self.ceiling_z(px2, py2)
        wc = self._field_width(self.ceiling_z, px2, py2)
        # lung parenchyma: denser in dependent (posterior) regions
        dep = np.clip((py2 - self.cav_front) / max(self.y_gutter_dome - self.cav_front, 1.0), 0, 1)
        lung = (t["lung"] - 25.0 + 55.0 * dep * dep).astype(np.float32)
        pix = np.float32(g.pixel_mm)
        xs_all, ys_all = s.spine_at_z(g.z)
        w_all, d_all = s.body_size_at_z(g.z)
        z_t3, z_t5 = s.level_z("T3"), s.level_z("T5")
        scap = self._scapula_params()
        skin, fat, muscle = np.float32(t["skin"]), np.float32(t["fat"]), np.float32(t["muscle"])
        neck_val = np.float32(0.5 * (t["muscle"] + t["fat"]) + 20.0)
        cos_t, sin_t = np.cos(THETA), np.sin(THETA)
        half_pi = np.float32(0.5)
        scale = np.float32(N_THETA / (2 * np.pi))
        recess = self.s.diaphragm["recess_z"] - 30.0
        fat_planes = float(self.appearance["fat_planes"])
        for k in range(g.shape[0]):
            z = float(g.z[k])
            yc = float(self.tab["yc"][k])
            r_out = self.tab["out"][k]
            sub = self._crop_slices(box, -float(np.max(r_out * np.abs(cos_t))) - 2,
                                    float(np.max(r_out * np.abs(cos_t))) + 2,
                                    yc + float(np.min(r_out * sin_t)) - 2, yc + float(np.max(r_out * sin_t)) + 2)
            if sub is None:
                continue
            px, py = px2[sub], py2[sub]
            dy = py - np.float32(yc)
            r = np.sqrt(px * px + dy * dy)
            ti = ((np.arctan2(dy, px) + np.float32(np.pi)) * scale).astype(np.int32)
            np.minimum(ti, N_THETA - 1, out=ti)
            h = self.hu[k][box[1], box[2]][sub]

            def cov(name, ti=ti, r=r):
                f = self.tab[name][k][ti] - r
                f /= pix
                f += half_pi
                return np.clip(f, 0.0, 1.0, out=f)

            f = cov("out")
            h += f * (skin - h)
            f_fat = cov("skin")
            h += f_fat * (fat - h)
            f_mus = cov("fat")
            h += f_mus * (muscle - h)
            if scap is not None and scap["z0"] - 5 < z < scap["z1"] + 5:
                self._paint_scapula_slice(h, z, r, ti, k, px, scap, box, sub, yc)
            # cavity (inner chest / abdominal wall)
            r_cage = self.tab["cage"][k]
            xs, ys, wv, dv = float(xs_all[k]), float(ys_all[k]), float(w_all[k]), float(d_all[k])
            cx = float(np.max(r_cage * np.abs(cos_t)))
            y_lo = yc + float(np.min(r_cage * sin_t))
            y_hi = max(yc + float(np.max(r_cage * sin_t)), ys + 0.5 * dv + 55.0)
            cs = self._sub(box, sub, -cx - 2, cx + 2, y_lo - 2, y_hi + 2)
            if cs is None:
                continue
            hc = h[cs]
            j = self._abs(sub, cs)
            f_in = cov("cage", ti[cs], r[cs])
            # spine block: vertebra with paravertebral tissue and the costovertebral region
            ss = self._sub(box, sub, xs - 0.5 * wv - 24, xs + 0.5 * wv + 24, ys - 0.5 * dv - 6, ys + 0.5 * dv + 55)
            f_s = None
            if ss is not None:
                pxs, pys = px2[self._abs(sub, ss)], py2[self._abs(sub, ss)]
                e1 = np.sqrt(((pxs - xs) / (0.5 * wv + 3.0)) ** 2 + ((pys - ys) / (0.5 * dv + 3.0)) ** 2)
                e2 = np.sqrt(((pxs - xs) / (0.5 * wv + 19.0)) ** 2
                             + ((pys - (ys + 0.5 * dv + 24.0)) / 27.0) ** 2)
                f_s = np.clip((1.0 - np.minimum(e1, e2)) * np.float32(0.5 * wv / g.pixel_mm) + 0.5, 0, 1)
                ssc = self._rel(cs, ss)
                if ssc is not None:
                    f_in[ssc] *= 1.0 - f_s[self._rel(ss, cs)]
            hc += f_in * (fat - hc)
            if z > recess:
                above = np.clip((z - zd[j]) / wd[j] + 0.5, 0.0, 1.0)
                lung_f = f_in * above
                if z > self.apex["z"] - 80.0:
                    below_apex = np.clip((zc[j] - z) / wc[j] + 0.5, 0.0, 1.0)
                    hc += (lung_f * (1.0 - below_apex)) * (neck_val - hc)
                    lung_f *= below_apex
                # mediastinum: a band from the sternum to the vertebral body
                y_front = yc - float(r_cage[N_THETA // 4])
                y_back = ys - 0.5 * dv
                if z > z_t3:
                    wa, wp = 15.0, 27.0
                elif z > z_t5 - 10.0:
                    wa, wp = 24.0, 31.0
                else:
                    wa, wp = 12.0, 25.0
                wa *= s.size
                wp *= s.size
                ms = self._sub(box, sub, xs - wp - 3, xs + wp + 3, y_front - 6, y_back + 15)
                msc = self._rel(cs, ms) if ms is not None else None
                if msc is not None:
                    pxm, pym = px2[self._abs(sub, ms)], py2[self._abs(sub, ms)]
                    frac = np.clip((pym - y_front) / max(y_back - y_front, 1.0), 0.0, 1.0)
                    sd_med = np.maximum(np.abs(pxm - xs) - (wa + (wp - wa) * frac),
                                        np.maximum(y_front - 3.0 - pym, pym - y_back - 12.0))
                    f_med = np.clip(0.5 - sd_med / pix, 0.0, 1.0)
                    lung_f[msc] *= 1.0 - f_med[self._rel(ms, cs)]
                hc += lung_f * (lung[j] - hc)
                if z < self.s.diaphragm["right_top_z"] + 10.0:
                    f_dia = (f_in - f_in * above) * np.clip((z - (zd[j] - 5.0)) / wd[j] + 0.5, 0.0, 1.0)
                    hc += f_dia * (muscle - hc)
            if f_s is not None:
                hs = h[ss]
                hs += f_s * f_mus[ss] * (muscle - hs)
                if fat_planes > 0:  # prevertebral / paravertebral fat hugging the body
                    pxs, pys = px2[self._abs(sub, ss)], py2[self._abs(sub, ss)]
                    e1 = np.sqrt(((pxs - xs) / (0.5 * wv + 3.0)) ** 2 + ((pys - ys) / (0.5 * dv + 3.0)) ** 2)
                    f_e1 = np.clip((1.0 - e1) * np.float32(0.5 * wv / g.pixel_mm) + 0.5, 0, 1)
                    w_ant = np.clip((ys + 0.15 * dv - pys) / (0.2 * dv), 0.0, 1.0)
                    hs += f_e1 * w_ant * f_mus[ss] * np.float32(0.85 * fat_planes) * (fat - hs)
            self._erector_spinae(h, box, sub, px2, py2, f_mus, xs, ys, wv, dv, z, fat, muscle)

    def _erector_spinae(self, h, box, sub, px2, py2, f_mus, xs, ys, wv, dv, z, fat, muscle):
        """Paravertebral muscle bundles wrapped in thin fat planes (visible in real CT)."""
        s = self.s
        k = s.size
        lumbar = float(np.clip((s.level_z("T11") - z) / 60.0, 0.0, 1.0))
        ax = (19.0 + 10.0 * lumbar) * k
        ay = (17.0 + 9.0 * lumbar) * k
        cy = ys + 0.5 * dv + (26.0 + 6.0 * lumbar) * k
        pix = np.float32(self.g.pixel_mm)
        fp = float(self.appearance["fat_planes"])
        aging = float(np.clip((s.age_years - 35.0) / 45.0, 0.2, 1.0))
        for side in (-1.0, 1.0):
            cx = xs + side * (0.5 * wv * 0.55 + ax * 0.95)
            rect = self._sub(box, sub, cx - ax - 6, cx + ax + 6, cy - ay - 6, cy + ay + 6)
            if rect is None:
                continue
            px, py = px2[self._abs(sub, rect)], py2[self._abs(sub, rect)]
            d = np.sqrt((px - np.float32(cx)) ** 2 + (py - np.float32(cy)) ** 2 * np.float32((ax / ay) ** 2))
            hh = h[rect]
            fm = f_mus[rect]
            if fp <= 0:
                f_ring = np.clip((np.float32(ax + 1.4) - d) / pix + 0.5, 0.0, 1.0) * fm * np.float32(0.7)
                hh += f_ring * (fat - hh)
                f_core = np.clip((np.float32(ax) - d) / pix + 0.5, 0.0, 1.0) * fm
                hh += f_core * (muscle + np.float32(4.0) - hh)
                continue
            # fat planes: a wider fat sheath, septa between multifidus, longissimus and
            # iliocostalis, and fatty infiltration of the muscle growing with age
            f_ring = np.clip((np.float32(ax + 1.4 + 1.2 * fp) - d) / pix + 0.5, 0.0, 1.0) * fm
            hh += f_ring * np.float32(0.7) * (fat - hh)
            f_core = np.clip((np.float32(ax) - d) / pix + 0.5, 0.0, 1.0) * fm
            core = muscle + np.float32(4.0) + np.float32(fp * aging * 0.35) * (fat - muscle)
            hh += f_core * (core - hh)
            # septa run antero-posteriorly, fanning out backward, gently wavy
            half = np.float32(0.25 + 0.7 * fp)
            dy = py - np.float32(cy)
            for rel, slant, phase in ((-0.3, 0.15, 0.0), (0.4, 0.35, 1.7)):
                xsep = np.float32(cx + side * rel * ax) + np.float32(side * slant) * dy \
                    + np.float32(1.2) * np.sin(dy / np.float32(6.0) + np.float32(phase + z / 23.0))
                f_sep = np.clip((half - np.abs(px - xsep)) / pix + 0.5, 0.0, 1.0) * f_core
                f_sep *= np.clip((np.float32(0.9 * ax) - d) / pix + 0.5, 0.0, 1.0)
                hh += f_sep * np.float32(0.6) * (fat - hh)

    def _sub(self, box, sub, xmin, xmax, ymin, ymax):
        """Slices relative to `sub` (itself relative to the crop `box`) for a patient rectangle."""
        rect = self._crop_slices(box, xmin, xmax, ymin, ymax)
        if rect is None:
            return None
        out = tuple(slice(max(a.start, b.start) - b.start, min(a.stop, b.stop) - b.start)
                    for a, b in zip(rect, sub))
        if any(o.stop <= o.start for o in out):
            return None
        return out

    @staticmethod
    def _abs(sub, rel):
        """Crop-relative slices of `rel` (relative to `sub`)."""
        return tuple(slice(a.start + b.start, a.start + b.stop) for a, b in zip(sub, rel))

    @staticmethod
    def _rel(outer, inner):
        """Slices of the overlap of two sub-relative rectangles, relative to `outer`."""
        out = tuple(slice(max(a.start, b.start) - a.start, min(a.stop, b.stop) - a.start)
                    for a, b in zip(outer, inner))
        if any(o.stop <= o.start for o in out):
            return None
        return out

    def _scapula_params(self):
        s = self.s
        v = s.vertebrae
        z1 = float(v["T1"].center[2] + 0.2 * v["T1"].height_mm)
        z0 = float(v["T7"].center[2] - 0.3 * v["T7"].height_mm)
        if not self.in_z(z0 - 10, z1 + 40):
            return None
        return {"z0": z0, "z1": z1}

    def _paint_scapula_slice(self, h, z, r, ti, k, px, scap, box, sub, yc):
        """Thin curved plate outside the ribs, between medial and lateral borders."""
        s = self.s
        frac = np.clip((z - scap["z0"]) / (scap["z1"] - scap["z0"]), 0.0, 1.0)
        x_med = (55.0 + 25.0 * (1 - frac)) * s.size
        x_lat = (125.0 - 35.0 * (1 - frac) ** 1.5) * s.size
        if x_lat - x_med < 4.0:
            return
        r_sc = np.minimum(self.tab["cage"][k] + 17.0, self.tab["fat"][k] - 6.0)
        value = np.float32(self.bone(520.0))
        pix = np.float32(self.g.pixel_mm)
        for side in (-1.0, 1.0):
            lo, hi = sorted((side * (x_med - 3.0), side * (x_lat + 8.0)))
            rect = self._sub(box, sub, lo, hi, yc, 5.0)
            if rect is None:
                continue
            rr, tt, ax = r[rect], ti[rect], np.abs(px[rect])
            thick = 1.3 + 3.2 * np.clip((ax - (x_lat - 10.0)) / 10.0, 0.0, 1.0)
            sd = np.maximum(np.abs(rr - r_sc[tt]) - thick, np.maximum(x_med - ax, ax - x_lat))
            f = np.clip(0.5 - sd / pix, 0.0, 1.0)
            hh = h[rect]
            hh += f * (value - hh)

    # -- generic 3-D painters -----------------------------------------------------------
    def region_weight(self, box, kind, where=None):
        """Weight (0..1) restricting a shape to a body region: 'abdomen', 'thorax', 'cavity'.

        `where` (bool array of the box shape) limits the work to the rows and columns
        where any voxel matters.
        """
        shape = tuple(sl.stop - sl.start for sl in box)
        out = np.zeros(shape, dtype=np.float32)
        if where is not None:
            m2 = where.any(axis=0)
            rows = np.nonzero(m2.any(axis=1))[0]
            if rows.size == 0:
                return out
            cols = np.nonzero(m2.any(axis=0))[0]
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        else:
            r0, r1, c0, c1 = 0, shape[1], 0, shape[2]
        sub = (box[0], slice(box[1].start + r0, box[1].start + r1), slice(box[2].start + c0, box[2].start + c1))
        px, py = self.patient_xy(sub)
        ks = np.arange(box[0].start, box[0].stop)
        yc = self.tab["yc"][ks].astype(np.float32)[:, None, None]
        dy = py[None] - yc
        r = np.sqrt(px[None] * px[None] + dy * dy)
        ti = ((np.arctan2(dy, px[None]) + np.float32(np.pi)) * np.float32(N_THETA / (2 * np.pi))).astype(np.int32)
        np.minimum(ti, N_THETA - 1, out=ti)
        cage = self.tab["cage"].astype(np.float32)
        w = np.clip((cage[ks[:, None, None], ti] - r) / np.float32(self.g.pixel_mm) + 0.5, 0.0, 1.0)
        if kind in ("abdomen", "thorax"):
            zd = self.diaphragm_z(px, py)[None]
            zz = self.g.z[ks].astype(np.float32)[:, None, None]
            wd = self.g.ramp_width(np.float32(0.8))
            side = (zd - zz) if kind == "abdomen" else (zz - zd)
            w *= np.clip(side / wd + 0.5, 0.0, 1.0)
        out[:, r0:r1, c0:c1] = w
        return out

    def lung_weight(self, box):
        return np.clip((-450.0 - self.hu[box]) / 250.0, 0.0, 1.0)

    def ellipsoid(self, center, frame, radii, value, *, region=None, pad=2.0, weight=None):
        """Paint an ellipsoid given in the patient frame; returns (box, sd) or None."""
        c = self.pw(center)
        fr = self.dw(np.asarray(frame, dtype=np.float64))
        if not self.in_z(c[2] - max(radii) - pad, c[2] + max(radii) + pad):
            return None
        lo, hi = ellipsoid_box(c, fr, radii, pad + 2 * self.g.spacing[0])
        if region == "abdomen":  # nothing of it above the domes of the diaphragm
            hi[2] = min(hi[2], max(self.s.diaphragm["right_top_z"], self.s.diaphragm["left_top_z"]) + 5.0)
        elif region == "thorax":  # nothing of it below the costophrenic recesses
            lo[2] = max(lo[2], self.s.diaphragm["recess_z"] - 5.0)
        box = self.g.box(lo, hi)
        if box is None:
            return None
        sd, w = ellipsoid_sd(self.g, box, c, fr, radii)
        f = coverage(sd, w)
        if region is not None:
            f *= self.region_weight(box, region, where=f > 0)
        if weight is not None:
            f *= weight(box)
        paint(self.hu, box, f, value)
        return box, sd

    def tube(self, points, radii, value, *, region=None, lung_only=False, e1=None, n_out=None,
             inner=None, label=None):
        """Paint a smooth tube through patient `points` with radii (n,) or (n, 2).

        Consecutive capsules paint disjoint slabs (``0 <= tau < 1``), so joints are not
        painted twice. `inner` = (thickness_mm, value) paints a core (marrow, lumen);
        `label` = (array, id) marks voxel centres inside the tube.
        """
        pts = np.asarray(points, dtype=np.float64)
        radii = np.asarray(radii, dtype=np.float64)
        if radii.ndim == 1:
            radii = np.stack([radii, radii], axis=1)
        if e1 is not None:
            e1 = np.asarray(e1, dtype=np.float64)
        if n_out:
            length = float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)))
            step = max(5.0, 4.0 * self.g.pixel_mm, 3.0 * self.g.spacing[0])
            n_out = int(np.clip(round(length / step) + 1, 3, n_out))
            t_old = np.linspace(0, 1, len(pts))
            pts = smooth_polyline(pts, n_out)
            t_new = np.linspace(0, 1, n_out)
            radii = np.stack([np.interp(t_new, t_old, radii[:, 0]),
                              np.interp(t_new, t_old, radii[:, 1])], 1)
            if e1 is not None:
                e1 = np.stack([np.interp(t_new, t_old, e1[:, j]) for j in range(3)], 1)
        wp = self.pw(pts)
        rmax = float(radii.max())
        if not self.in_z(wp[:, 2].min() - rmax, wp[:, 2].max() + rmax):
            return
        n = len(wp)
        tangents = np.diff(wp, axis=0)
        tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)
        # each capsule owns the slab between the bisector planes of its two joints: no gaps
        # on the outer side of a bend, no double painting on the inner side
        bisect = tangents[:-1] + tangents[1:]
        bisect /= np.maximum(np.linalg.norm(bisect, axis=1, keepdims=True), 1e-9)
        for i in range(n - 1):
            p0, p1 = wp[i], wp[i + 1]
            r = max(radii[i].max(), radii[i + 1].max()) + 2 * self.g.spacing[0]
            box = self.g.box(np.minimum(p0, p1) - r, np.maximum(p0, p1) + r)
            if box is None:
                continue
            direction = p1 - p0
            if e1 is not None:
                hint = self.dw(e1[i])
            else:
                hint = np.array([direction[1], -direction[0], 0.0])  # direction x (0, 0, 1)
                if abs(hint[0]) + abs(hint[1]) < 1e-6 * max(1.0, float(np.abs(direction).sum())):
                    hint = np.array([1.0, 0.0, 0.0])
            sd, w, tau = capsule_sd(self.g, box, p0, p1, hint, radii[i], radii[i + 1])
            keep = np.ones(tau.shape, dtype=bool)
            if i > 0 or i < n - 2:
                z, y, x = self.g.coords(box)
                if i > 0:
                    nb = bisect[i - 1]
                    keep &= (np.float32(nb[0]) * (x - np.float32(p0[0])) + np.float32(nb[1]) * (y - np.float32(p0[1]))
                             + np.float32(nb[2]) * (z - np.float32(p0[2]))) >= 0
                if i < n - 2:
                    nb = bisect[i]
                    keep &= (np.float32(nb[0]) * (x - np.float32(p1[0])) + np.float32(nb[1]) * (y - np.float32(p1[1]))
                             + np.float32(nb[2]) * (z - np.float32(p1[2]))) < 0
            f = coverage(sd, w) * keep
            if not np.any(f):
                continue
            if region is not None:
                f *= self.region_weight(box, region, where=f > 0)
            if lung_only:
                f *= self.lung_weight(box)
            paint(self.hu, box, f, value)
            if inner is not None:
                fi = coverage(sd + np.float32(inner[0]), w) * keep
                if region is not None or lung_only:
                    fi *= f > 0
                paint(self.hu, box, fi, inner[1])
            if label is not None:
                arr, ident = label
                inside = (sd < 0) & keep
                if np.any(inside):
                    arr[box][inside] = ident
                    self.rib_ids.add(ident)

    def splat_tubes(self, p0, p1, radii, value, *, lung_only=False):
        """Paint thin tubes as partial-volume fractions: samples along each segment deposit
        their volume (pi r² ds) trilinearly into the voxels (vectorized)."""
        g = self.g
        w0, w1 = self.pw(p0), self.pw(p1)
        seg = w1 - w0
        length = np.linalg.norm(seg, axis=1)
        step = 0.4 * min(g.spacing)
        n = np.maximum(1, np.ceil(length / step).astype(int))
        idx = np.repeat(np.arange(len(n)), n)
        start = np.cumsum(n) - n
        t = (np.arange(int(n.sum())) - np.repeat(start, n) + 0.5) / np.repeat(n, n)
        pts = w0[idx] + seg[idx] * t[:, None]
        vol = np.pi * radii[idx] ** 2 * (length[idx] / n[idx])
        # fractional voxel coordinates (z, y, x)
        fz = (pts[:, 2] - g.z[0]) / g.spacing[0]
        fy = (pts[:, 1] - g.y[0]) / g.spacing[1]
        fx = (pts[:, 0] - g.x[0]) / g.spacing[2]
        shape = g.shape
        acc = {}
        base = np.floor(np.stack([fz, fy, fx], 1)).astype(np.int64)
        frac = np.stack([fz, fy, fx], 1) - base
        voxel = g.spacing[0] * g.spacing[1] * g.spacing[2]
        flat_all, w_all = [], []
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    kz, ky, kx = base[:, 0] + dz, base[:, 1] + dy, base[:, 2] + dx
                    w = (np.where(dz, frac[:, 0], 1 - frac[:, 0]) * np.where(dy, frac[:, 1], 1 - frac[:, 1])
                         * np.where(dx, frac[:, 2], 1 - frac[:, 2])) * vol / voxel
                    ok = (kz >= 0) & (kz < shape[0]) & (ky >= 0) & (ky < shape[1]) & (kx >= 0) & (kx < shape[2])
                    flat_all.append(np.ravel_multi_index((kz[ok], ky[ok], kx[ok]), shape))
                    w_all.append(w[ok])
        flat = np.concatenate(flat_all)
        weights = np.concatenate(w_all)
        if flat.size == 0:
            return
        uniq, inv = np.unique(flat, return_inverse=True)
        f = np.minimum(np.bincount(inv, weights=weights), 1.0).astype(np.float32)
        hu = self.hu.reshape(-1)
        cur = hu[uniq]
        if lung_only:
            f *= np.clip((-450.0 - cur) / 250.0, 0.0, 1.0)
        hu[uniq] = cur + f * (np.float32(value) - cur)
