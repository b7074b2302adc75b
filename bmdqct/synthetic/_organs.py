"""Mediastinal, pulmonary and upper-abdominal organs and vessels (private).

Shapes are ellipsoids and tubes placed relative to the spine and the cavity wall
(patient frame, mm). Abdominal organs are clipped to the cavity below the
diaphragm, the heart to the cavity above it, and the bronchovascular trees to
the lung parenchyma already painted, so every organ stays in its compartment.
"""

from __future__ import annotations

import math

import numpy as np

from ._render import _frame_from_axis, _unit
from ._torso import N_THETA


class Organs:
    def __init__(self, renderer):
        self.r = renderer
        self.s = renderer.s
        self.t = renderer.tissue
        self.k = self.s.size

    # -- landmarks --------------------------------------------------------------------------
    def lz(self, name, frac=0.0):
        return self.s.level_z(name, frac)

    def spine(self, z):
        x, y = self.s.spine_at_z(z)
        w, d = self.s.body_size_at_z(z)
        return float(x), float(y), float(w), float(d)

    def front(self, z):
        """y of the anterior cavity wall at x = 0."""
        _, y = self.r.torso.cage_point(np.array([-math.pi / 2]), np.array([z]))
        return float(y[0])

    def lateral(self, z):
        tab = self.r.torso.tables([z])
        return float(tab["cage"][0][N_THETA // 2]), float(tab["yc"][0])

    def vfront(self, z):
        """y of the anterior surface of the vertebral column at z."""
        _, y, _, d = self.spine(z)
        return y - 0.5 * d

    # -- all ----------------------------------------------------------------------------------
    def render(self):
        self.neck()
        self.heart()
        self.great_vessels()
        self.airways_and_esophagus()
        self.lungs()
        self.abdomen()
        self.breasts()

    def neck(self):
        r, k = self.r, self.k
        z = self.lz("C7")
        x, y, w, d = self.spine(z)
        yt = self.vfront(z) - 22.0 * k
        for side in (-1.0, 1.0):
            r.ellipsoid([side * 17.0 * k, yt - 2.0, z + 5.0], np.eye(3), (9.0 * k, 11.0 * k, 22.0 * k),
                        self.t["muscle"] + 45.0)

    def heart(self):
        r, s, k = self.r, self.s, self.k
        hs = s.heart["scale"] * k
        z = self.lz("T8", 0.1)
        yf, yb = self.front(z), self.vfront(z)
        c = np.array([32.0 * k + s.heart["shift_x"], yf + 0.42 * (yb - yf), z])
        axis = _unit([0.62, -0.5, -0.45])
        frame = _frame_from_axis(axis)
        radii = np.array([67.0, 50.0, 36.0]) * hs
        r.ellipsoid(c, frame, radii + 4.5, self.t["fat"], region="thorax")
        r.ellipsoid(c, frame, radii, self.t["myocardium"], region="thorax")
        # left atrium (posterior, toward the oesophagus) and epicardial fat in the AV groove
        la = c + np.array([-5.0, 0.42 * (yb - c[1]), 22.0 * hs])
        r.ellipsoid(la, np.eye(3), (30.0 * hs, 18.0 * hs, 20.0 * hs), self.t["blood"], region="thorax")
        # coronary calcifications with age
        rng = np.random.default_rng([s.seed, 31])
        n = int(rng.poisson(max(0.0, (s.age_years - 50.0) / 6.0)))
        for _ in range(n):
            u = _unit(rng.normal(0, 1, 3) + np.array([0.0, -1.2, 0.6]))
            p = c + (frame.T @ (u * radii * 0.97 / np.linalg.norm(u * [1, 1, 1])))
            rad = float(rng.uniform(0.8, 2.2))
            r.ellipsoid(p, np.eye(3), (rad, rad, rad), r.bone(float(rng.uniform(300, 800))))
        self.heart_c, self.heart_frame, self.heart_r = c, frame, radii

    def great_vessels(self):
        r, s, k = self.r, self.s, self.k
        a = s.vessels["aorta_scale"] * k
        z4, z3, z5, z7 = self.lz("T4"), self.lz("T3"), self.lz("T5"), self.lz("T7")
        f4 = self.front(z4)
        pts, rad = [], []
        # ascending aorta, arch, descending thoracic and abdominal aorta
        z_root = self.lz("T7", 0.6)
        for z, dx, yy, rr in ((z_root, 2.0, self.front(z_root) + 52.0 * k, 15.0),
                              (z5, -6.0, self.front(z5) + 34.0 * k, 15.5),
                              (z4 + 6.0, -4.0, f4 + 36.0 * k, 14.5)):
            pts.append([dx * k, yy, z])
            rad.append(rr * a)
        top = z3 + 0.3 * s.vertebrae["T3"].height_mm
        x3, y3, w3, d3 = self.spine(z3)
        pts.append([4.0 * k, 0.5 * (f4 + 36.0 * k + self.vfront(z3)), top + 4.0])
        pts.append([x3 + 0.5 * w3 + 4.0, self.vfront(z4) + 4.0, z4 + 2.0])
        for lvl in ("T6", "T8", "T10", "T12", "L1", "L2", "L3"):
            z = self.lz(lvl)
            x, y, w, d = self.spine(z)
            if lvl in ("T6", "T8", "T10"):
                p = [x + 0.5 * w + 2.0, y - 0.3 * d - 4.0, z]
                rr = 12.0 if lvl == "T6" else 11.5
            else:
                p = [x + 6.0 * k, y - 0.5 * d - 13.0 * a, z]
                rr = 11.0 if lvl == "T12" else 10.0
            pts.append(p)
            rad.append(rr * a)
        rad.insert(3, 14.0 * a)
        rad.insert(4, 12.5 * a)
        pts = np.array(pts)
        r.tube(pts, np.array(rad), self.t["blood"], n_out=60)
        self._calcify(pts, np.array(rad))
        # arch branches up to the neck
        zt = self.lz("C6")
        for dx, rr, lat in ((-8.0, 6.5, -30.0), (4.0, 4.5, 12.0), (14.0, 5.5, 35.0)):
            p0 = [dx * k, 0.5 * (f4 + 36.0 * k + self.vfront(z3)), top + 6.0]
            p1 = [lat * k, self.vfront(self.lz("T1")) - 12.0 * k, self.lz("T1")]
            p2 = [lat * k * 1.15, self.vfront(zt) - 8.0 * k, zt]
            r.tube(np.array([p0, p1, p2]), np.array([rr, rr * 0.95, rr * 0.9]) * k, self.t["blood"], n_out=12)
        # superior vena cava and brachiocephalic veins
        zs = self.lz("T2")
        svc = np.array([[-26.0 * k, self.front(zs) + 30.0 * k, zs + 5.0],
                        [-24.0 * k, self.front(z5) + 42.0 * k, z5],
                        [-22.0 * k, self.front(z7) + 55.0 * k, self.lz("T6", -0.5)]])
        r.tube(svc, np.array([9.0, 10.0, 10.0]) * k, self.t["blood"], n_out=10)
        bcv = np.array([[45.0 * k, self.front(zs) + 22.0 * k, zs + 12.0],
                        [0.0, self.front(zs) + 18.0 * k, zs + 6.0], svc[0]])
        r.tube(bcv, np.array([6.0, 6.5, 8.0]) * k, self.t["blood"], n_out=10)
        # pulmonary trunk and arteries
        zp = self.lz("T5", -0.2)
        pt0 = [18.0 * k, self.front(z7) + 40.0 * k, self.lz("T7", 0.8)]
        pt1 = [14.0 * k, self.front(zp) + 48.0 * k, zp]
        r.tube(np.array([pt0, pt1]), np.array([14.0, 13.0]) * k, self.t["blood"], n_out=6)
        yb = self.vfront(zp)
        self.hila = {
            1.0: np.array([55.0 * k, yb - 14.0 * k, zp - 4.0]),
            -1.0: np.array([-52.0 * k, yb - 18.0 * k, zp - 10.0]),
        }
        for side in (1.0, -1.0):
            mid = [side * 30.0 * k, yb - 24.0 * k, zp + (2.0 if side > 0 else -4.0)]
            r.tube(np.array([pt1, mid, self.hila[side]]), np.array([12.0, 10.5, 9.0]) * k,
                   self.t["blood"], n_out=10)
        # inferior vena cava (through the liver) and azygos vein
        zh = self.heart_c[2] - 0.55 * self.heart_r[2]
        ivc = [[-30.0 * k, self.heart_c[1] + 18.0 * k, zh]]
        for lvl in ("T11", "L1", "L3"):
            z = self.lz(lvl)
            x, y, w, d = self.spine(z)
            ivc.append([x - 0.35 * w - 12.0 * k, y - 0.5 * d - 14.0 * k, z])
        r.tube(np.array(ivc), np.array([13.0, 12.0, 11.5, 11.0]) * k, self.t["blood"], n_out=14)
        self.ivc = np.array(ivc)
        az = []
        for lvl in ("T4", "T7", "T10", "T12"):
            z = self.lz(lvl)
            x, y, w, d = self.spine(z)
            az.append([x - 0.3 * w, y - 0.5 * d - 2.0, z])
        az[0] = [az[0][0] - 6.0, az[0][1] - 14.0, az[0][2] + 4.0]
        r.tube(np.array(az), np.array([4.5, 3.5, 3.2, 3.0]) * k, self.t["blood"], n_out=12)

    def _calcify(self, pts, rad):
        r, s = self.r, self.s
        rng = np.random.default_rng([s.seed, 37])
        n = int(rng.poisson(max(0.0, (s.age_years - 48.0) / 3.0)))
        from ._raster import smooth_polyline
        path = smooth_polyline(pts, 80)
        rr = np.interp(np.linspace(0, 1, 80), np.linspace(0, 1, len(rad)), rad)
        for _ in range(n):
            j = int(rng.integers(10, 80))
            tang = _unit(path[min(j + 1, 79)] - path[j - 1])
            d = _unit(np.cross(tang, rng.normal(0, 1, 3)))
            p = path[j] + d * rr[j] * 0.95
            size = float(rng.uniform(1.0, 3.0))
            r.ellipsoid(p, _frame_from_axis(tang), (size * 1.6, size, 1.0), r.bone(float(rng.uniform(300, 900))))

    def airways_and_esophagus(self):
        r, s, k = self.r, self.s, self.k
        zt = self.lz("C6")
        zc = self.lz("T5", 0.4)
        pts = []
        for z in (zt, self.lz("C7"), self.lz("T1"), self.lz("T3"), zc):
            pts.append([-2.0 * k, self.vfront(z) - 21.0 * k, z])
        pts = np.array(pts)
        air = self.t["air"]
        r.tube(pts, np.full(len(pts), 10.5 * k), self.t["muscle"], n_out=16, inner=(1.8 * k, air))
        self.trachea = pts
        carina = pts[-1]
        ends = {}
        self.bronchi = []
        for side, dx, dz, rad in ((-1.0, -26.0, -24.0, 7.0), (1.0, 40.0, -34.0, 6.2)):
            p1 = carina + np.array([dx * k, 6.0 * k, dz * k])
            r.tube(np.array([carina, p1]), np.array([rad, rad * 0.95]) * k + 1.2, self.t["muscle"],
                   inner=(1.2, air))
            ends[side] = p1
        # lobar bronchi: upper and lower per side (right middle from the lower)
        self.lobes = []
        for side, p1 in ends.items():
            up = p1 + np.array([side * 22.0 * k, 4.0 * k, 16.0 * k])
            low = p1 + np.array([side * 12.0 * k, 14.0 * k, -36.0 * k])
            for q, rad, target in ((up, 4.6, [side * 70.0, 0.0, 60.0]), (low, 5.0, [side * 60.0, 30.0, -70.0])):
                r.tube(np.array([p1, q]), np.array([rad + 1.0, rad + 0.8]) * k, self.t["muscle"],
                       inner=(1.0, air), lung_only=False)
                self.lobes.append((q, _unit(np.asarray(target) + np.array([0.0, 0.0, 0.0])), side))
            if side < 0:  # right middle lobe: anterolateral
                mid = p1 + np.array([-14.0 * k, -10.0 * k, -22.0 * k])
                self.lobes.append((mid, _unit([-50.0, -70.0, -30.0]), side))
        # oesophagus: behind the trachea, then in front-right of the aorta, to the cardia
        eso = []
        for lvl, dx, dy in (("C6", 2.0, -5.0), ("T1", 4.0, -6.0), ("T4", 6.0, -5.0), ("T7", 3.0, -7.0),
                            ("T9", 6.0, -12.0), ("T11", 18.0, -24.0)):
            z = self.lz(lvl)
            eso.append([dx * k, self.vfront(z) + dy * k, z])
        z12 = self.lz("T11", -0.8)
        eso.append([38.0 * k, self.vfront(z12) - 40.0 * k, z12])
        eso = np.array(eso)
        r.tube(eso, np.full(len(eso), 7.5 * k), self.t["muscle"] - 8.0, n_out=24)
        rng = np.random.default_rng([s.seed, 41])
        if rng.random() < 0.5:
            r.tube(eso[:4], np.full(4, 1.8 * k), air, n_out=10)
        self.cardia = eso[-1]

    def lungs(self):
        """Bronchovascular trees filling each lung: arteries (with bronchi) from the lobar
        bronchi and veins toward the left atrium, grown by recursive bisection of random
        target points inside the lung (thin branches splatted as partial-volume fractions)."""
        r, s, k = self.r, self.s, self.k
        rng = np.random.default_rng(s.streams["lungs"])
        pix = self.r.g.pixel_mm
        n_points = int(np.clip(2200.0 * (0.8 / pix) ** 2, 150, 2400))
        segs = []
        for side in (-1.0, 1.0):
            pts = self._lung_points(rng, side, n_points)
            if len(pts) < 8:
                continue
            roots = [(q, lobe_side) for q, _, lobe_side in self.lobes if lobe_side == side]
            # assign points to the nearest lobar root (oblique fissure approximation)
            d = np.stack([np.linalg.norm(pts - q, axis=1) for q, _ in roots], axis=1)
            owner = np.argmin(d, axis=1)
            for i, (q, _) in enumerate(roots):
                self._tree(q, pts[owner == i], segs, artery=True, rng=rng)
            veins = self._lung_points(rng, side, n_points)
            la = self.heart_c + np.array([side * 28.0 * k - 5.0,
                                          0.55 * (self.vfront(self.heart_c[2]) - self.heart_c[1]), 18.0 * k])
            upper = veins[:, 2] > la[2] + 25.0
            for sel, dz in ((upper, 22.0), (~upper, -8.0)):
                root = la + np.array([side * 18.0 * k, 0.0, dz * k])
                self._tree(root, veins[sel], segs, artery=False, rng=rng)
        if not segs:
            return
        segs = np.array(segs, dtype=np.float64)  # p0(3), p1(3), r0, r1, bronchus
        blood, air, wall = self.t["blood"], self.t["air"], self.t["muscle"]
        thick = segs[:, 6] >= max(1.6, 1.2 * pix)
        for row in segs[thick]:
            p0, p1, r0, r1, bronchus = row[:3], row[3:6], row[6], row[7], row[8]
            r.tube(np.array([p0, p1]), np.array([r0, r1]), blood, lung_only=True)
            if bronchus:
                off = _unit(np.cross(p1 - p0, [0.3, 0.2, 0.9])) * (1.9 * r0 + 1.0)
                rb = 0.85 * np.array([r0, r1])
                r.tube(np.array([p0, p1]) + off, rb + 0.5 + 0.15 * rb, wall, lung_only=True,
                       inner=(0.5 + 0.15 * r1, air))
        r.splat_tubes(segs[~thick, 0:3], segs[~thick, 3:6], 0.5 * (segs[~thick, 6] + segs[~thick, 7]),
                      blood, lung_only=True)

    def _lung_points(self, rng, side, n):
        """Random points inside one lung (rejection sampling)."""
        r = self.r
        lat, _ = self.lateral(self.lz("T6"))
        zlo = self.s.diaphragm["recess_z"]
        zhi = r.apex["z"]
        out = []
        for _ in range(12):
            m = 4 * n
            p = np.stack([side * rng.uniform(5.0, lat, m), rng.uniform(self.front(self.lz("T6")) - 10.0,
                                                                   r.y_gutter_dome + 20.0, m),
                          rng.uniform(zlo, zhi, m)], axis=1)
            ok = self._in_lung(p)
            out.append(p[ok])
            if sum(len(o) for o in out) >= n:
                break
        pts = np.concatenate(out)[:n]
        return pts

    def _in_lung(self, p):
        """Vectorized test that patient points lie in lung parenchyma (with a 3 mm margin)."""
        r = self.r
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        ok = (z > r.diaphragm_z(x, y) + 3.0) & (z < r.ceiling_z(x, y) - 3.0)
        _, yc = r.torso.cage_at(np.zeros_like(z), z)
        th = np.arctan2(y - yc, x)
        cage, _ = r.torso.cage_at(th, z)
        ok &= np.hypot(x, y - yc) < cage - 3.0
        xs, ys = self.s.spine_at_z(z)
        w, d = self.s.body_size_at_z(z)
        ok &= ~((np.abs(x - xs) < 0.5 * w + 18.0) & (y > ys - 0.5 * d - 20.0))
        ok &= ~((np.abs(x - xs) < 30.0) & (y < ys - 0.5 * d))
        if hasattr(self, "heart_c"):
            q = (p - self.heart_c) @ self.heart_frame.T / (self.heart_r + 6.0)
            ok &= np.sum(q * q, axis=1) > 1.0
        return ok

    def _tree(self, root, pts, segs, *, artery, rng, r_term=0.5):
        """Grow a tree from `root` toward `pts` by recursive bisection (Murray radii)."""
        if len(pts) == 0:
            return
        k = self.k
        stack = [(np.asarray(root, dtype=np.float64), pts, 0)]
        while stack:
            p, sub, gen = stack.pop()
            n = len(sub)
            if n <= 2:
                for q in sub:
                    segs.append((*p, *q, r_term * k, r_term * k * 0.8, 0.0))
                continue
            centered = sub - sub.mean(axis=0)
            axis = np.linalg.svd(centered, full_matrices=False)[2][0]
            proj = centered @ axis
            order = np.argsort(proj)
            halves = (sub[order[: n // 2]], sub[order[n // 2:]])
            for half in halves:
                c = half.mean(axis=0)
                alpha = rng.uniform(0.4, 0.6) if len(half) > 2 else 0.75
                q = p + (c - p) * alpha + rng.normal(0.0, 1.0, 3)
                rad = r_term * k * len(half) ** (1.0 / 2.7)
                segs.append((*p, *q, rad, rad * 0.92, 1.0 if (artery and rad > 2.2) else 0.0))
                stack.append((q, half, gen + 1))

    # -- abdomen -----------------------------------------------------------------------------
    def abdomen(self):
        r, s, k = self.r, self.s, self.k
        t = self.t
        dr, dl = s.diaphragm["right_top_z"], s.diaphragm["left_top_z"]
        lat, yc = self.lateral(dr - 40.0)
        yf = self.front(dr - 40.0)
        yg = r.y_gutter_dome
        depth = yg - yf
        # liver (right lobe + left lobe), clipped below the diaphragm
        liver_c = np.array([-0.42 * lat, yf + 0.55 * depth, dr - 60.0 * k])
        r.ellipsoid(liver_c, np.eye(3), (0.62 * lat, 0.6 * depth, 95.0 * k), t["liver"], region="abdomen")
        r.ellipsoid([8.0 * k, yf + 0.28 * depth, dr - 30.0 * k], np.eye(3), (62.0 * k, 0.3 * depth, 42.0 * k),
                    t["liver"], region="abdomen")
        # hepatic veins into the IVC
        ivc_top = self.ivc[0] + np.array([0.0, 0.0, -22.0 * k])
        for ang in (-2.3, -1.6, -0.9):
            tip = ivc_top + np.array([math.cos(ang) * 70.0 * k, math.sin(ang) * 40.0 * k - 10.0, 18.0 * k])
            r.tube(np.array([ivc_top, tip]), np.array([5.5, 2.0]) * k, t["blood"] - 8.0, region="abdomen")
        # gallbladder
        r.ellipsoid([-0.32 * lat, yf + 0.3 * depth, self.lz("L1", 0.6)], _frame_from_axis([0.2, -0.4, -1.0]),
                    (38.0 * k, 15.0 * k, 13.0 * k), 12.0, region="abdomen")
        # spleen along the 10th rib
        r.ellipsoid([0.72 * lat, yg - 32.0 * k, dl - 55.0 * k], _frame_from_axis([0.35, 0.5, 0.8]),
                    (58.0 * k, 38.0 * k, 22.0 * k), t["spleen"], region="abdomen")
        # stomach with an air-fluid level (air anterior: the patient is supine)
        sc = np.array([0.36 * lat, yf + 0.35 * depth, dl - 40.0 * k])
        sf = _frame_from_axis([0.4, -0.3, -1.0])
        srad = np.array([58.0, 40.0, 34.0]) * k
        r.ellipsoid(sc, sf, srad, t["muscle"] - 5.0, region="abdomen")
        rng = np.random.default_rng(s.streams["bowel"])
        level = float(rng.uniform(-0.3, 0.5))
        fluid = t["blood"] - 25.0

        def lumen_value(box):
            yw = self.r.g.y[box[1]][None, :, None] - 0.0
            ycut = self.r.pw(sc + np.array([0.0, level * srad[1], 0.0]))[1]
            w = np.clip((ycut - yw) / 2.0 + 0.5, 0.0, 1.0).astype(np.float32)
            return w

        res = r.ellipsoid(sc, sf, srad - 4.0 * k, fluid, region="abdomen")
        if res is not None:
            box, sd = res
            from ._raster import coverage
            f = coverage(sd, np.float32(r.g.pixel_mm)) * r.region_weight(box, "abdomen") * lumen_value(box)
            r.hu[box] += f * (np.float32(t["air"]) - r.hu[box])
        # kidneys with renal sinus fat
        for side, lvl, dz in ((1.0, "T12", -6.0), (-1.0, "L1", 4.0)):
            z = self.lz(lvl) + dz * k
            x, y, w, d = self.spine(z)
            c = np.array([x + side * (0.5 * w + 40.0 * k), y + 2.0 * k, z - 20.0 * k])
            fr = _frame_from_axis([-side * 0.25, 0.25, 1.0])
            r.ellipsoid(c, fr, (56.0 * k, 27.0 * k, 22.0 * k), t["kidney"], region="abdomen")
            r.ellipsoid(c + np.array([-side * 9.0 * k, -3.0, 0.0]), fr, (30.0 * k, 10.0 * k, 9.0 * k),
                        t["fat"], region="abdomen")
        # pancreas from the splenic hilum toward the duodenum
        z = self.lz("L1", 0.4)
        x, y, w, d = self.spine(z)
        pan = np.array([[0.55 * lat, y - 0.5 * d - 20.0 * k, z + 15.0 * k],
                        [10.0 * k, y - 0.5 * d - 42.0 * k, z],
                        [-40.0 * k, y - 0.5 * d - 44.0 * k, z - 14.0 * k]])
        r.tube(pan, np.array([9.0, 12.0, 14.0]) * k, t["muscle"] - 8.0, region="abdomen", n_out=10)
        # psoas and quadratus lumborum
        for side in (-1.0, 1.0):
            ps, ql = [], []
            for lvl, rad in (("T12", 4.0), ("L1", 9.0), ("L2", 13.0), ("L3", 17.0), ("L4", 21.0), ("L5", 24.0)):
                z = self.lz(lvl)
                x, y, w, d = self.spine(z)
                ps.append([x + side * (0.5 * w + rad * 0.55), y - 0.05 * d, z, rad * k])
                ql.append([x + side * (0.5 * w + 36.0 * k), y + 0.5 * d + 12.0 * k, z, (8.0 + rad * 0.35) * k])
            ps, ql = np.array(ps), np.array(ql)
            fp = float(r.appearance["fat_planes"])
            if fp > 0:  # fat sheaths: retroperitoneal fat outlining the muscles
                sheath = 0.8 + 3.0 * fp
                r.tube(ps[:, :3], ps[:, 3] + sheath, t["fat"], region="abdomen", n_out=16)
                r.tube(ql[1:, :3], ql[1:, 3] + 0.6 * sheath, t["fat"], region="abdomen", n_out=12)
            r.tube(ps[:, :3], ps[:, 3], t["muscle"], n_out=16)
            r.tube(ql[1:, :3], ql[1:, 3], t["muscle"], n_out=12)
        # colon (with gas) and small-bowel loops
        zc = self.lz("L1", -0.8)
        lat2, _ = self.lateral(zc)
        yf2 = self.front(zc)
        colon = np.array([[-0.72 * lat2, yf2 + 70.0 * k, zc - 60.0 * k], [-0.7 * lat2, yf2 + 50.0 * k, zc + 5.0],
                          [-0.3 * lat2, yf2 + 28.0 * k, zc - 8.0], [0.3 * lat2, yf2 + 30.0 * k, zc - 2.0],
                          [0.72 * lat2, yf2 + 60.0 * k, zc + 35.0 * k], [0.75 * lat2, yf2 + 85.0 * k, zc - 60.0 * k]])
        rc = np.array([22.0, 21.0, 19.0, 19.0, 20.0, 18.0]) * k
        r.tube(colon, rc, t["bowel"], region="abdomen", n_out=40)
        gas = float(rng.uniform(0.3, 0.85))
        r.tube(colon + np.array([0.0, -(1 - gas) * 8.0, 0.0]), rc * gas, t["air"], region="abdomen", n_out=40)
        for _ in range(int(rng.integers(6, 12))):
            c = np.array([rng.uniform(-0.5, 0.5) * lat2, yf2 + rng.uniform(35.0, 90.0) * k,
                          zc - rng.uniform(10.0, 90.0) * k])
            rad = rng.uniform(10.0, 16.0) * k
            fr = _frame_from_axis(rng.normal(0, 1, 3))
            r.ellipsoid(c, fr, (rad * 1.8, rad, rad), t["bowel"] + rng.uniform(-10, 10), region="abdomen")
            if rng.random() < 0.3:
                r.ellipsoid(c + np.array([0.0, -0.4 * rad, 0.0]), fr, (rad * 0.9, rad * 0.4, rad * 0.4),
                            t["air"], region="abdomen")

    def breasts(self):
        r, s = self.r, self.s
        if s.breast_mm <= 0:
            return
        z = self.lz("T5")
        tab = r.torso.tables([z])
        for side in (-1.0, 1.0):
            th = -math.pi / 2 + side * 0.62
            i = int((th + math.pi) / (2 * math.pi) * N_THETA) % N_THETA
            rad = float(tab["fat"][0][i]) + 0.3 * s.breast_mm
            c = np.array([rad * math.cos(th), float(tab["yc"][0]) + rad * math.sin(th), z])
            size = 0.45 * s.breast_mm + 8.0
            r.ellipsoid(c, np.eye(3), (size * 1.3, size * 0.7, size * 1.1), self.t["fibroglandular"])
