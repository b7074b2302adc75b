"""Appearance variety of synthetic vertebrae and paraspinal soft tissue (private).

These options of :func:`~bmdqct.synthetic.synthesize_ldct` change how bone and
the tissue around the spine *look* (cortex, endplates, trabecular texture,
marrow, body shape, discs, fat planes) while the truth stays exact:

* a body mask is wherever the body's signed distance is negative, whatever its shape;
* the trabecular mask is the interior inside the wall and endplates minus the
  excluded foci (basivertebral vein, sclerotic focus, fatty islands); thicker
  (sclerotic) endplates shrink it;
* every texture (fine trabecular grain, coarse marrow patches) is made exactly
  zero-mean over that mask, so :attr:`Truth.density_mg_cm3` stays the mean mineral.

Every default reproduces the classic appearance bit for bit. ``None`` draws the value
from the subject seed (stream ``"appearance"``) over the range in
:data:`APPEARANCE_OPTIONS`, except where ``None`` means "the subject's own"
(cortical and endplate thickness from age, osteophytes and vacuum discs from age).
Per-level variation is drawn from ``[seed, level index, 41]``, never from the grid,
so every grid samples the same subject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._anatomy import MODEL_LEVELS

#: Classic density of the vertebral cortical shell and endplates (mg K2HPO4/cm³).
CLASSIC_SHELL_MG_CM3 = 650.0
#: Classic texture grain (in-plane FWHM, mm); the through-plane FWHM is 5/3 of it.
CLASSIC_TEXTURE_SCALE_MM = 1.8
#: Coarse marrow patches: FWHM (z, y, x) in mm of the underlying Gaussian field.
MARROW_FWHM_MM = (7.5, 5.0, 5.0)

#: name -> (default, accepted (lo, hi), range drawn from the seed when None, or None when
#: None means "the subject's own" (a rule of its age and seed)).
APPEARANCE_OPTIONS = {
    "cortical_mg_cm3": (CLASSIC_SHELL_MG_CM3, (100.0, 1200.0), (250.0, 800.0)),
    "cortical_mm": (None, (0.2, 2.5), None),
    "cortical_variation": (0.0, (0.0, 1.0), (0.0, 1.0)),
    "endplate_mg_cm3": (CLASSIC_SHELL_MG_CM3, (100.0, 1500.0), (300.0, 700.0)),
    "endplate_mm": (None, (0.2, 5.0), None),
    "endplate_sclerosis": (0.0, (0.0, 1.0), (0.0, 0.4)),
    "texture_scale_mm": (CLASSIC_TEXTURE_SCALE_MM, (0.5, 8.0), (1.0, 4.0)),
    "marrow_mg_cm3": (0.0, (0.0, 100.0), (0.0, 40.0)),
    "fat_islands": (0.0, (0.0, 6.0), (0.0, 1.5)),
    "shape_irregularity": (0.0, (0.0, 1.0), (0.0, 1.0)),
    "osteophytes": (None, (0.0, 1.0), None),
    "disc_height_sd": (0.0, (0.0, 0.5), (0.0, 0.3)),
    "vacuum_disc_rate": (None, (0.0, 1.0), None),
    "fat_planes": (0.0, (0.0, 1.0), (0.0, 1.0)),
    "soft_texture_hu": (0.0, (0.0, 60.0), (0.0, 20.0)),
}

#: Existing options whose None also draws from the seed (same stream, after the ones above).
EXTRA_DRAWN = {"texture_mg_cm3": (8.0, 60.0), "psf_fwhm_mm": (0.7, 2.5)}

# skew of the seed draws: value = lo + (hi - lo) * u ** power
_DRAW_POWER = {"fat_islands": 2.0, "endplate_sclerosis": 1.5, "soft_texture_hu": 1.5,
               "psf_fwhm_mm": 1.5, "texture_mg_cm3": 1.3}


def classic_appearance() -> dict:
    """The defaults of :data:`APPEARANCE_OPTIONS` (the classic appearance)."""
    return {name: spec[0] for name, spec in APPEARANCE_OPTIONS.items()}


def draw_appearance(opt: dict, stream) -> dict:
    """Values for the options left None that are drawn from the seed (a new dict of those only).

    The stream always yields the same sequence (one uniform per drawable option, in a
    fixed order), so which options are None never changes the others' draws.
    """
    names = [n for n, spec in APPEARANCE_OPTIONS.items() if spec[2] is not None] + list(EXTRA_DRAWN)
    u = np.random.default_rng(stream).random(len(names))
    out = {}
    for name, ui in zip(names, u):
        if opt.get(name) is not None:
            continue
        lo, hi = APPEARANCE_OPTIONS[name][2] if name in APPEARANCE_OPTIONS else EXTRA_DRAWN[name]
        out[name] = round(lo + (hi - lo) * float(ui) ** _DRAW_POWER.get(name, 1.0), 4)
    return out


def is_classic_bone(ap: dict) -> bool:
    """True when the bone options give the classic appearance (walls, endplates, shape)."""
    return (ap["cortical_mg_cm3"] == CLASSIC_SHELL_MG_CM3 and ap["endplate_mg_cm3"] == CLASSIC_SHELL_MG_CM3
            and ap["cortical_mm"] is None and ap["endplate_mm"] is None and ap["cortical_variation"] == 0
            and ap["endplate_sclerosis"] == 0 and ap["shape_irregularity"] == 0)


@dataclass
class LevelLook:
    """Appearance of one vertebral body (patient frame, mm; densities mg/cm³)."""

    classic: bool
    shape: dict = field(default_factory=dict)  # extra keyword arguments of body_sd
    wedge: float = 0.0  # physiological anterior wedging (fraction of height)
    height_loss_mm: float = 0.0  # most the endplate surface retreats vs the classic body
    wall_mm: float = 0.85
    wall_mg_cm3: float = CLASSIC_SHELL_MG_CM3
    wall_variation: float = 0.0
    harmonics: tuple = ()  # (k, amplitude, phase) of the wall's variation around the body
    endplate_mm: tuple = (1.3, 1.3)  # (superior, inferior)
    endplate_mg_cm3: tuple = (CLASSIC_SHELL_MG_CM3, CLASSIC_SHELL_MG_CM3)
    islands: list = field(default_factory=list)  # (centre (u, v, w), radii (u, v, w), fat fraction)
    rims: list = field(default_factory=list)  # (end +1/-1, centre angle, span, protrusion mm)
    # angles are atan2(w, -v): 0 anterior, +-pi/2 lateral


def level_look(subject, name: str, ap: dict) -> LevelLook:
    """Draw the appearance of level `name` from ``[seed, level index, 41]`` and the options."""
    v = subject.vertebrae[name]
    li = MODEL_LEVELS.index(name)
    rng = np.random.default_rng([subject.seed, li, 41])
    u = rng.random(40)
    z = rng.standard_normal(8)
    n_islands = int(min(rng.poisson(ap["fat_islands"]), 6)) if ap["fat_islands"] > 0 else 0
    ui = rng.random((6, 7))
    look = LevelLook(classic=is_classic_bone(ap))
    irr = float(ap["shape_irregularity"])
    wall = float(v.shell_mm if ap["cortical_mm"] is None else ap["cortical_mm"])
    endplate = wall + 0.45 if ap["endplate_mm"] is None else float(ap["endplate_mm"])
    cort = float(ap["cortical_mg_cm3"])
    ep_rho = float(ap["endplate_mg_cm3"])
    if irr > 0:
        thoracic = name[0] == "T"
        concavity = max(0.4, 1.2 + irr * (2.4 * u[1] - 0.8))
        tilt = 0.05 * irr * (2.0 * u[3] - 1.0)
        look.wedge = (0.08 if thoracic else 0.035) * irr * u[4]
        look.shape = {"waist": 0.06 + 0.13 * irr * u[0], "concavity": concavity,
                      "post_concave": 0.12 * irr * u[2], "tilt": tilt,
                      "taper": 0.07 * irr * (2.0 * u[5] - 1.0), "asym": 0.05 * irr * (2.0 * u[6] - 1.0),
                      "n_ant": 2.4 + irr * (1.4 * u[7] - 0.5)}
        look.height_loss_mm = (max(0.0, concavity - 1.2) + 0.5 * v.height_mm * (abs(tilt) + look.wedge)
                               + 0.3)
        wall *= float(np.clip(1.0 + 0.2 * irr * z[0], 0.6, 1.5))
        cort *= float(np.clip(1.0 + 0.15 * irr * z[1], 0.6, 1.5))
        ep_rho *= float(np.clip(1.0 + 0.15 * irr * z[2], 0.6, 1.5))
        endplate *= float(np.clip(1.0 + 0.2 * irr * z[3], 0.6, 1.6))
    ep = [endplate, endplate]
    ep_d = [ep_rho, ep_rho]
    if u[8] < ap["endplate_sclerosis"]:
        ends = (0,) if u[9] < 0.35 else ((1,) if u[9] < 0.7 else (0, 1))
        for e in ends:
            ep[e] = endplate + 0.5 + 1.0 * float(u[10 + e])
            ep_d[e] = max(ep_rho, min(600.0, max(ep_rho, cort) * (1.0 + 0.25 * float(u[12 + e]))))
    look.wall_mm, look.wall_mg_cm3 = wall, cort
    look.endplate_mm, look.endplate_mg_cm3 = tuple(ep), tuple(ep_d)
    cv = float(ap["cortical_variation"])
    look.wall_variation = cv
    if cv > 0:
        look.harmonics = tuple((k, 0.35 * float(u[13 + k]), 2 * math.pi * float(u[17 + k])) for k in (1, 2, 3))
    for j in range(n_islands):
        a = ui[j]
        centre = ((2 * a[0] - 1) * 0.28 * v.height_mm, (a[1] - 0.6) * 0.55 * v.depth_mm,
                  (2 * a[2] - 1) * 0.28 * v.width_mm)
        r_xy = 1.8 + 3.2 * a[3]
        radii = (r_xy * (0.7 + 0.6 * a[4]), r_xy, r_xy * (0.8 + 0.4 * a[5]))
        look.islands.append((centre, radii, 0.45 + 0.45 * float(a[6])))
    p_rim = ap["osteophytes"]
    if p_rim is not None and u[24] < p_rim:
        for e, end in enumerate((1.0, -1.0)):
            if u[25 + e] < 0.75:
                centre = (2 * u[27 + e] - 1) * 1.0  # angle atan2(w, -v): 0 anterior, +-pi/2 lateral
                span = 0.8 + 2.0 * float(u[29 + e])
                look.rims.append((end, centre, span, 1.5 + 4.5 * float(u[31 + e])))
    return look


def wall_fields(look: LevelLook, U, V, W, half_height):
    """Wall thickness (mm) and density (mg/cm³) around the body: scalars or float32 arrays.

    With ``wall_variation`` the side (lateral) walls are fainter and thinner than the
    anterior and posterior walls, plus smooth random harmonics around the body and a
    gradient along its height (the skeleton adds a 3-mm mottle to walls and endplates).
    """
    if look.wall_variation <= 0:
        return np.float32(look.wall_mm), np.float32(look.wall_mg_cm3)
    theta = np.arctan2(W, -V)  # 0 anterior, +-pi/2 lateral
    f = 0.45 * np.cos(2.0 * theta)
    for k, amp, phase in look.harmonics:
        f = f + np.float32(amp) * np.cos(k * theta + np.float32(phase))
    f = f + np.float32(0.15) * np.clip(U / np.float32(half_height), -1.0, 1.0)
    f *= np.float32(look.wall_variation)
    rho = np.float32(look.wall_mg_cm3) * np.clip(1.0 + f, 0.15, 2.0)
    mm = np.float32(look.wall_mm) * np.clip(1.0 + 0.6 * f, 0.3, 1.8)
    return mm.astype(np.float32), rho.astype(np.float32)


def endplate_fields(look: LevelLook, U):
    """Endplate thickness and density: scalars when both ends agree, else arrays by the sign of U."""
    (t_sup, t_inf), (d_sup, d_inf) = look.endplate_mm, look.endplate_mg_cm3
    if t_sup == t_inf and d_sup == d_inf:
        return np.float32(t_sup), np.float32(d_sup)
    sup = U > 0
    return (np.where(sup, np.float32(t_sup), np.float32(t_inf)),
            np.where(sup, np.float32(d_sup), np.float32(d_inf)))


def islands_sd(islands, U, V, W):
    """Signed distance (mm, radial approximation) to the nearest of `islands`, or None if none."""
    if not islands:
        return None
    out = None
    for (cu, cv, cw), (ru, rv, rw), _ in islands:
        a, b, c = U - np.float32(cu), V - np.float32(cv), W - np.float32(cw)
        g = np.sqrt((a / np.float32(ru)) ** 2 + (b / np.float32(rv)) ** 2 + (c / np.float32(rw)) ** 2)
        sd = np.sqrt(a * a + b * b + c * c) * (1.0 - 1.0 / np.maximum(g, np.float32(1e-6)))
        out = sd if out is None else np.minimum(out, sd)
    return out


def patchy(field):
    """Sparse bright and (commoner, larger) dark patches from a unit Gaussian field, unit SD."""
    out = np.where(field < 0, np.float32(-1.4) * np.maximum(-field - np.float32(0.6), 0.0),
                   np.maximum(field - np.float32(1.0), 0.0)).astype(np.float32)
    out -= np.float32(out.mean())
    sd = float(out.std())
    if sd > 0:
        out *= np.float32(1.0 / sd)
    return out
