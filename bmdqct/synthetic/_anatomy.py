"""Seeded anatomy of a synthetic chest/upper-abdomen subject in continuous mm (private).

Patient frame: x to the patient's left, y posterior, z superior (mm), with the
skin of the back on the plane y = 0 (the patient lies supine on the couch) and
z = 0 at the centre of L1. Nothing here depends on a voxel grid: the renderer
samples this description on any grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _population

#: Levels modelled, cranio-caudal. Only those inside a scan are rendered.
MODEL_LEVELS = ("C3", "C4", "C5", "C6", "C7",
                *(f"T{n}" for n in range(1, 13)),
                *(f"L{n}" for n in range(1, 6)))

# Reference adult male vertebral body: height, width (LR), depth (AP), disc height below (mm).
_BODY_REF = {
    "C3": (14.0, 17.0, 15.0, 5.0), "C4": (14.0, 18.0, 15.5, 5.0), "C5": (13.5, 19.0, 16.0, 5.0),
    "C6": (13.5, 21.0, 16.5, 5.0), "C7": (14.5, 24.0, 16.5, 4.5),
    "T1": (16.0, 27.0, 17.0, 3.8), "T2": (17.0, 28.0, 18.0, 3.8), "T3": (17.5, 28.0, 19.0, 3.8),
    "T4": (18.0, 28.5, 21.0, 3.8), "T5": (18.5, 29.0, 22.0, 4.0), "T6": (19.0, 30.0, 23.5, 4.2),
    "T7": (19.5, 31.5, 25.0, 4.5), "T8": (20.0, 33.0, 26.0, 4.6), "T9": (21.0, 34.5, 27.0, 5.0),
    "T10": (22.0, 36.0, 28.0, 5.5), "T11": (23.0, 38.0, 29.0, 6.5), "T12": (24.0, 41.0, 30.0, 7.5),
    "L1": (25.0, 43.0, 31.5, 8.5), "L2": (26.0, 45.0, 33.0, 9.5), "L3": (26.5, 47.0, 34.0, 10.0),
    "L4": (26.5, 49.0, 34.5, 10.0), "L5": (26.0, 50.0, 34.0, 11.0),
}

# Lean torso (inside subcutaneous fat) half-width and depth (mm), reference male, at level centres.
_TORSO_KEYS = (
    ("C3", 48.0, 92.0), ("C5", 55.0, 100.0), ("C6", 62.0, 108.0), ("C7", 92.0, 128.0),
    ("T1", 128.0, 155.0), ("T2", 140.0, 172.0), ("T3", 145.0, 185.0), ("T5", 146.0, 198.0),
    ("T7", 144.0, 205.0), ("T9", 142.0, 206.0), ("T11", 139.0, 198.0), ("L1", 133.0, 182.0),
    ("L3", 133.0, 172.0), ("L5", 141.0, 176.0),
)

#: Ribs: (bony length as a fraction of the path from the angle to the sternum, drop of the anterior
#: end below the head in mm, joins the sternum by cartilage)
_RIB_SHAPE = {
    1: (0.80, 32.0, True), 2: (0.86, 52.0, True), 3: (0.87, 66.0, True), 4: (0.87, 76.0, True),
    5: (0.86, 84.0, True), 6: (0.84, 88.0, True), 7: (0.80, 90.0, True), 8: (0.74, 86.0, False),
    9: (0.68, 80.0, False), 10: (0.60, 70.0, False), 11: (0.42, 50.0, False), 12: (0.26, 32.0, False),
    13: (0.10, 14.0, False),
}


@dataclass(frozen=True)
class Vertebra:
    """One vertebra in the patient frame; frame rows are (superior, posterior, left) unit vectors."""

    name: str
    center: np.ndarray
    frame: np.ndarray
    height_mm: float
    width_mm: float
    depth_mm: float
    disc_below_mm: float
    density_mg_cm3: float
    shell_mm: float
    wedge: float = 0.0  # fraction of anterior height lost (fracture)
    rib_scale: float = 0.0  # 0: no rib; 1: a full rib of its number
    rib_number: int = 0


@dataclass
class Subject:
    """Everything about one synthetic patient, in the patient frame (mm)."""

    seed: int
    sex: str
    age_years: float
    size: float
    fatness: float
    vertebrae: dict
    levels: tuple
    n_rib_pairs: int
    rib_levels: tuple
    spine_s: np.ndarray  # fine samples of the body centre line: arc length
    spine_xyz: np.ndarray  # (n, 3)
    torso_z: np.ndarray  # keyframe z
    torso_half_width: np.ndarray  # outer (skin) half width per keyframe
    torso_depth: np.ndarray  # outer depth per keyframe
    fat_post: np.ndarray
    fat_lat: np.ndarray
    fat_ant: np.ndarray
    breast_mm: float
    roll_rad: float
    offset_xy: tuple
    diaphragm: dict
    heart: dict
    vessels: dict
    anomalies: dict
    sclerotic: dict | None
    fracture: str | None
    streams: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    # -- geometry helpers ---------------------------------------------------------
    def spine_at_z(self, z):
        """(x, y) of the body centre line at height(s) z (interpolated)."""
        order = np.argsort(self.spine_xyz[:, 2])
        zs = self.spine_xyz[order, 2]
        x = np.interp(z, zs, self.spine_xyz[order, 0])
        y = np.interp(z, zs, self.spine_xyz[order, 1])
        return x, y

    def body_size_at_z(self, z):
        """Interpolated body (width, depth) at height(s) z."""
        zs = np.array([self.vertebrae[n].center[2] for n in self.levels])
        ws = np.array([self.vertebrae[n].width_mm for n in self.levels])
        ds = np.array([self.vertebrae[n].depth_mm for n in self.levels])
        order = np.argsort(zs)
        return np.interp(z, zs[order], ws[order]), np.interp(z, zs[order], ds[order])

    def level_z(self, name, frac=0.0):
        """z of a level's body centre, plus `frac` body heights upward."""
        v = self.vertebrae[name]
        return float(v.center[2] + frac * v.height_mm)

    def torso_at_z(self, z):
        """Outer half width, depth and fat thicknesses (post, lat, ant) at z."""
        args = (self.torso_z, )
        return tuple(np.interp(z, *args, arr) for arr in (
            self.torso_half_width, self.torso_depth, self.fat_post, self.fat_lat, self.fat_ant))


