"""Synthetic low-dose chest CT of a seeded subject, with exact ground truth.

:func:`synthesize_ldct` renders a torso from the cervicothoracic junction to the
upper lumbar spine (skin, subcutaneous fat, muscles, lungs with bronchovascular
trees, heart, great vessels, liver, spleen, stomach, kidneys, bowel, sternum,
ribs, clavicles, scapulae, couch) and a spine whose vertebral bodies have a
cortical shell, concave endplates, a trabecular interior of known density with a
zero-mean texture, and a basivertebral vein. The anatomy is defined in
continuous millimetres from the seed alone, so every grid samples the same
subject; the physics (bone line, PSF, correlated noise, FOV padding) is that of
:mod:`bmdqct.synthetic._physics`.

Level names count from the top (C1..C7, T1..T12, L1..L5); transitional anatomy
is expressed by the number of rib pairs only: 11 pairs -> T12 bears no rib,
13 pairs -> L1 bears a short rib pair.

Known differences from a real LDCT (compared side by side with LIDC-IDRI-0314):
organ surfaces are smooth analytic shapes (no lobulation, no fissures, no
intermuscular fat except around the erector spinae); soft tissues have no
texture beyond the noise; the noise is stationary (no streaks, no extra noise
in the shoulders); the arms are always raised (not in the field of view);
vertebral bodies are more regular (rectangular in sagittal views, a crisp thin
shell; real bodies have coarser trabecular texture and thicker, brighter
endplates); no contrast medium, no devices, no lung nodules or emphysema.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..levels import SEGMENTATION_CLASSES, level_id
from ..volume import METADATA_KEYS, CTVolume, LabelVolume
from . import _physics
from ._anatomy import MODEL_LEVELS, make_subject

__all__ = ["Truth", "synthesize_ldct", "DEFAULT_OPTIONS", "DEFAULT_SCANNER"]

logger = logging.getLogger(__name__)

#: Scanner metadata of synthetic scans (override with ``scanner={...}``).
DEFAULT_SCANNER = {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 64",
                   "device_serial": "SYN-0001", "station": "SYNTH1"}

#: Default options of :func:`synthesize_ldct` (``None``: drawn from the seed or derived).
DEFAULT_OPTIONS = {
    "cranial": "C7",
    "caudal": "L2",
    "shape": (512, 512),
    "pixel_mm": None,
    "slice_mm": 1.0,
    "slice_thickness_mm": None,
    "n_slices": None,
    "margin_mm": 12.0,
    "kvp": 120.0,
    "noise_hu": None,
    "density_mg_cm3": None,
    "n_rib_pairs": 12,
    "fracture": None,
    "sclerotic": None,
    "scoliosis_deg": 0.0,
    "a_hu": None,
    "b_hu_per_mg_cm3": None,
    "sex": None,
    "age_years": None,
    "texture_mg_cm3": 15.0,
    "psf_fwhm_mm": _physics.DEFAULT_PSF_FWHM_MM,
    "nps_peak_cycles_mm": _physics.DEFAULT_NPS_PEAK_CYCLES_MM,
    "padding_hu": _physics.PADDING_HU[0],
    "scanner": None,
    "study_date": None,
    "labels": True,
}

_CRANIAL_CHOICES = MODEL_LEVELS[2:MODEL_LEVELS.index("T12") + 1]  # C5 .. T12
_CAUDAL_CHOICES = MODEL_LEVELS[MODEL_LEVELS.index("T6"):]  # T6 .. L5
_ANOMALY_CHOICES = MODEL_LEVELS[MODEL_LEVELS.index("T4"):]  # T4 .. L5


@dataclass(frozen=True, eq=False)
class Truth:
    """Ground truth of a synthetic scan.

    Attributes
    ----------
    levels : LabelVolume
        Vertebral bodies (cortical shell included, posterior elements excluded),
        VerSe ids (T12 = 19, L1 = 20, L2 = 21), named by level; only levels in view.
    classes : LabelVolume
        The 4-class segmentation map (0 background, 1 T1-T6, 2 T7-T12, 3 L1-L2).
    trabecular : LabelVolume
        True trabecular interior of each body (inside the shell; basivertebral vein
        and sclerotic focus excluded), VerSe ids.
    ribs : LabelVolume
        Ribs (bone, not cartilage) labelled with the VerSe id of the vertebra bearing them.
    density_mg_cm3 : dict of str to float
        True trabecular density (mg K2HPO4/cm³) of every level in view.
    a_hu, b_hu_per_mg_cm3 : float
        Bone line of the scan: ``HU = a + b * density``.
    noise_hu : float
        SD of the added correlated noise.
    kvp : float
    n_rib_pairs : int
    rib_levels : tuple of str
        Levels bearing ribs (anatomy, whether in view or not).
    anomalies : dict of str to str
        Bodies whose trabecular BMD should not be used, e.g. ``{"L1": "fracture",
        "T11": "sclerotic"}`` (transitional anatomy is in `n_rib_pairs`/`rib_levels`).
    centers_mm : dict of str to tuple
        LPS position (mm) of each body centre in view.
    seed : int
    options : dict
        Fully resolved options; ``synthesize_ldct(seed, **options)`` reproduces the scan.
    """

    levels: LabelVolume
    classes: LabelVolume
    trabecular: LabelVolume
    ribs: LabelVolume
    density_mg_cm3: Mapping[str, float]
    a_hu: float
    b_hu_per_mg_cm3: float
    noise_hu: float
    kvp: float
    n_rib_pairs: int
    rib_levels: tuple
    anomalies: Mapping[str, str]
    centers_mm: Mapping[str, tuple] = field(default_factory=dict)
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serializable summary (no arrays)."""
        opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.options.items()}
        return {
            "seed": self.seed, "kvp": self.kvp, "a_hu": self.a_hu,
            "b_hu_per_mg_cm3": self.b_hu_per_mg_cm3, "noise_hu": self.noise_hu,
            "density_mg_cm3": dict(self.density_mg_cm3), "n_rib_pairs": self.n_rib_pairs,
            "rib_levels": list(self.rib_levels), "anomalies": dict(self.anomalies),
            "centers_mm": {k: list(v) for k, v in self.centers_mm.items()},
            "levels": dict(self.levels.names), "classes": dict(self.classes.names),
            "options": opts,
        }


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------

