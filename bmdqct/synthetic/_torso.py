"""Torso cross-sections of a subject as polar radius tables (private).

At height z the torso is described around its centre ``(0, yc(z))`` (patient
frame) by radii per polar angle ``theta`` (``atan2(y - yc, x)``; 0 = patient's
left, +pi/2 = posterior): skin surface, inner skin, inner subcutaneous fat,
inner muscle, and the cavity (inner chest/abdominal wall, cut posteriorly by the
paravertebral gutter line).
"""

from __future__ import annotations

import numpy as np

N_THETA = 720
THETA = np.linspace(-np.pi, np.pi, N_THETA, endpoint=False) + np.pi / N_THETA
SKIN_MM = 1.8


def _softmin(a, b, k):
    return -k * np.logaddexp(-a / k, -b / k)


class Torso:
    """Radius tables of a :class:`~bmdqct.synthetic._anatomy.Subject` at any set of z."""

    def __init__(self, subject):
        self.subject = subject
        v = subject.vertebrae
        self.z_t1_top = float(v["T1"].center[2] + 0.5 * v["T1"].height_mm)
        self.z_t6 = float(v["T6"].center[2])
        self.z_t12 = float(v["T12"].center[2])
        self.z_l1_top = float(v["L1"].center[2] + 0.5 * v["L1"].height_mm)
        self.z_t5 = float(v["T5"].center[2])

    def center_y(self, z):
        _, depth, *_ = self.subject.torso_at_z(np.asarray(z, dtype=np.float64))
        return -0.5 * depth

    def tables(self, z):
        """Radius tables (len(z), N_THETA) and yc (len(z),) at heights z."""
        s = self.subject
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        half_w, depth, f_post, f_lat, f_ant = s.torso_at_z(z)
        yc = -0.5 * depth
        th = THETA[None, :]
        c, sn = np.cos(th), np.sin(th)
        post = np.clip(sn, 0, None)
        ant = np.clip(-sn, 0, None)
        a = half_w[:, None]
        b = (0.5 * depth)[:, None]
        n = 2.3 + 1.6 * post ** 2  # flat back on the couch
        r_out = (np.abs(c / a) ** n + np.abs(sn / b) ** n) ** (-1.0 / n)
        # breasts (women): anterolateral bumps around T4-T6
        breast = np.zeros_like(r_out)
        if s.breast_mm > 0:
            zb = np.exp(-0.5 * ((z - self.z_t5) / 38.0) ** 2)[:, None]
            for side in (-1.0, 1.0):
                center = -np.pi / 2 + side * 0.62
                breast += s.breast_mm * zb * np.exp(-0.5 * ((th - center) / 0.33) ** 2)
        r_out = r_out + breast
        dr = (np.roll(r_out, -1, axis=1) - np.roll(r_out, 1, axis=1)) / (2 * (THETA[1] - THETA[0]))
        sec = np.sqrt(1.0 + (dr / r_out) ** 2)
        fat = f_post[:, None] * post ** 2 + f_ant[:, None] * ant ** 2 + f_lat[:, None] * c ** 2
        fat = fat + 0.85 * breast
        abdomen = np.clip((self.z_t12 + 20.0 - z) / 60.0, 0.0, 1.0)[:, None]
        pect = np.clip(1.0 - np.abs(z - (self.z_t1_top - 55.0)) / 75.0, 0.0, 1.0)[:, None]
        pect_ang = sum(np.exp(-0.5 * ((th - (-np.pi / 2 + sd * 0.8)) / 0.35) ** 2) for sd in (-1, 1))
        muscle = (7.0 * ant ** 2 + 9.0 * c ** 2 + 20.0 * post ** 2) * (1 - abdomen) \
            + (11.0 * ant ** 2 + 16.0 * c ** 2 + 28.0 * post ** 2) * abdomen \
            + 13.0 * pect * pect_ang
        muscle = muscle * s.size
        r_skin = r_out - SKIN_MM * sec
        r_fat = r_skin - fat * sec
        r_mus = r_fat - muscle * sec
        # paravertebral gutter line: the lungs reach just in front of the rib angles
        xs, ys = s.spine_at_z(z)
        _, d = s.body_size_at_z(z)
        y_gutter = ys + 0.5 * d + s.size * (24.0 + 6.0 * abdomen[:, 0])
        # the posterior wall of the gutters curves forward laterally: y = y_gutter - x² / (2 rho)
        rho = 300.0 * s.size
        qa = c * c / (2.0 * rho)
        qc = (yc - y_gutter)[:, None]
        disc = sn * sn - 4.0 * qa * qc
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.where(qa > 1e-9, (-sn + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * qa),
                            -qc / np.where(np.abs(sn) > 1e-9, sn, 1e-9))
        r_line = np.where((disc >= 0) & (root > 0), root, 1e4)
        r_cage = _softmin(r_mus, r_line, 5.0)
        r_cage = np.maximum(r_cage, 5.0)
        return {"yc": yc, "out": r_out, "skin": r_skin, "fat": r_fat, "muscle": r_mus,
                "cage": r_cage, "y_gutter": y_gutter}

    def _cache_rows(self, z):
        if not hasattr(self, "_cache_z"):
            zs = self.subject.torso_z
            self._cache_z = np.arange(zs.min() - 60.0, zs.max() + 60.0, 1.0)
            self._cache = self.tables(self._cache_z)
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        return np.clip(np.round(z - self._cache_z[0]).astype(int), 0, self._cache_z.size - 1)

    def lookup(self, z):
        """Radius tables at heights z from a cached 1-mm table (nearest row); for queries."""
        rows = self._cache_rows(z)
        return {key: value[rows] for key, value in self._cache.items()}

    def cage_at(self, theta, z, offset_mm=0.0):
        """Cavity radius at (theta, z) pairs and the torso centre yc(z) (cached tables)."""
        rows = self._cache_rows(z)
        theta = np.asarray(theta, dtype=np.float64)
        idx = np.round((theta + np.pi) / (2 * np.pi) * N_THETA - 0.5).astype(int) % N_THETA
        return self._cache["cage"][rows, idx] + offset_mm, self._cache["yc"][rows]

    def cage_point(self, theta, z, offset_mm=0.0):
        """Patient (x, y) of the cavity boundary (plus `offset_mm` outward) at angle theta, height z."""
        theta = np.asarray(theta, dtype=np.float64)
        r, yc = self.cage_at(theta, z, offset_mm)
        return r * np.cos(theta), yc + r * np.sin(theta)