def _rot(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def subject_streams(seed: int) -> dict:
    """Independent random streams (SeedSequence) of a subject seed, by purpose."""
    root = np.random.SeedSequence(int(seed))
    # streams appended to this tuple never change the ones before them
    names = ("anatomy", "lungs", "bowel", "texture", "noise", "calcification", "scan", "density",
             "appearance", "discs")
    return dict(zip(names, root.spawn(len(names))))


def make_subject(seed: int, *, sex=None, age_years=None, n_rib_pairs=12, scoliosis_deg=0.0,
                 fracture=None, sclerotic=None, densities=None, disc_height_sd=0.0) -> Subject:
    """Draw a subject. `densities` maps every level in MODEL_LEVELS to mg/cm³ (or None: random).

    `disc_height_sd` (relative SD, 0 = reference heights) varies the height of each disc
    independently (degenerated narrow discs and tall ones), drawn from the ``"discs"`` stream.
    """
    streams = subject_streams(seed)
    rng = np.random.default_rng(streams["anatomy"])

    # --- who ------------------------------------------------------------------------
    u_sex, u_age = rng.random(2)
    sex = sex or ("F" if u_sex < 0.5 else "M")
    age = float(age_years) if age_years is not None else float(45.0 + 35.0 * u_age)
    size = float(np.clip(rng.normal(1.0, 0.045), 0.9, 1.1)) * (0.93 if sex == "F" else 1.0)
    fatness = float(np.clip(math.exp(rng.normal(0.0, 0.42)), 0.35, 2.8))
    width_var, depth_var = np.clip(rng.normal(1.0, 0.045, 2), 0.88, 1.12)
    kyphosis = float(np.clip(30.0 + 0.35 * (age - 40.0) + rng.normal(0.0, 7.0), 15.0, 65.0))
    lordosis = float(np.clip(45.0 + rng.normal(0.0, 8.0), 25.0, 65.0)) * 0.8  # supine
    cervical = float(np.clip(14.0 + rng.normal(0.0, 6.0), 0.0, 30.0))
    scol_sign = 1.0 if rng.random() < 0.35 else -1.0  # right-convex thoracic curves are commoner
    scol_apex = rng.uniform(-0.1, 0.1)
    roll = math.radians(float(rng.normal(0.0, 1.2)))
    offset = (float(rng.normal(0.0, 9.0)), float(rng.normal(0.0, 8.0)))
    rib12 = float(rng.uniform(0.45, 1.2))
    rib11 = float(rng.uniform(0.85, 1.1))
    lumbar_rib = float(rng.uniform(0.5, 1.0))
    disc_age = 1.0 - 0.0025 * max(age - 40.0, 0.0)
    level_size_noise = rng.normal(1.0, 0.025, (len(MODEL_LEVELS), 3))
    breast = float(rng.uniform(15.0, 45.0)) * fatness ** 0.5 if sex == "F" else 0.0
    inspiration = float(rng.normal(0.0, 7.0))
    heart_scale = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2))
    heart_shift = float(rng.normal(0.0, 6.0))
    aorta_scale = float(np.clip(1.0 + 0.004 * (age - 55.0) + rng.normal(0.0, 0.06), 0.85, 1.3))
    shell = float(np.clip(rng.normal(0.85, 0.1) - 0.004 * (age - 50.0), 0.5, 1.1))
    fracture_wedge = float(rng.uniform(0.25, 0.42))
    scl_params = rng.uniform(0, 1, 4)
    tilt_lr = float(rng.normal(0.0, 0.01))

    # --- vertebral bodies, stacked along the arc length ----------------------------------
    length_scale = size * (1.02 if sex == "M" else 0.98)
    disc_factor = np.ones(len(MODEL_LEVELS))
    if disc_height_sd > 0:
        z_disc = np.random.default_rng(streams["discs"]).standard_normal(len(MODEL_LEVELS))
        disc_factor = np.clip(np.exp(disc_height_sd * z_disc - 0.5 * disc_height_sd ** 2), 0.45, 1.8)
    sizes = {}
    s_top = 0.0
    tops = {}
    for i, name in enumerate(MODEL_LEVELS):
        h, w, d, disc = _BODY_REF[name]
        h *= length_scale * level_size_noise[i, 0]
        w *= size * width_var ** 0.3 * level_size_noise[i, 1]
        d *= size * level_size_noise[i, 2]
        disc *= length_scale * disc_age
        if disc_height_sd > 0:
            disc *= float(disc_factor[i])
        sizes[name] = (h, w, d, disc)
        tops[name] = s_top
        s_top += h + disc
    total = s_top
    s = np.arange(0.0, total + 0.25, 0.5)

    def seg(a, b):  # arc-length span of the bodies from level a to level b
        return tops[a], tops[b] + sizes[b][0]

    kappa = np.zeros_like(s)
    c0, c1 = seg("C3", "C7")
    t0, t1 = seg("T1", "T12")
    l0, l1 = seg("L1", "L5")
    kappa[(s >= c0) & (s < c1)] = math.radians(cervical) / (c1 - c0)
    kappa[(s >= t0) & (s < t1)] = -math.radians(kyphosis) / (t1 - t0)
    kappa[(s >= l0)] = math.radians(lordosis) / (l1 - l0)
    # smooth transitions (about 20 mm)
    kernel = np.exp(-0.5 * (np.arange(-80, 81) * 0.5 / 12.0) ** 2)
    kappa = np.convolve(np.pad(kappa, 80, mode="edge"), kernel / kernel.sum(), mode="valid")
    theta = np.cumsum(kappa) * 0.5
    s_apex = tops["T7"] + 0.5 * sizes["T7"][0]
    theta -= np.interp(s_apex, s, theta)
    # scoliosis: one C-shaped lateral curve from T4 to L2
    x_lat = np.zeros_like(s)
    if scoliosis_deg > 0:
        a0 = tops["T4"]
        a1 = tops["L2"] + sizes["L2"][0]
        span = a1 - a0
        amp = math.tan(math.radians(scoliosis_deg) / 2.0) * span / math.pi
        inside = (s >= a0) & (s <= a1)
        phase = (s[inside] - a0) / span
        shifted = np.clip(phase + scol_apex * np.sin(np.pi * phase), 0.0, 1.0)
        x_lat[inside] = scol_sign * amp * np.sin(np.pi * shifted)
    dxds = np.gradient(x_lat, 0.5)
    dyds = np.sin(theta)
    dzds = -np.cos(theta) * np.sqrt(np.clip(1.0 - dxds**2, 0.0, 1.0))
    y = np.cumsum(dyds) * 0.5
    z = np.cumsum(dzds) * 0.5
    pts = np.stack([x_lat, y, z], axis=1)
    # body centre of L1 at z = 0, apex depth from the back plane
    s_l1 = tops["L1"] + 0.5 * sizes["L1"][0]
    pts[:, 2] -= np.interp(s_l1, s, pts[:, 2])
    _, _, d7, _ = sizes["T7"]
    back_fat = 10.0 * fatness ** 0.8 + 3.0
    behind_apex = 0.5 * d7 + 48.0 * size + 6.0 + back_fat + 1.8
    pts[:, 1] += -behind_apex - np.interp(s_apex, s, pts[:, 1])

    # --- densities --------------------------------------------------------------------
    if densities is None:
        drng = np.random.default_rng(streams["density"])
        l1 = _population.draw_l1_density(age, sex, drng)
        densities = _population.level_profile(l1, MODEL_LEVELS, drng)

    # --- rib-bearing levels (transitional anatomy by the number of rib pairs) ------------
    thoracic = [f"T{n}" for n in range(1, 13)]
    if n_rib_pairs == 11:
        rib_levels = tuple(thoracic[:11])
    elif n_rib_pairs == 13:
        rib_levels = (*thoracic, "L1")
    else:
        rib_levels = tuple(thoracic)

    vertebrae = {}
    for i, name in enumerate(MODEL_LEVELS):
        h, w, d, disc = sizes[name]
        sc = tops[name] + 0.5 * h
        center = np.array([np.interp(sc, s, pts[:, k]) for k in range(3)])
        k0 = int(np.clip(np.searchsorted(s, sc), 1, len(s) - 2))
        tangent = pts[k0 - 1] - pts[k0 + 1]  # superior direction
        e_u = tangent / np.linalg.norm(tangent)
        e_v = np.array([0.0, 1.0, 0.0]) - e_u * e_u[1]
        e_v /= np.linalg.norm(e_v)
        e_w = np.cross(e_v, e_u)
        # axial rotation toward the convexity of a scoliosis, plus a little noise
        rot = 0.0
        if scoliosis_deg > 0:
            rot = -0.3 * math.radians(scoliosis_deg) * float(np.interp(sc, s, x_lat)) / max(
                1e-6, float(np.max(np.abs(x_lat))))
        rot += tilt_lr * (i % 3 - 1)
        r = _rot(e_u, rot)
        frame = np.stack([e_u, r @ e_v, r @ e_w])
        rib_number = (thoracic.index(name) + 1) if name in thoracic else (13 if name == "L1" else 0)
        rib_scale = 0.0
        if name in rib_levels:
            rib_scale = 1.0
            if rib_number == 12:
                rib_scale = rib12
            elif rib_number == 11:
                rib_scale = rib11 if n_rib_pairs != 11 else rib11 * 0.8
            elif rib_number == 13:
                rib_scale = lumbar_rib
        vertebrae[name] = Vertebra(
            name=name, center=center, frame=frame, height_mm=h, width_mm=w, depth_mm=d,
            disc_below_mm=disc, density_mg_cm3=float(densities[name]), shell_mm=shell,
            wedge=fracture_wedge if name == fracture else 0.0,
            rib_scale=rib_scale, rib_number=rib_number)

    # --- torso keyframes ----------------------------------------------------------------
    tz, thw, tdp, fpost, flat, fant = [], [], [], [], [], []
    for name, half_w, depth in _TORSO_KEYS:
        zc = float(vertebrae[name].center[2])
        sex_w = 0.9 if sex == "F" else 1.0
        sex_d = 0.93 if sex == "F" else 1.0
        abdomen = float(np.clip((-zc + 60.0) / 120.0, 0.0, 1.0))  # 0 in the chest, 1 at L1 and below
        neck = float(np.clip((zc - vertebrae["T1"].center[2]) / 40.0, 0.0, 1.0))
        fp = back_fat * (1.0 + 0.5 * abdomen) * (1.0 - 0.5 * neck)
        fl = (14.0 * fatness ** 0.9 + 3.0) * (1.0 + 0.9 * abdomen) * (1.0 - 0.6 * neck)
        fa = (11.0 * fatness ** 0.95 + 3.0) * (1.0 + 1.2 * abdomen) * (1.0 - 0.6 * neck)
        if sex == "F":
            fl *= 1.15
        tz.append(zc)
        thw.append(half_w * size * sex_w * width_var + fl + 1.8)
        tdp.append(depth * size * sex_d * depth_var + fp + fa + 3.6)
        fpost.append(fp)
        flat.append(fl)
        fant.append(fa)

    # --- diaphragm, heart, vessels (parameters; geometry is built by the renderer) --------
    dome_r = vertebrae["T10"].center[2] + 0.35 * sizes["T10"][0] - inspiration
    diaphragm = {"right_top_z": dome_r, "left_top_z": dome_r - 14.0 - abs(inspiration) * 0.2,
                 "recess_z": vertebrae["L1"].center[2] + 0.3 * sizes["L1"][0] - inspiration * 0.5}
    heart = {"scale": heart_scale, "shift_x": heart_shift}
    vessels = {"aorta_scale": aorta_scale}

    anomalies = {}
    if fracture is not None:
        anomalies[fracture] = "fracture"
    scl = None
    if sclerotic is not None:
        anomalies[sclerotic] = "sclerotic" if sclerotic not in anomalies else "fracture+sclerotic"
        v = vertebrae[sclerotic]
        scl = {"level": sclerotic,
               "radius_mm": 3.0 + 3.5 * scl_params[0],
               "offset_local": np.array([(scl_params[1] - 0.5) * 0.4 * v.height_mm,
                                         (scl_params[2] - 0.6) * 0.5 * v.depth_mm,
                                         (scl_params[3] - 0.5) * 0.5 * v.width_mm]),
               "density_mg_cm3": 900.0}

    order = np.argsort(tz)
    tz, thw, tdp = np.array(tz)[order], np.array(thw)[order], np.array(tdp)[order]
    fpost, flat, fant = np.array(fpost)[order], np.array(flat)[order], np.array(fant)[order]
    return Subject(
        seed=int(seed), sex=sex, age_years=age, size=size, fatness=fatness, vertebrae=vertebrae,
        levels=MODEL_LEVELS, n_rib_pairs=int(n_rib_pairs), rib_levels=rib_levels,
        spine_s=s, spine_xyz=pts, torso_z=tz, torso_half_width=thw,
        torso_depth=tdp, fat_post=fpost, fat_lat=flat, fat_ant=fant, breast_mm=breast, roll_rad=roll, offset_xy=offset,
        diaphragm=diaphragm, heart=heart, vessels=vessels, anomalies=anomalies, sclerotic=scl,
        fracture=fracture, streams=streams,
        extras={"kyphosis_deg": kyphosis, "lordosis_deg": lordosis, "back_fat_mm": back_fat},
    )