def _level_option(name, value, choices, *, allow_none=False):
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}"
                         f"{' or None' if allow_none else ''}; got {value!r}")
    return value


def _number(name, value, lo, hi, *, allow_none=False, integer=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {value!r}")
    if integer:
        if value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return value


def _resolve(seed, options) -> dict:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; valid options are {sorted(DEFAULT_OPTIONS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    opt = {**DEFAULT_OPTIONS, **options}
    opt["cranial"] = _level_option("cranial", opt["cranial"], _CRANIAL_CHOICES)
    opt["caudal"] = _level_option("caudal", opt["caudal"], _CAUDAL_CHOICES)
    if MODEL_LEVELS.index(opt["cranial"]) >= MODEL_LEVELS.index(opt["caudal"]):
        raise ValueError(f"cranial level must lie above caudal level; got cranial={opt['cranial']!r}, "
                         f"caudal={opt['caudal']!r}")
    shape = opt["shape"]
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape), int(shape))
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise TypeError(f"shape must be an int or (rows, columns), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 16 or max(shape) > 2048:
        raise ValueError(f"shape must be (rows, columns) with 16-2048 pixels each, got {shape!r}")
    opt["shape"] = shape
    opt["pixel_mm"] = _number("pixel_mm", opt["pixel_mm"], 0.2, 8.0, allow_none=True)
    opt["slice_mm"] = _number("slice_mm", opt["slice_mm"], 0.3, 10.0)
    opt["slice_thickness_mm"] = _number("slice_thickness_mm", opt["slice_thickness_mm"], 0.3, 10.0,
                                        allow_none=True)
    opt["n_slices"] = _number("n_slices", opt["n_slices"], 1, 4096, allow_none=True, integer=True)
    opt["margin_mm"] = _number("margin_mm", opt["margin_mm"], -60.0, 200.0)
    opt["kvp"] = _number("kvp", opt["kvp"], *_physics.KVP_RANGE)
    opt["noise_hu"] = _number("noise_hu", opt["noise_hu"], 0.0, 200.0, allow_none=True)
    density = opt["density_mg_cm3"]
    if isinstance(density, Mapping):
        clean = {}
        for level, value in density.items():
            if level not in MODEL_LEVELS:
                raise ValueError(f"density_mg_cm3 has unknown level {level!r}; expected names from "
                                 f"{MODEL_LEVELS[0]} to {MODEL_LEVELS[-1]}")
            clean[level] = _number(f"density_mg_cm3[{level!r}]", value, 0.0, 1200.0)
        if not clean:
            raise ValueError("density_mg_cm3 must not be an empty mapping; pass None for random densities")
        opt["density_mg_cm3"] = clean
    else:
        opt["density_mg_cm3"] = _number("density_mg_cm3", density, 0.0, 1200.0, allow_none=True)
    if opt["n_rib_pairs"] not in (11, 12, 13) or isinstance(opt["n_rib_pairs"], bool):
        raise ValueError(f"n_rib_pairs must be 11, 12 or 13, got {opt['n_rib_pairs']!r}")
    opt["n_rib_pairs"] = int(opt["n_rib_pairs"])
    opt["fracture"] = _level_option("fracture", opt["fracture"], _ANOMALY_CHOICES, allow_none=True)
    opt["sclerotic"] = _level_option("sclerotic", opt["sclerotic"], _ANOMALY_CHOICES, allow_none=True)
    opt["scoliosis_deg"] = _number("scoliosis_deg", opt["scoliosis_deg"], 0.0, 40.0)
    opt["a_hu"] = _number("a_hu", opt["a_hu"], -200.0, 200.0, allow_none=True)
    opt["b_hu_per_mg_cm3"] = _number("b_hu_per_mg_cm3", opt["b_hu_per_mg_cm3"], 0.2, 5.0, allow_none=True)
    if opt["sex"] not in (None, "F", "M"):
        raise ValueError(f"sex must be 'F', 'M' or None, got {opt['sex']!r}")
    opt["age_years"] = _number("age_years", opt["age_years"], 18.0, 100.0, allow_none=True)
    opt["texture_mg_cm3"] = _number("texture_mg_cm3", opt["texture_mg_cm3"], 0.0, 100.0)
    opt["psf_fwhm_mm"] = _number("psf_fwhm_mm", opt["psf_fwhm_mm"], 0.0, 10.0)
    opt["nps_peak_cycles_mm"] = _number("nps_peak_cycles_mm", opt["nps_peak_cycles_mm"], 0.01, 5.0)
    opt["padding_hu"] = _number("padding_hu", opt["padding_hu"], -5000.0, -1000.0, allow_none=True)
    scanner = opt["scanner"]
    if scanner is not None:
        if not isinstance(scanner, Mapping):
            raise TypeError(f"scanner must be a mapping of metadata keys, got {type(scanner).__name__}")
        bad = sorted(set(scanner) - set(METADATA_KEYS))
        if bad:
            raise ValueError(f"scanner has unknown metadata key(s) {bad}; expected keys of "
                             f"bmdqct.volume.METADATA_KEYS")
        opt["scanner"] = dict(scanner)
    date = opt["study_date"]
    if date is not None:
        try:
            _dt.date.fromisoformat(str(date))
        except ValueError:
            raise ValueError(f"study_date must be an ISO date 'YYYY-MM-DD', got {date!r}") from None
        opt["study_date"] = str(date)
    if not isinstance(opt["labels"], bool):
        raise TypeError(f"labels must be True or False, got {opt['labels']!r}")
    return opt


def _densities(subject_levels, spec):
    """Complete per-level densities from a float, a partial dict, or None (random)."""
    from . import _population

    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        return {name: float(spec) for name in subject_levels}
    given = dict(spec)
    out = {}
    for name in subject_levels:
        if name in given:
            out[name] = given[name]
            continue
        # nearest given level, scaled by the population profile
        idx = MODEL_LEVELS.index(name)
        ref = min(given, key=lambda g: abs(MODEL_LEVELS.index(g) - idx))
        factor = _population.LEVEL_DENSITY_FACTOR
        out[name] = max(_population.MIN_DENSITY_MG_CM3, given[ref] * factor[name] / factor[ref])
    return out


# ---------------------------------------------------------------------------
# main entry point
# ---------------------------------------------------------------------------

def synthesize_ldct(seed: int, **options) -> tuple[CTVolume, Truth]:
    """Render a synthetic low-dose chest CT of subject `seed` with its ground truth.

    Parameters
    ----------
    seed : int
        Subject and scan seed; the same seed and options give an identical volume.
    **options
        cranial, caudal : str
            First and last vertebral level fully in the scan (default ``"C7"``,
            ``"L2"``); `cranial` from C5 to T12, `caudal` from T6 to L5. A scan
            stopping above L2 is ``caudal="L1"`` or a negative `margin_mm`.
        shape : int or (int, int)
            In-plane grid (rows, columns), default (512, 512).
        pixel_mm : float
            Pixel size; default fits the widest body section (0.6-0.9 mm at 512²).
        slice_mm, slice_thickness_mm : float
            Slice spacing (default 1.0 mm) and reconstructed thickness (default = spacing).
        n_slices : int
            Fixed number of slices centred on the cranial-caudal range.
        margin_mm : float
            Extra coverage above `cranial` and below `caudal` (default 12 mm; negative cuts in).
        kvp : float
            Tube voltage, 70-140 kV (default 120).
        noise_hu : float
            SD of the correlated noise (default: drawn from the seed in 20-45 HU).
        density_mg_cm3 : float or dict of str to float
            Trabecular density (mg K2HPO4/cm³): one value for every level, or some
            levels (the others follow the population level profile); default
            drawn from the subject's age and sex.
        n_rib_pairs : {11, 12, 13}
            Transitional anatomy (default 12).
        fracture, sclerotic : str
            Level with a wedge compression fracture / a sclerotic bone island.
        scoliosis_deg : float
            Cobb angle of a mild thoracolumbar curve, 0-40.
        a_hu, b_hu_per_mg_cm3 : float
            Bone line; default :func:`~bmdqct.synthetic.default_hu_line` of `kvp`.
        sex : {"F", "M"}, age_years : float
            Subject characteristics (default from the seed).
        texture_mg_cm3 : float
            SD of the zero-mean trabecular texture (default 15 mg/cm³; granularity
            FWHM 1.8 mm in-plane, 3 mm through-plane).
        psf_fwhm_mm, nps_peak_cycles_mm : float
            In-plane PSF FWHM (default 1.1 mm) and noise-power peak (0.3 cycles/mm).
        padding_hu : float or None
            Value outside the reconstruction circle (default -2048; None: no padding).
        scanner : dict
            Metadata overrides (manufacturer, model, device_serial, station, ...).
        study_date : str
            ISO date (default from the seed).
        labels : bool
            False skips the label maps (faster; `Truth` then holds empty maps).

    Returns
    -------
    volume : CTVolume
        Canonical (S, P, L) float32 HU volume with scanner metadata.
    truth : Truth

    Raises
    ------
    TypeError
        For an unknown option or an argument of the wrong type.
    ValueError
        For an option value out of range (each message names the valid values).

    Examples
    --------
    >>> vol, truth = synthesize_ldct(7, shape=64, pixel_mm=6.0, slice_mm=6.0, noise_hu=0.0,
    ...                              cranial="T10", caudal="L2", density_mg_cm3=120.0)
    >>> vol.orientation, "L2" in truth.levels.present(), truth.density_mg_cm3["L1"]
    (('S', 'P', 'L'), True, 120.0)
    """
    from ._organs import Organs
    from ._raster import Grid
    from ._render import Renderer
    from ._skeleton import Skeleton

    opt = _resolve(seed, options)
    seed = int(seed)
    densities = _densities(MODEL_LEVELS, opt["density_mg_cm3"])
    subject = make_subject(seed, sex=opt["sex"], age_years=opt["age_years"],
                           n_rib_pairs=opt["n_rib_pairs"], scoliosis_deg=opt["scoliosis_deg"],
                           fracture=opt["fracture"], sclerotic=opt["sclerotic"], densities=densities)
    scan_rng = np.random.default_rng(subject.streams["scan"])
    scan_u = scan_rng.random(4)
    kvp = opt["kvp"]
    a_def, b_def = _physics.default_hu_line(kvp)
    a_hu = a_def if opt["a_hu"] is None else opt["a_hu"]
    b_hu = b_def if opt["b_hu_per_mg_cm3"] is None else opt["b_hu_per_mg_cm3"]
    noise_hu = opt["noise_hu"] if opt["noise_hu"] is not None else round(20.0 + 25.0 * scan_u[1], 1)
    study_date = opt["study_date"] or (_dt.date(2023, 1, 2) + _dt.timedelta(days=int(730 * scan_u[2]))).isoformat()

    grid = _make_grid(subject, opt)
    thickness = opt["slice_thickness_mm"] or opt["slice_mm"]
    renderer = Renderer(subject, grid, kvp=kvp, a_hu=a_hu, b_hu=b_hu,
                        texture_hu=opt["texture_mg_cm3"] * b_hu, labels=opt["labels"])
    renderer.torso_pass()
    Organs(renderer).render()
    skeleton = Skeleton(renderer)
    skeleton.spine()
    skeleton.ribs()
    skeleton.sternum()
    skeleton.shoulders()
    hu = renderer.hu
    spacing = grid.spacing
    # through-plane: the partial-volume ramp is the box of one slice spacing; a Gaussian
    # completes the slice-sensitivity profile to the reconstructed thickness
    fwhm_z = math.sqrt(max(thickness**2 - spacing[0] ** 2, 0.0) + (0.5 * thickness) ** 2)
    if fwhm_z / 2.3548 / spacing[0] >= 0.3:
        _physics.apply_psf(hu, spacing, (fwhm_z, 0.0, 0.0), out=hu)
    noise_rng = np.random.default_rng(subject.streams["noise"])
    _physics.blur_and_add_noise(hu, spacing, psf_fwhm_mm=opt["psf_fwhm_mm"], noise_hu=noise_hu,
                                rng=noise_rng, peak_cycles_mm=opt["nps_peak_cycles_mm"],
                                fwhm_z_mm=1.15 * thickness)
    if opt["padding_hu"] is not None:
        _physics.apply_fov_padding(hu, spacing[1:], padding_hu=opt["padding_hu"], out=hu)

    affine = _affine(grid)
    resolved = dict(opt)
    resolved.update({"pixel_mm": float(spacing[1]), "noise_hu": float(noise_hu), "sex": subject.sex,
                     "age_years": float(subject.age_years), "study_date": study_date,
                     "a_hu": float(a_hu), "b_hu_per_mg_cm3": float(b_hu)})
    if densities is not None:
        resolved["density_mg_cm3"] = opt["density_mg_cm3"]
    metadata = _metadata(seed, subject, opt, kvp, noise_hu, thickness, study_date)
    volume = CTVolume(hu, affine, metadata=metadata)
    truth = _truth(renderer, subject, affine, seed, resolved, a_hu, b_hu, noise_hu, kvp)
    return volume, truth


def _make_grid(subject, opt):
    from ._raster import Grid

    v = subject.vertebrae
    top = v[opt["cranial"]]
    bot = v[opt["caudal"]]
    z_hi = float(top.center[2] + 0.5 * top.height_mm) + opt["margin_mm"]
    z_lo = float(bot.center[2] - 0.5 * bot.height_mm) - opt["margin_mm"]
    sz = opt["slice_mm"]
    if opt["n_slices"] is not None:
        nz = opt["n_slices"]
        z0 = 0.5 * (z_hi + z_lo) - 0.5 * (nz - 1) * sz
    else:
        nz = max(1, int(math.floor((z_hi - z_lo) / sz)) + 1)
        z0 = z_lo
    ny, nx = opt["shape"]
    pixel = opt["pixel_mm"]
    if pixel is None:
        in_range = (subject.torso_z >= z_lo - 20) & (subject.torso_z <= z_hi + 20)
        widths = subject.torso_half_width[in_range] if np.any(in_range) else subject.torso_half_width
        depths = subject.torso_depth[in_range] if np.any(in_range) else subject.torso_depth
        fov = max(2.0 * float(widths.max()) + 24.0, float(depths.max()) + 60.0)
        n = min(ny, nx)
        pixel = float(np.clip(fov / n, 0.6 * 512 / n, 0.9 * 512 / n))
        pixel = round(pixel, 4)
    origin = (-(nx - 1) / 2.0 * pixel, -(ny - 1) / 2.0 * pixel, z0)
    return Grid((nz, ny, nx), (sz, pixel, pixel), origin)


def _affine(grid):
    affine = np.zeros((4, 4))
    sz, sy, sx = grid.spacing
    affine[2, 0], affine[1, 1], affine[0, 2] = sz, sy, sx
    affine[0, 3], affine[1, 3], affine[2, 3] = grid.origin
    affine[3, 3] = 1.0
    return affine


def _uid(seed, kind):
    digest = hashlib.sha256(f"bmdqct-synthetic-{kind}-{seed}".encode()).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


def _metadata(seed, subject, opt, kvp, noise_hu, thickness, study_date):
    meta = {key: None for key in METADATA_KEYS}
    meta.update(DEFAULT_SCANNER)
    meta.update({
        "format": "synthetic", "modality": "CT", "kvp": float(kvp),
        "series_uid": _uid(seed, "series"), "study_uid": _uid(seed, "study"),
        "series_description": f"synthetic LDCT seed {seed}",
        # tube load giving this noise at 120 kVp for an average chest (noise ~ 1/sqrt(mAs))
        "exposure_mas": round(40.0 * (30.0 / max(noise_hu, 1.0)) ** 2, 1) if noise_hu > 0 else None,
        "ctdi_vol_mgy": round(2.5 * (30.0 / max(noise_hu, 1.0)) ** 2, 2) if noise_hu > 0 else None,
        "kernel": "SYN-STANDARD", "slice_thickness_mm": float(thickness),
        "study_date": study_date, "acquisition_date": study_date,
        "patient_id": f"SYN-{seed:06d}", "patient_sex": subject.sex,
        "patient_age_years": round(float(subject.age_years), 1), "contrast_agent": None,
    })
    if opt["scanner"]:
        meta.update(opt["scanner"])
    return meta


def _truth(renderer, subject, affine, seed, resolved, a_hu, b_hu, noise_hu, kvp):
    if renderer.want_labels:
        levels_arr, trab_arr = renderer.levels, renderer.trabecular
        ribs_arr, classes_arr = renderer.ribs, renderer.classes
    else:
        levels_arr = trab_arr = ribs_arr = classes_arr = np.zeros(renderer.hu.shape, dtype=np.int16)
    present = [n for n in MODEL_LEVELS if n in renderer.body_boxes
               and np.any(levels_arr[renderer.body_boxes[n]] == level_id(n))]
    names = {n: level_id(n) for n in present}
    class_names = {name: cid for cid, name in SEGMENTATION_CLASSES.items() if cid}
    rib_names = {n: level_id(n) for n in subject.rib_levels if level_id(n) in renderer.rib_ids}
    centers = {}
    for n in present:
        c = renderer.pw(subject.vertebrae[n].center)
        centers[n] = tuple(round(float(x), 3) for x in c)
    return Truth(
        levels=LabelVolume(levels_arr, affine, names=names),
        classes=LabelVolume(classes_arr, affine, names=class_names),
        trabecular=LabelVolume(trab_arr, affine, names=names),
        ribs=LabelVolume(ribs_arr, affine, names=rib_names),
        density_mg_cm3={n: float(subject.vertebrae[n].density_mg_cm3) for n in present},
        a_hu=float(a_hu), b_hu_per_mg_cm3=float(b_hu), noise_hu=float(noise_hu), kvp=float(kvp),
        n_rib_pairs=subject.n_rib_pairs, rib_levels=tuple(subject.rib_levels),
        anomalies={k: v for k, v in subject.anomalies.items()},
        centers_mm=centers, seed=seed, options=resolved,
    )
