"""Spine, ribs, sternum, clavicles and shoulder bones, with their truth labels (private).

Vertebral body (local frame u superior, v posterior, w left): a superellipse
cross-section (rounder in front, flat behind), slightly waisted, with concave
endplates; a cortical shell of ``shell_mm`` (endplates included) around a
trabecular interior of density ``rho`` plus a zero-mean texture; a basivertebral
vein (posterior-central channel); optional wedge compression and sclerotic focus.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from . import _appearance, _physics
from ._anatomy import MODEL_LEVELS, _RIB_SHAPE
from ._raster import _local, coverage, paint
from ._render import _PE_SHELL_MG_CM3, _RIB_SHELL_MG_CM3, _SHELL_MG_CM3, _unit
from ._torso import N_THETA
from ..levels import level_id, segmentation_class

_EPS = 1e-6

#: Trabecular texture: SD in HU at the bone line of the scan, and FWHM (z, in-plane) in mm.
TEXTURE_FWHM_MM = (3.0, 1.8, 1.8)


def _kind(name):
    return name[0]


def body_sd(U, V, W, *, height, width, depth, wedge=0.0, concavity=1.2, waist=0.06,
            bulge=0.0, flat_back=True, grow=0.0, components=False, post_concave=0.0, tilt=0.0,
            taper=0.0, asym=0.0, n_ant=2.4):
    """Signed distance (mm) of a vertebral body or disc in local coordinates; plus a flag
    array telling whether the endplate (u) term is the active one (or, with
    ``components=True``, the wall and endplate distances separately).

    Irregular shapes: `post_concave` bows the posterior wall forward in the middle
    (fraction of the posterior half-depth), `tilt` makes one side taller than the other
    (fraction of the half-height per half-width, coronal wedge), `taper` widens the body
    toward one endplate, `asym` widens one side, `n_ant` is the superellipse exponent of
    the anterior outline (2 round, larger boxier).
    """
    half_h = np.float32(0.5 * height)
    uu = np.clip(U / half_h, -1.5, 1.5)
    wst = 1.0 - np.float32(waist) * (1.0 - np.clip(uu * uu, 0.0, 1.0))
    if bulge:
        wst = wst + np.float32(bulge) * (1.0 - np.clip(uu * uu, 0.0, 1.0))
    aw = np.float32(0.5 * width) * wst
    if taper:
        aw = aw * (1.0 + np.float32(taper) * np.clip(uu, -1.0, 1.0))
    if asym:
        aw = aw * np.where(W > 0, np.float32(1.0 + asym), np.float32(1.0 - asym))
    ant = V < 0
    av = np.where(ant, np.float32(0.55 * depth) * wst, np.float32(0.45 * depth))
    if post_concave:
        q = np.clip((W / aw) ** 2, 0.0, 1.0)
        av = np.where(ant, av, np.float32(0.45 * depth) * (1.0 - np.float32(post_concave) * (1.0 - q)))
    n = np.where(ant, np.float32(n_ant), np.float32(4.0 if flat_back else 2.6))
    g = (np.abs(W / aw) ** n + np.abs(V / av) ** n) ** (1.0 / n)
    rr = np.sqrt(W * W + V * V)
    sd_xy = rr * (1.0 - 1.0 / np.maximum(g, np.float32(_EPS)))
    rho2 = np.clip(g, 0.0, 1.0) ** 2
    ramp = np.clip(0.5 - V / np.float32(depth), 0.0, 1.0)
    hl = half_h * (1.0 - np.float32(wedge) * ramp) + np.float32(grow) * ramp
    if tilt:
        hl = hl * (1.0 + np.float32(tilt) * np.clip(W / np.float32(0.5 * width), -1.0, 1.0))
    conc = np.float32(concavity + 2.5 * wedge) * (1.0 - rho2)
    sd_u = np.abs(U) - (hl - conc)
    if components:
        return sd_xy, sd_u, g
    return np.maximum(sd_xy, sd_u), sd_u > sd_xy, g


def _ellipsoid_sd_local(a, b, c, ra, rb, rc):
    """Signed distance (mm, radial approximation) of an axis-aligned ellipsoid in local coordinates."""
    g = np.sqrt((a / np.float32(ra)) ** 2 + (b / np.float32(rb)) ** 2 + (c / np.float32(rc)) ** 2)
    return np.sqrt(a * a + b * b + c * c) * (1.0 - 1.0 / np.maximum(g, np.float32(_EPS)))


class Skeleton:
    """Paints bones onto a :class:`~bmdqct.synthetic._render.Renderer` and fills its labels."""

    def __init__(self, renderer):
        self.r = renderer
        self.s = renderer.s
        self.g = renderer.g
        self.rng_calc = np.random.default_rng(self.s.streams["calcification"])
        self.ap = renderer.appearance
        self._looks = {}

    def look(self, name):
        """Appearance of a body (:class:`~bmdqct.synthetic._appearance.LevelLook`), cached."""
        if name not in self._looks:
            self._looks[name] = _appearance.level_look(self.s, name, self.ap)
        return self._looks[name]

    def body_shape(self, name):
        """Keyword arguments of :func:`body_sd` for body `name` (its irregular shape included)."""
        v, look = self.s.vertebrae[name], self.look(name)
        return dict(height=v.height_mm, width=v.width_mm, depth=v.depth_mm, wedge=v.wedge + look.wedge,
                    **look.shape)

    # -- helpers -------------------------------------------------------------------------
    def _world_frame(self, v):
        c = self.r.pw(v.center)
        fr = self.r.dw(v.frame)
        return c, fr

    def _levels_in_view(self, margin=40.0):
        out = []
        for name in MODEL_LEVELS:
            v = self.s.vertebrae[name]
            z = float(self.r.pw(v.center)[2])
            if self.r.in_z(z - margin, z + margin):
                out.append(name)
        return out

    def _box(self, c, half):
        return self.g.box(c - half, c + half)

    def _texture(self, name, shape, fwhm_mm=TEXTURE_FWHM_MM, key=()):
        """Unit-SD Gaussian random field of granularity `fwhm_mm` (z, y, x) on a body's box."""
        seq = self.s.streams["texture"]
        ss = np.random.SeedSequence(entropy=seq.entropy,
                                    spawn_key=tuple(seq.spawn_key) + (MODEL_LEVELS.index(name),) + tuple(key))
        rng = np.random.default_rng(ss)
        field = rng.standard_normal(shape, dtype=np.float32)
        sigma = _physics.psf_sigma_voxels(fwhm_mm, self.g.spacing)
        field = ndimage.gaussian_filter(field, sigma, mode="nearest", truncate=3.0)
        sd = float(field.std())
        if sd > 0:
            field *= np.float32(1.0 / sd)
        return field

    # -- spine -------------------------------------------------------------------------------
    def spine(self):
        names = self._levels_in_view()
        if not names:
            return
        idx = [MODEL_LEVELS.index(n) for n in names]
        lo, hi = max(0, min(idx) - 1), min(len(MODEL_LEVELS) - 1, max(idx) + 1)
        names = list(MODEL_LEVELS[lo:hi + 1])
        for upper, lower in zip(names[:-1], names[1:]):
            self._disc(upper, lower)
        for name in names:
            self._canal(name)
        for name in names:
            self._body(name)
        for name in names:
            self._posterior(name)
        if self.r.want_labels:
            self._separate_bodies(names)

    def _disc(self, upper, lower):
        r, s = self.r, self.s
        vu, vl = s.vertebrae[upper], s.vertebrae[lower]
        pu = vu.center - vu.frame[0] * 0.5 * vu.height_mm
        pl = vl.center + vl.frame[0] * 0.5 * vl.height_mm
        center = 0.5 * (pu + pl)
        axis = _unit(pu - pl)
        thick = float(np.linalg.norm(pu - pl))
        e_v = _unit(0.5 * (vu.frame[1] + vl.frame[1]) - axis * float(axis @ (0.5 * (vu.frame[1] + vl.frame[1]))))
        e_w = np.cross(e_v, axis)
        frame = np.stack([axis, e_v, e_w])
        width = 0.5 * (vu.width_mm + vl.width_mm)
        depth = 0.5 * (vu.depth_mm + vl.depth_mm)
        c = r.pw(center)
        fr = r.dw(frame)
        half = np.array([0.6 * width + 6, 0.6 * depth + 6, 0.5 * thick + 8.0])
        ext = np.abs(fr.T) @ half[[2, 1, 0]]
        box = self._box(c, ext)
        if box is None:
            return
        z, y, x = self.g.coords(box)
        U, V, W = _local(z, y, x, c, fr)
        lu, ll = self.look(upper), self.look(lower)
        grow = 0.5 * ((vu.wedge + lu.wedge) * vu.height_mm + (vl.wedge + ll.wedge) * vl.height_mm)
        # the disc overlaps both bodies (painted over it) by 1.5 mm, more where an irregular
        # endplate retreats further, so no gap opens between a disc and its bodies
        extra = 2.0 * max(lu.height_loss_mm, ll.height_loss_mm)
        sd, on_u, gval = body_sd(U, V, W, height=thick + 3.0 + extra, width=width, depth=depth,
                                 concavity=0.0, waist=0.0, bulge=0.05, grow=grow)
        nz2 = np.where(on_u, np.float32(fr[0][2] ** 2), np.float32(0.5 * (fr[1][2] ** 2 + fr[2][2] ** 2)))
        f = coverage(sd, self.g.ramp_width(nz2))
        t = r.tissue
        value = np.float32(t["disc"] - 15.0) + np.float32(28.0) * np.clip(gval, 0, 1) ** 2
        paint(r.hu, box, f, value)
        # vacuum phenomenon (gas) in some degenerated discs: by default lower discs of
        # older subjects; with vacuum_disc_rate, any disc from T4 down at that rate
        li = MODEL_LEVELS.index(lower)
        rate = self.ap["vacuum_disc_rate"]
        if rate is None:
            if s.age_years > 58 and li >= MODEL_LEVELS.index("T10"):
                u = np.random.default_rng([s.seed, li, 7]).random(3)
                if u[0] < 0.02 * (s.age_years - 55):
                    q = (W / np.float32(0.12 * width * (0.7 + 0.5 * u[1]))) ** 2 + \
                        ((V + np.float32(0.15 * depth)) / np.float32(0.1 * depth)) ** 2 + \
                        (U / np.float32(max(0.18 * thick, 0.8))) ** 2
                    fg = np.clip((1.0 - q) * 2.0, 0.0, 1.0) * f
                    paint(r.hu, box, fg, np.float32(-850.0))
        elif li >= MODEL_LEVELS.index("T4"):
            u = np.random.default_rng([s.seed, li, 7]).random(6)
            if u[0] < rate:
                self._vacuum(box, U, V, W, f, width, depth, thick, u)

    def _vacuum(self, box, U, V, W, f, width, depth, thick, u):
        """Gas in a disc: a central collection or a thin horizontal cleft (nitrogen, -500..-900 HU)."""
        if u[1] < 0.5:  # rounded collection in the anterior-central nucleus
            q = (W / np.float32(0.12 * width * (0.7 + 0.8 * u[2]))) ** 2 + \
                ((V + np.float32((0.05 + 0.2 * u[3]) * depth)) / np.float32((0.08 + 0.08 * u[4]) * depth)) ** 2 + \
                (U / np.float32(max(0.2 * thick, 0.8))) ** 2
        else:  # linear cleft across much of the disc
            q = (W / np.float32((0.2 + 0.2 * u[2]) * width)) ** 2 + \
                ((V + np.float32(0.1 * depth)) / np.float32((0.15 + 0.15 * u[3]) * depth)) ** 2 + \
                (U / np.float32(max(0.12 * thick, 0.5))) ** 2
        fg = np.clip((1.0 - q) * 2.0, 0.0, 1.0) * f
        paint(self.r.hu, box, fg, np.float32(-900.0 + 350.0 * u[5]))

    def _canal(self, name):
        r, v = self.r, self.s.vertebrae[name]
        rv, rw = self._canal_size(name)
        c = v.center + v.frame[1] * (0.45 * v.depth_mm + rv + 1.0)
        p_top = c + v.frame[0] * (0.5 * v.height_mm + 0.6)
        p_bot = c - v.frame[0] * (0.5 * v.height_mm + v.disc_below_mm + 0.6)
        pts = np.stack([p_top, p_bot])
        e1 = np.stack([v.frame[1], v.frame[1]])
        r.tube(pts, np.array([[rv, rw], [rv, rw]]), r.tissue["fat"] + 10.0, e1=e1)
        r.tube(pts, np.array([[0.72 * rv, 0.78 * rw]] * 2), r.tissue["csf"], e1=e1)

    def _canal_size(self, name):
        k = self.s.size
        if name[0] == "C":
            return 6.5 * k, 11.5 * k
        if name[0] == "T":
            return 7.5 * k, 8.0 * k
        return 8.5 * k, 11.0 * k

    def _body(self, name):
        r, s = self.r, self.s
        v = s.vertebrae[name]
        look = self.look(name)
        c, fr = self._world_frame(v)
        half = np.array([0.5 * v.width_mm + 4, 0.55 * v.depth_mm + 4, 0.5 * v.height_mm + 5.0])
        if look.shape:  # room for a tapered, asymmetric or tilted body
            half = half + np.array([0.1 * v.width_mm, 0.05 * v.depth_mm, 0.1 * v.height_mm])
        ext = np.abs(fr.T) @ half[[2, 1, 0]]
        box = self._box(c, ext)
        if box is None:
            return
        z, y, x = self.g.coords(box)
        U, V, W = _local(z, y, x, c, fr)
        sd_xy, sd_u, _ = body_sd(U, V, W, components=True, **self.body_shape(name))
        sd = np.maximum(sd_xy, sd_u)
        on_u = sd_u > sd_xy
        nz2 = np.where(on_u, np.float32(fr[0][2] ** 2), np.float32(0.5 * (fr[1][2] ** 2 + fr[2][2] ** 2)))
        width = self.g.ramp_width(nz2)
        f_out = coverage(sd, width)
        if not np.any(f_out):
            return
        if look.classic:
            paint(r.hu, box, f_out, r.bone(_SHELL_MG_CM3))
            # thin side walls, thicker endplates
            wall = np.float32(v.shell_mm)
            endplate = np.float32(v.shell_mm + 0.45)
        else:
            wall, wall_rho = _appearance.wall_fields(look, U, V, W, 0.5 * v.height_mm)
            endplate, ep_rho = _appearance.endplate_fields(look, U)
            # shell density: the endplate's where the endplate layer is the inner one
            t_ep = np.clip(((sd_u + endplate) - (sd_xy + wall)) / np.float32(0.6) + 0.5, 0.0, 1.0)
            rho_out = wall_rho + t_ep * (ep_rho - wall_rho)
            if look.wall_variation > 0:  # mottled shell and endplates (outside the trabecular truth)
                grain = self._texture(name, sd.shape, (3.0, 3.0, 3.0), key=(2,))
                rho_out = rho_out * np.clip(1.0 + np.float32(0.3 * look.wall_variation) * grain, 0.4, 1.8)
            paint(r.hu, box, f_out, r.bone(rho_out.astype(np.float32)))
        sd_in = np.maximum(sd_xy + wall, sd_u + endplate)
        f_in = coverage(sd_in, width)
        # basivertebral vein: posterior-central channel to the posterior wall
        vu = np.float32(0.11 * v.height_mm)
        v0 = np.float32(0.45 * v.depth_mm)
        sd_vein = np.minimum(_ellipsoid_sd_local(U, V - (v0 - 5.0), W, vu, 5.0, 1.8),
                             _ellipsoid_sd_local(U, V - (v0 - 0.5), W, 0.8 * vu, 3.0, 1.4))
        # sclerotic focus (bone island)
        sd_scl = np.full_like(sd, 1e3)
        scl = s.sclerotic
        if scl is not None and scl["level"] == name:
            o = scl["offset_local"]
            rad = np.float32(scl["radius_mm"])
            dist = np.sqrt((U - np.float32(o[0])) ** 2 + (V - np.float32(o[1])) ** 2
                           + (W - np.float32(o[2])) ** 2)
            sd_scl = dist - rad
        trab = (sd_in < 0) & (sd_vein > 0) & (sd_scl > 0)
        sd_isl = _appearance.islands_sd(look.islands, U, V, W)  # focal fatty marrow, not trabecular truth
        if sd_isl is not None:
            trab &= sd_isl > 0
        tex = self._body_texture(name, sd.shape, trab)
        value = np.float32(r.bone(v.density_mg_cm3)) + tex
        paint(r.hu, box, f_in, value)
        pix = np.float32(self.g.pixel_mm)
        f_vein = np.clip(0.5 - sd_vein / pix, 0.0, 1.0) * f_in
        paint(r.hu, box, f_vein, r.tissue["blood"])
        if scl is not None and scl["level"] == name:
            paint(r.hu, box, coverage(sd_scl, pix) * f_in, r.bone(scl["density_mg_cm3"]))
        if sd_isl is not None:
            for island in look.islands:
                one = _appearance.islands_sd([island], U, V, W)
                fat_fraction = island[2]
                marrow = (1.0 - fat_fraction) * r.bone(v.density_mg_cm3) + fat_fraction * r.tissue["fat"]
                paint(r.hu, box, coverage(one, pix) * f_in, np.float32(marrow))
        if self.ap["osteophytes"] is None:
            self._osteophytes(v, c, fr)
        else:
            self._rims(v, look)
        if r.want_labels:
            ident = level_id(name)
            inside = sd < 0
            if np.any(inside):
                r.levels[box][inside] = ident
                r.classes[box][inside] = segmentation_class(name)
                r.trabecular[box][trab] = ident
                r.body_boxes[name] = box

    def _body_texture(self, name, shape, trab):
        """Zero-mean (over `trab`) trabecular texture in HU: fine grain plus coarse marrow patches."""
        r = self.r
        tex = np.zeros(shape, dtype=np.float32)
        if not np.any(trab):
            return tex
        marrow_hu = float(self.ap["marrow_mg_cm3"]) * r.b
        if r.texture_hu > 0:
            scale = float(self.ap["texture_scale_mm"])
            fwhm = TEXTURE_FWHM_MM if scale == _appearance.CLASSIC_TEXTURE_SCALE_MM else (
                scale * 5.0 / 3.0, scale, scale)
            tex = self._texture(name, shape, fwhm)
            tex *= np.float32(r.texture_hu)
        if marrow_hu > 0:
            patches = _appearance.patchy(self._texture(name, shape, _appearance.MARROW_FWHM_MM, key=(1,)))
            tex += patches * np.float32(marrow_hu)
        if r.texture_hu > 0 or marrow_hu > 0:
            tex -= np.float32(tex[trab].mean())  # exactly zero-mean over the true trabecular interior
        return tex

    def _rims(self, v, look):
        """Marginal osteophyte rims: solid bony lips along part of an endplate margin, growing
        outward and toward the disc from the body's corner (not part of the body mask)."""
        r = self.r
        if not look.rims:
            return
        n_ant = look.shape.get("n_ant", 2.4)
        value = r.bone(0.5 * (_PE_SHELL_MG_CM3 + v.density_mg_cm3))
        for end, centre, span, protrusion in look.rims:
            th = np.linspace(centre - 0.5 * span, centre + 0.5 * span, max(4, int(span * 5) + 1))
            cos_t, sin_t = np.cos(th), np.sin(th)
            # the endplate margin: superellipse outline, anterior (v < 0) or posterior half
            aw, av = 0.5 * v.width_mm, np.where(cos_t >= 0, 0.55, 0.45) * v.depth_mm
            wv = aw * np.sign(sin_t) * np.abs(sin_t) ** (2.0 / n_ant)
            vv = -av * np.sign(cos_t) * np.abs(cos_t) ** (2.0 / n_ant)
            grow = np.sin(np.linspace(0.0, np.pi, th.size)) ** 0.6  # lips are largest mid-arc
            p = protrusion * grow
            radial = np.stack([vv, wv], 1)
            radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-6)
            out = 0.3 * p
            lift = 0.5 * v.height_mm - 0.6 + 0.35 * p
            pts = (v.center[None, :] + v.frame[0][None, :] * (end * lift)[:, None]
                   + v.frame[1][None, :] * (vv + radial[:, 0] * out)[:, None]
                   + v.frame[2][None, :] * (wv + radial[:, 1] * out)[:, None])
            radii = np.stack([0.7 + 0.45 * p, 0.7 + 0.45 * p], 1)
            r.tube(pts, radii, value, e1=np.tile(v.frame[0], (len(pts), 1)))

    def _osteophytes(self, v, c, fr):
        """Small anterolateral marginal spurs in older subjects (T6-L5)."""
        s, r = self.s, self.r
        li = MODEL_LEVELS.index(v.name)
        if s.age_years < 55 or li < MODEL_LEVELS.index("T6"):
            return
        u = np.random.default_rng([s.seed, li, 11]).random(6)
        if u[0] > 0.03 * (s.age_years - 50):
            return
        for j, end in enumerate((1.0, -1.0)):
            if u[1 + j] < 0.4:
                continue
            side = 1.0 if u[3 + j] > 0.5 else -1.0
            ang = (u[5] - 0.5) * 1.6 + side * 0.7
            base = (v.center + v.frame[0] * end * 0.5 * v.height_mm
                    + v.frame[1] * (-0.5 * v.depth_mm * math.cos(ang))
                    + v.frame[2] * (0.45 * v.width_mm * math.sin(ang)))
            outward = _unit(v.frame[1] * (-math.cos(ang)) + v.frame[2] * math.sin(ang))
            tip = base + outward * (2.5 + 3.0 * u[1 + j]) + v.frame[0] * end * 2.5
            r.tube(np.stack([base - outward * 2.0, tip]), np.array([3.0, 1.2]),
                   r.bone(_PE_SHELL_MG_CM3 - 150.0))

    def _pe_segments(self, name):
        """Posterior-element capsules (p0, p1, e1, radii0, radii1) in the patient frame."""
        s = self.s
        v = s.vertebrae[name]
        c, (eu, ev, ew) = v.center, v.frame
        h, wd, dp = v.height_mm, v.width_mm, v.depth_mm
        k = s.size
        rv, rw = self._canal_size(name)
        kind = name[0]
        v0 = 0.45 * dp
        vc = v0 + rv + 1.0
        cw = rw + 0.5
        rp = {"C": 3.0, "T": 3.6, "L": 4.8}[kind] * k
        segs = []
        num = int(name[1:])
        for side in (-1.0, 1.0):
            pa = c + ev * (v0 - 2.5) + ew * side * (cw + 2.0) + eu * 0.12 * h
            pb = c + ev * (vc + 0.3 * rv) + ew * side * (cw + 2.8) + eu * 0.08 * h
            pc = c + ev * (vc + rv + 4.0) + eu * (-0.05 * h)
            segs.append((pa, pb, eu, (0.3 * h, rp), (0.3 * h, rp)))
            segs.append((pb, pc, eu, (0.42 * h, 2.8 * k), (0.42 * h, 2.6 * k)))
            # transverse process
            if kind == "T" or (kind == "L" and name == "L1" and s.n_rib_pairs == 13):
                tip = c + ev * (vc + 13.0 * k) + ew * side * (0.5 * wd + 17.0 * k) + eu * 0.2 * h
                segs.append((pb, tip, eu, (4.2 * k, 3.8 * k), (5.0 * k, 4.2 * k)))
            elif kind == "L":
                length = {1: 14.0, 2: 20.0, 3: 26.0, 4: 22.0, 5: 20.0}[num] * k
                tip = c + ev * (vc + 1.0) + ew * side * (0.5 * wd + length) + eu * 0.05 * h
                segs.append((pb, tip, eu, (4.5 * k, 3.2 * k), (3.0 * k, 2.2 * k)))
            else:
                length = 16.0 * k if num == 7 else 9.0 * k
                tip = c + ev * (vc - 3.0) + ew * side * (0.5 * wd + length) + eu * 0.05 * h
                segs.append((pb, tip, eu, (3.6 * k, 3.2 * k), (3.0 * k, 2.6 * k)))
            # articular processes
            ps = c + ev * (vc + 0.3 * rv) + ew * side * (cw + 4.5) + eu * 0.15 * h
            segs.append((ps, ps + eu * (0.5 * h + 0.8 * v.disc_below_mm) + ev * 1.5, ev,
                         (4.2 * k, 3.4 * k), (3.6 * k, 3.0 * k)))
            pi = c + ev * (vc + rv + 1.0) + ew * side * (cw + 2.8) - eu * 0.1 * h
            segs.append((pi, pi - eu * (0.5 * h + 0.9 * v.disc_below_mm) + ev * 2.0, ev,
                         (4.0 * k, 3.2 * k), (3.4 * k, 2.8 * k)))
        # spinous process
        pc = c + ev * (vc + rv + 4.0) + eu * (-0.05 * h)
        if kind == "T":
            tilt = {1: 25, 2: 30, 3: 38, 4: 45}.get(num, 58 if num <= 9 else 35)
            length = 38.0 * k
        elif kind == "L":
            tilt, length = 6, 30.0 * k
        else:
            tilt, length = (18, 38.0 * k) if num == 7 else (15, 24.0 * k)
        a = math.radians(tilt)
        tip = pc + ev * length * math.cos(a) - eu * length * math.sin(a)
        vert = 0.25 * h if kind != "L" else 0.4 * h
        segs.append((pc, tip, eu, (vert, 2.8 * k), (0.7 * vert, 3.4 * k)))
        return segs

    def _posterior(self, name):
        r, s = self.r, self.s
        v = s.vertebrae[name]
        segs = self._pe_segments(name)
        pts = np.array([p for seg in segs for p in seg[:2]])
        lo = r.pw(pts).min(axis=0) - 10.0
        hi = r.pw(pts).max(axis=0) + 10.0
        box = self.g.box(lo, hi)
        if box is None:
            return
        shape = tuple(sl.stop - sl.start for sl in box)
        sd = np.full(shape, np.float32(1e3))
        width = np.full(shape, np.float32(self.g.pixel_mm))
        from ._raster import capsule_sd
        for p0, p1, e1, r0, r1 in segs:
            w0, w1 = r.pw(p0), r.pw(p1)
            rad = max(max(r0), max(r1)) + 2 * self.g.spacing[0]
            sub = self.g.box(np.minimum(w0, w1) - rad, np.maximum(w0, w1) + rad)
            if sub is None:
                continue
            sub = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(sub, box))
            if any(a.stop <= a.start for a in sub):
                continue
            d, w, _ = capsule_sd(self.g, sub, w0, w1, r.dw(e1), r0, r1)
            loc = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(sub, box))
            cur = sd[loc]
            better = d < cur
            cur[better] = d[better]
            width[loc][better] = w[better]
        f = coverage(sd, width)
        if not np.any(f):
            return
        # never paint over the vertebral body itself
        c, fr = self._world_frame(v)
        z, y, x = self.g.coords(box)
        U, V, W = _local(z, y, x, c, fr)
        bsd, _, _ = body_sd(U, V, W, **self.body_shape(name))
        keep = np.clip(bsd / np.float32(self.g.pixel_mm) + 0.5, 0.0, 1.0)
        f *= keep
        paint(r.hu, box, f, r.bone(_PE_SHELL_MG_CM3))
        fi = coverage(sd + np.float32(1.0), width) * keep
        paint(r.hu, box, fi, r.bone(2.0 * v.density_mg_cm3 + 120.0))

    def _separate_bodies(self, names):
        """Clear voxels of a body that touch (26-neighbourhood) the body above it."""
        r = self.r
        struct = np.ones((3, 3, 3), dtype=bool)
        for upper, lower in zip(names[:-1], names[1:]):
            bu, bl = r.body_boxes.get(upper), r.body_boxes.get(lower)
            if bu is None or bl is None:
                continue
            box = tuple(slice(max(min(a.start, b.start) - 1, 0), max(a.stop, b.stop) + 1)
                        for a, b in zip(bu, bl))
            lev = r.levels[box]
            up = lev == level_id(upper)
            lo = lev == level_id(lower)
            if not (up.any() and lo.any()):
                continue
            touch = ndimage.binary_dilation(up, struct) & lo
            if touch.any():
                lev[touch] = 0
                r.classes[box][touch] = 0
                trab = r.trabecular[box]
                trab[touch] = 0

    # -- ribs ------------------------------------------------------------------------------
    def ribs(self):
        s, r = self.s, self.r
        for name in s.rib_levels:
            v = s.vertebrae[name]
            if v.rib_scale <= 0:
                continue
            for side in (-1.0, 1.0):
                self._rib(v, side)

    def _rib(self, v, side):
        s, r, torso = self.s, self.r, self.r.torso
        num = v.rib_number
        frac, drop, sternal = _RIB_SHAPE[num]
        k = s.size
        c, (eu, ev, ew) = v.center, v.frame
        h, wd, dp = v.height_mm, v.width_mm, v.depth_mm
        rv, _ = self._canal_size(v.name)
        vc = 0.45 * dp + rv + 1.0
        head = c + ew * side * (0.5 * wd + 3.0 * k) + ev * 0.25 * dp + eu * 0.42 * h
        tub = c + ev * (vc + 12.0 * k) + ew * side * (0.5 * wd + 15.5 * k) + eu * 0.15 * h
        z_angle = float(tub[2] - 4.0)
        tab = torso.tables([z_angle])
        y_g = float(tab["y_gutter"][0])
        angle_pt = np.array([side * (0.5 * wd + 40.0 * k), y_g + 3.0, z_angle])
        thick, tall = (6.5 * k, 2.8 * k) if num == 1 else ((2.4 * k, 4.6 * k) if num >= 11
                                                             else (2.8 * k, 5.4 * k))
        if num == 13:
            thick, tall = 2.2 * k, 3.8 * k
        # posterior part: head -> tubercle -> angle (roundish)
        post_pts = [head, tub, angle_pt]
        post_r = [(3.8 * k, 3.8 * k), (4.2 * k, 4.2 * k), (tall, thick)]
        # lateral/anterior part along the cavity wall
        yc = float(tab["yc"][0])
        th0 = math.atan2(angle_pt[1] - yc, abs(angle_pt[0]))
        th_st = -math.pi / 2 + 0.17
        bone_frac = frac * v.rib_scale
        n_bone = max(3, int(abs(th0 - th_st) * bone_frac * 140.0 / 8.0))
        psi = np.linspace(0.0, bone_frac, n_bone)
        dz = drop * k * psi ** 1.15
        th = th0 + psi * (th_st - th0)
        zs = z_angle - dz
        off = 1.5 + thick
        x, y = torso.cage_point(th, zs, offset_mm=off)
        arc = np.stack([side * x, y, zs], axis=1)
        pts = np.vstack([post_pts[:2], arc])
        radii = np.array(post_r[:2] + [(tall, thick)] * len(arc))
        if num == 13 or v.rib_scale < 0.2:
            n_keep = max(3, int(len(pts) * 0.5)) if num == 13 else 3
            pts, radii = pts[:n_keep], radii[:n_keep]
        # e1 = the tall direction: perpendicular to the cavity radial direction and to the rib
        e1 = []
        for i in range(len(pts)):
            j = min(i, len(pts) - 2)
            tangent = _unit(pts[j + 1] - pts[j])
            radial = np.array([pts[i][0], pts[i][1] - yc, 0.0])
            tall_dir = np.cross(tangent, _unit(radial) if np.linalg.norm(radial) > 1 else [0, 0, 1.0])
            if num == 1:
                tall_dir = np.cross(tangent, [0.0, 0.0, 1.0])  # rib 1 is flat: broad faces up/down
                tall_dir = np.cross(tall_dir, tangent)
            e1.append(_unit(tall_dir) if np.linalg.norm(tall_dir) > 1e-6 else np.array([0, 0, 1.0]))
        e1 = np.array(e1)
        label = (r.ribs, level_id(v.name)) if r.want_labels else None
        marrow = r.bone(0.5 * v.density_mg_cm3 + 40.0)
        r.tube(pts, radii, r.bone(_RIB_SHELL_MG_CM3), e1=e1, n_out=max(6, 2 * len(pts)),
               inner=(1.1, marrow), label=label)
        # costal cartilage
        if num <= 10 and v.rib_scale >= 0.99 and len(arc) >= 3:
            end_psi = 1.0 if sternal else 0.93
            up = {5: 8.0, 6: 18.0, 7: 28.0, 8: 32.0, 9: 34.0, 10: 30.0}.get(num, 0.0) * k
            psi_c = np.linspace(bone_frac, end_psi, max(3, int((end_psi - bone_frac) * 12) + 2))
            zc = z_angle - drop * k * bone_frac ** 1.15 + up * ((psi_c - bone_frac)
                                                              / max(end_psi - bone_frac, 1e-3)) ** 1.5
            thc = th0 + psi_c * (th_st - th0)
            xc, yc2 = torso.cage_point(thc, zc, offset_mm=1.5 + 4.5 * k)
            cart = np.stack([side * xc, yc2, zc], axis=1)
            r.tube(cart, np.array([5.5 * k, 4.5 * k]) * np.ones((len(cart), 2)), r.tissue["cartilage"],
                   n_out=max(4, 2 * len(cart)))
            # calcification of costal cartilage with age
            lam = max(0.0, (s.age_years - 45.0) / 12.0)
            for _ in range(int(self.rng_calc.poisson(lam))):
                j = int(self.rng_calc.integers(0, len(cart)))
                rad = float(self.rng_calc.uniform(1.0, 2.6))
                r.ellipsoid(cart[j] + self.rng_calc.normal(0, 1.5, 3), np.eye(3), (rad, rad, rad),
                            r.bone(float(self.rng_calc.uniform(250, 600))))

    # -- sternum, clavicles, shoulders ------------------------------------------------------
    def sternum(self):
        s, r, torso = self.s, self.r, self.r.torso
        k = s.size
        v = s.vertebrae
        z_top = float(v["T2"].center[2] + 0.5 * v["T2"].height_mm + 4.0)
        z_man = float(v["T4"].center[2] + 2.0)
        z_bot = float(v["T9"].center[2] - 0.2 * v["T9"].height_mm)
        z_x = float(v["T10"].center[2] - 0.3 * v["T10"].height_mm)
        if not r.in_z(z_x - 10, z_top + 10):
            return
        zs = np.array([z_top, 0.5 * (z_top + z_man), z_man - 2.0, z_man + -6.0,
                       0.5 * (z_man + z_bot), z_bot, z_x])
        _, yfront = torso.cage_point(np.full(zs.shape, -math.pi / 2), zs, offset_mm=0.0)
        ys = yfront - 7.0 * k
        half_w = np.array([27.0, 22.0, 16.0, 14.0, 15.5, 13.0, 7.0]) * k
        half_t = np.array([6.5, 6.5, 5.5, 5.0, 5.2, 4.8, 2.5]) * k
        pts = np.stack([np.zeros_like(zs), ys, zs], axis=1)
        e1 = np.tile([1.0, 0.0, 0.0], (len(pts), 1))
        marrow = r.bone(0.8 * v["T7"].density_mg_cm3 + 20.0)
        r.tube(pts, np.stack([half_w, half_t], 1), r.bone(700.0), e1=e1, n_out=24,
               inner=(1.2, marrow))
        self._clavicles(z_top, ys[0])

    def _clavicles(self, z_top, y_man):
        s, r, torso = self.s, self.r, self.r.torso
        k = s.size
        t1 = s.vertebrae["T1"]
        tab = torso.tables([t1.center[2]])
        lat = float(tab["cage"][0][N_THETA // 2])
        for side in (-1.0, 1.0):
            pts = np.array([
                [side * 22.0 * k, y_man - 4.0, z_top + 4.0],
                [side * 60.0 * k, y_man - 12.0, z_top + 12.0],
                [side * (lat - 5.0), y_man + 18.0, z_top + 22.0],
                [side * (lat + 25.0), float(t1.center[1]) - 25.0, z_top + 32.0],
            ])
            radii = np.array([[9.5, 8.0], [7.0, 6.0], [6.5, 5.5], [7.5, 5.0]]) * k
            r.tube(pts, radii, r.bone(750.0), n_out=14, inner=(1.3, r.bone(160.0)))

    def shoulders(self):
        """Glenoid, scapular spine, humeral heads (arms raised) at the top of the chest."""
        s, r = self.s, self.r
        k = s.size
        v = s.vertebrae
        z1 = float(v["T1"].center[2] + 0.2 * v["T1"].height_mm)
        if not r.in_z(z1 - 60, z1 + 120):
            return
        x_lat = 125.0 * k
        y0 = float(v["T2"].center[1]) + 8.0
        for side in (-1.0, 1.0):
            glen = np.array([side * (x_lat + 6.0), y0 - 12.0, z1 + 4.0])
            r.ellipsoid(glen, np.eye(3), (9.0 * k, 13.0 * k, 17.0 * k), r.bone(700.0))
            r.ellipsoid(glen, np.eye(3), (7.5 * k, 11.5 * k, 15.5 * k), r.bone(220.0))
            spine_pts = np.array([[side * 65.0 * k, y0 + 14.0, z1 - 35.0],
                                  [side * (x_lat - 10.0), y0 + 18.0, z1 + 2.0],
                                  [side * (x_lat + 18.0), y0 + 6.0, z1 + 25.0]])
            r.tube(spine_pts, np.array([[7.0, 3.0], [8.0, 3.5], [9.0, 4.0]]) * k, r.bone(650.0),
                   n_out=10, inner=(1.2, r.bone(200.0)))
            head = glen + np.array([side * 26.0 * k, -4.0, 14.0 * k])
            rad = 23.0 * k
            r.ellipsoid(head, np.eye(3), (rad, rad, rad), r.bone(520.0))
            r.ellipsoid(head, np.eye(3), (rad - 1.5, rad - 1.5, rad - 1.5), r.bone(160.0))
            shaft = np.array([head + [side * 6.0, 0.0, 10.0], head + [side * 25.0, -8.0, 140.0 * k]])
            r.tube(shaft, np.array([12.0, 11.0]) * k, r.bone(900.0), inner=(3.0, r.bone(60.0)))

