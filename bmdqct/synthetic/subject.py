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

Appearance options (cortex, endplates, trabecular texture scale, marrow patches,
fatty islands, body shape irregularity, osteophyte rims, disc heights, vacuum discs,
fat planes, soft-tissue texture, PSF) default to the classic look below; ``None``
draws them from the seed and :func:`random_training_options` spreads them over
their full ranges for training (``bmdqct.synthetic._appearance``).

Known differences from a real LDCT (compared side by side with LIDC-IDRI-0314 and
the TotalSegmentator 3-mm abdomen, ``benchmarks/compare_realism.py``): organ surfaces
are smooth analytic shapes (no lobulation, no fissures); the paraspinal muscles are
elliptic bundles; the noise is stationary (no streaks, no extra noise in the
shoulders); the arms are always raised (not in the field of view); posterior
elements are uniformly dense capsules (thicker and brighter than real laminae and
transverse processes); no contrast medium, no devices, no lung nodules or
emphysema. With the classic defaults the bodies are also more regular than real ones
(box-like, a crisp uniform shell, a homogeneous interior); the appearance options
(see :func:`random_training_options`) cover faint thin cortex, thick bright or
sclerotic endplates, coarse heterogeneous marrow, irregular shapes, osteophytes,
variable and vacuum discs, fat planes and blurry scans.
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

from .._util import record_dict
from ..levels import SEGMENTATION_CLASSES, level_id
from ..volume import METADATA_KEYS, CTVolume, LabelVolume
from . import _appearance, _physics
from ._anatomy import _BODY_REF, MODEL_LEVELS, make_subject, subject_streams

__all__ = [
    "DEFAULT_OPTIONS",
    "DEFAULT_SCANNER",
    "Truth",
    "heldout_options",
    "random_training_options",
    "random_transfer_options",
    "synthesize_ldct",
]

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
    # appearance variety (bmdqct.synthetic._appearance); these defaults are the classic look
    "texture_scale_mm": _appearance.CLASSIC_TEXTURE_SCALE_MM,
    "marrow_mg_cm3": 0.0,
    "fat_islands": 0.0,
    "cortical_mg_cm3": _appearance.CLASSIC_SHELL_MG_CM3,
    "cortical_mm": None,
    "cortical_variation": 0.0,
    "endplate_mg_cm3": _appearance.CLASSIC_SHELL_MG_CM3,
    "endplate_mm": None,
    "endplate_sclerosis": 0.0,
    "shape_irregularity": 0.0,
    "osteophytes": None,
    "disc_height_sd": 0.0,
    "vacuum_disc_rate": None,
    "fat_planes": 0.0,
    "soft_texture_hu": 0.0,
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
        """JSON-serializable summary (no arrays): `levels` and `classes` as their ``names``."""
        return record_dict(self, exclude=("trabecular", "ribs"), levels=dict(self.levels.names),
                           classes=dict(self.classes.names))


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
    opt["texture_mg_cm3"] = _number("texture_mg_cm3", opt["texture_mg_cm3"], 0.0, 100.0, allow_none=True)
    for name, (_, (lo, hi), _) in _appearance.APPEARANCE_OPTIONS.items():
        opt[name] = _number(name, opt[name], lo, hi, allow_none=True)
    opt["psf_fwhm_mm"] = _number("psf_fwhm_mm", opt["psf_fwhm_mm"], 0.0, 10.0, allow_none=True)
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
            SD of the zero-mean trabecular texture (default 15 mg/cm³; None: drawn
            8-60), 0-100.
        texture_scale_mm : float
            Its granularity: in-plane FWHM (default 1.8 mm; through-plane 5/3 of it;
            None: drawn 1-4 mm), 0.5-8.
        marrow_mg_cm3 : float
            SD of coarse, sparse marrow patches (dark fatty ones commoner than bright
            ones; 5-7.5 mm), added to the texture and zero-mean with it (default 0;
            None: drawn 0-40), 0-100.
        fat_islands : float
            Mean number of focal fatty-marrow islands (2-5 mm, -60..+90 HU) per body,
            excluded from the trabecular truth like the basivertebral vein (default 0;
            None: drawn 0-1.5), 0-6.
        cortical_mg_cm3, cortical_mm : float
            Density (default 650; None: drawn 250-800), 100-1200, and thickness of
            the vertebral side walls (default None: the subject's, 0.5-1.1 mm falling
            with age), 0.2-2.5 mm. Real cortex is often thin and faint (250-800 mg/cm³,
            0.3-1.2 mm).
        cortical_variation : float
            0-1: how much wall density and thickness vary around each body (faint
            lateral walls, random harmonics, a 3-mm mottle of walls and endplates;
            default 0; None: drawn).
        endplate_mg_cm3, endplate_mm : float
            Density (default 650; None: drawn 300-700), 100-1500, and thickness
            (default None: wall + 0.45 mm), 0.2-5 mm, of the bony endplates.
        endplate_sclerosis : float
            Probability per level of degenerative sclerosis of one or both endplates
            (0.5-1.5 mm thicker, denser bands; outside the trabecular truth; default 0;
            None: drawn 0-0.4), 0-1.
        shape_irregularity : float
            0-1: how far bodies depart from the regular template (concave sides and
            posterior wall, physiological and lateral wedging, taper, asymmetry,
            rounder or boxier fronts, deeper endplate cups, per-level wall jitter;
            default 0; None: drawn). Body masks follow the shape exactly.
        osteophytes : float
            Probability per level of marginal osteophyte rims (bony lips on the
            anterior and lateral endplate margins, not part of the body mask;
            default None: small spurs by age), 0-1.
        disc_height_sd : float
            Relative SD of each disc's height (narrow degenerated and tall discs;
            moves the bodies; default 0; None: drawn 0-0.3), 0-0.5.
        vacuum_disc_rate : float
            Probability per disc (T3/T4 down) of gas in the disc: a nucleus collection
            or a cleft (default None: lower discs of older subjects by age), 0-1.
        fat_planes : float
            0-1: psoas and diaphragmatic crura wrapped in fat, prevertebral fat and
            fat septa and fatty infiltration of the paraspinal muscles (default 0;
            None: drawn).
        soft_texture_hu : float
            SD of a smooth (5 mm) texture of fat and muscle around the spine (default 0;
            None: drawn 0-20 HU), 0-60.
        psf_fwhm_mm, nps_peak_cycles_mm : float
            In-plane PSF FWHM (default 1.1 mm; None: drawn 0.7-2.5; blurry scans up to
            3 mm and more), 0-10, and noise-power peak (0.3 cycles/mm).
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

    Notes
    -----
    Whatever the appearance options, the truth stays exact: body masks are where the
    bodies are, the trabecular mask excludes the shell, endplates, vein and focal
    lesions, and every texture is exactly zero-mean over it, so
    ``truth.density_mg_cm3`` is the mean trabecular mineral of each body. The
    defaults give the classic look; :func:`random_training_options` spreads every
    option over its range for training segmentation networks.

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
    from ._render import Renderer
    from ._skeleton import Skeleton
    from ._soft import SoftTissue

    opt = _resolve(seed, options)
    seed = int(seed)
    opt.update(_appearance.draw_appearance(opt, subject_streams(seed)["appearance"]))
    densities = _densities(MODEL_LEVELS, opt["density_mg_cm3"])
    subject = make_subject(seed, sex=opt["sex"], age_years=opt["age_years"],
                           n_rib_pairs=opt["n_rib_pairs"], scoliosis_deg=opt["scoliosis_deg"],
                           fracture=opt["fracture"], sclerotic=opt["sclerotic"], densities=densities,
                           disc_height_sd=opt["disc_height_sd"])
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
                        texture_hu=opt["texture_mg_cm3"] * b_hu, labels=opt["labels"],
                        appearance={name: opt[name] for name in _appearance.APPEARANCE_OPTIONS})
    renderer.torso_pass()
    soft = SoftTissue(renderer)
    soft.crura()
    Organs(renderer).render()
    soft.texture()
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


# ---------------------------------------------------------------------------
# training options
# ---------------------------------------------------------------------------

_TRAIN_CRANIAL = ("C6", "C7", "T1", "T2", "T3", "T4", "T5")
_TRAIN_CAUDAL = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
_TRAIN_CAUDAL_P = (0.1, 0.1, 0.15, 0.2, 0.15, 0.15, 0.15)
_TRAIN_SLICES_MM = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
_TRAIN_KVP = (80.0, 100.0, 110.0, 120.0, 120.0, 120.0, 130.0, 140.0)
#: Largest grid (voxels) a training scan may have; the cranial end moves down to fit.
TRAIN_MAX_VOXELS = 12_000_000


def random_training_options(rng=None) -> dict:
    """Draw diverse options of :func:`synthesize_ldct` for training a segmentation network.

    Every draw spreads over the range met in real chest and abdomen CT, so that a
    network trained on ``synthesize_ldct(seed, **random_training_options(rng))`` for many
    seeds sees the appearance variety of real bone and soft tissue, not one look.

    Parameters
    ----------
    rng : int, numpy.random.Generator or None
        Random source (``numpy.random.default_rng(rng)``).

    Returns
    -------
    dict
        Options for :func:`synthesize_ldct` (a new dict; all values explicit except
        ``density_mg_cm3``, ``age_years`` and ``slice_thickness_mm`` where None is
        drawn, and ``fracture``/``sclerotic`` when absent).

    Notes
    -----
    What is drawn:

    * scan range: `cranial` C6-T5; `caudal` T11-L5 (35 % of scans end above L2:
      T11, T12 or L1), `margin_mm` 4-30 mm, or -12-0 mm (the scan cuts through the
      last body) in 15 %;
    * grid: `pixel_mm` 0.7-1.0 (35 %), 1.0-2.0 (40 %) or 2.0-3.0 mm (25 %), `shape`
      covering a 360-440 mm field of view, `slice_mm` 1-3 mm, a reconstructed
      thickness up to twice the spacing in 30 %; the cranial end moves down until the
      grid holds at most :data:`TRAIN_MAX_VOXELS` voxels (keeps the mean cost near 1-2 s);
    * physics: `kvp` 80-140, `noise_hu` 8-60 (log-uniform), NPS peak 0.15-0.45
      cycles/mm, `psf_fwhm_mm` 0.6-1.5 (60 %) or 1.5-3.0 mm (40 %, blurry scans);
    * subject: densities from the population (50 %) or one value 30-240 mg/cm³,
      age 60-90 in 40 % (else drawn 45-80), 11 or 13 rib pairs in 7 % each, a fracture
      in 10 % and a sclerotic focus in 8 % (on a level inside the scan), scoliosis
      2-25 degrees in 30 %;
    * appearance over its full range: cortex 250-800 mg/cm³ and 0.3-1.2 mm (skewed
      toward faint and thin), variation 0-1; endplates 300-700 mg/cm³ and 0.5-2.0 mm
      (at most 1000 mg/cm³·mm), sclerosis rate 0-0.3; texture 10-60 mg/cm³ at 1-4 mm
      grain; marrow patches 0-40 mg/cm³; fatty islands 0-2 per body; shape
      irregularity 0.2-1; osteophyte rate 0-0.6; disc height SD 0-0.3; vacuum-disc
      rate 0 (50 %) or 0-0.25; fat planes 0-1; soft-tissue texture 0-15 HU.

    Because of the voxel cap, fine grids (0.7-1.0 mm pixels) cover shorter ranges, mostly the
    lower thoracic and lumbar spine; coarser grids cover the whole range.

    Examples
    --------
    >>> opts = random_training_options(3)
    >>> opts == random_training_options(3), opts["caudal"] in ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
    (True, True)
    >>> 0.7 <= opts["pixel_mm"] <= 3.0 and 340 <= opts["shape"][0] * opts["pixel_mm"] <= 460
    True
    """
    rng = np.random.default_rng(rng)
    cranial = str(rng.choice(_TRAIN_CRANIAL))
    caudal = str(rng.choice(_TRAIN_CAUDAL, p=_TRAIN_CAUDAL_P))
    margin = float(rng.uniform(-12.0, 0.0)) if rng.random() < 0.15 else float(rng.uniform(4.0, 30.0))
    r = rng.random()
    pixel = float(rng.uniform(0.7, 1.0) if r < 0.35 else (rng.uniform(1.0, 2.0) if r < 0.75
                                                           else rng.uniform(2.0, 3.0)))
    n = int(np.clip(round(float(rng.uniform(360.0, 440.0)) / pixel), 64, 640))
    slice_mm = float(rng.choice(_TRAIN_SLICES_MM))
    thickness = round(min(5.0, slice_mm * float(rng.uniform(1.0, 2.0))), 3) if rng.random() < 0.3 else None
    # keep the grid cheap: move the cranial end down (never closer than 2 levels to the
    # caudal end), then use thicker slices
    def voxels():
        first, last = MODEL_LEVELS.index(cranial), MODEL_LEVELS.index(caudal)
        length = sum(_BODY_REF[lv][0] + _BODY_REF[lv][3] for lv in MODEL_LEVELS[first:last + 1])
        return (1.1 * length + 2 * margin) / slice_mm * n * n

    while (voxels() > TRAIN_MAX_VOXELS and cranial != _CRANIAL_CHOICES[-1]
           and MODEL_LEVELS.index(cranial) < MODEL_LEVELS.index(caudal) - 2):
        cranial = MODEL_LEVELS[MODEL_LEVELS.index(cranial) + 1]
    while voxels() > TRAIN_MAX_VOXELS and slice_mm < _TRAIN_SLICES_MM[-1]:
        slice_mm = _TRAIN_SLICES_MM[_TRAIN_SLICES_MM.index(slice_mm) + 1]
    in_scan = [lv for lv in MODEL_LEVELS[MODEL_LEVELS.index(cranial):MODEL_LEVELS.index(caudal) + 1]
               if lv in _ANOMALY_CHOICES]
    opts = {
        "cranial": cranial, "caudal": caudal, "margin_mm": round(margin, 2),
        "shape": (n, n), "pixel_mm": round(pixel, 4), "slice_mm": slice_mm, "slice_thickness_mm": thickness,
        "kvp": float(rng.choice(_TRAIN_KVP)),
        "noise_hu": round(float(np.exp(rng.uniform(math.log(8.0), math.log(60.0)))), 2),
        "nps_peak_cycles_mm": round(float(rng.uniform(0.15, 0.45)), 3),
        "psf_fwhm_mm": round(float(rng.uniform(0.6, 1.5) if rng.random() < 0.6 else rng.uniform(1.5, 3.0)), 3),
        "density_mg_cm3": None if rng.random() < 0.5 else round(float(rng.uniform(30.0, 240.0)), 1),
        "age_years": round(float(rng.uniform(60.0, 90.0)), 1) if rng.random() < 0.4 else None,
    }
    r = rng.random()
    opts["n_rib_pairs"] = 11 if r < 0.07 else (13 if r < 0.14 else 12)
    if rng.random() < 0.10 and in_scan:
        opts["fracture"] = str(rng.choice(in_scan))
    if rng.random() < 0.08 and in_scan:
        opts["sclerotic"] = str(rng.choice(in_scan))
    opts["scoliosis_deg"] = round(float(rng.uniform(2.0, 25.0)), 2) if rng.random() < 0.3 else 0.0
    u = [float(x) for x in rng.random(17)]
    opts.update({
        # faint thin cortex is the commoner look of real scans at 2 mm
        "cortical_mg_cm3": round(250.0 + 550.0 * u[0] ** 1.5, 1),
        "cortical_mm": round(0.3 + 0.9 * u[1] ** 1.3, 3),
        "cortical_variation": round(u[2], 3),
        # thick endplates are the less dense ones (their areal density stays below ~1000 mg/cm²·mm)
        "endplate_mg_cm3": round(max(300.0, min(300.0 + 400.0 * u[3], 1000.0 / (0.5 + 1.5 * u[4]))), 1),
        "endplate_mm": round(0.5 + 1.5 * u[4], 3),
        "endplate_sclerosis": round(0.3 * u[5] ** 1.5, 3),
        "texture_mg_cm3": round(10.0 + 50.0 * u[6], 2),
        "texture_scale_mm": round(1.0 + 3.0 * u[7], 3),
        "marrow_mg_cm3": round(40.0 * u[8], 2),
        "fat_islands": round(2.0 * u[9] ** 2, 3),
        "shape_irregularity": round(0.2 + 0.8 * u[10], 3),
        "osteophytes": round(0.6 * u[11], 3),
        "disc_height_sd": round(0.3 * u[12], 3),
        "vacuum_disc_rate": 0.0 if u[13] < 0.5 else round(0.25 * u[14], 3),
        "fat_planes": round(u[15], 3),
        "soft_texture_hu": round(15.0 * u[16], 2),
    })
    return opts


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


def random_transfer_options(rng=None) -> dict:
    """Options of :func:`synthesize_ldct` widened for transfer to real CT (SynthSeg-style).

    Starts from :func:`random_training_options` and widens the grid and physics:
    pixels 0.5-3 mm, slices 0.6-5 mm, noise 2-80 HU (log-uniform), PSF 0.5-3.5 mm,
    kVp 70-140. Appearance effects that the renderer does not draw (contrast-filled
    vessels and heart chambers, calcified aorta, streaks, bias fields, cropped
    fields of view, arms) are added to training crops by
    :func:`bmdqct.segment.train.transfer_augment`.

    Examples
    --------
    >>> opts = random_transfer_options(4)
    >>> opts == random_transfer_options(4), 0.5 <= opts["pixel_mm"] <= 3.0
    (True, True)
    """
    rng = np.random.default_rng(rng)
    opts = random_training_options(rng)
    pixel = float(np.exp(rng.uniform(math.log(0.5), math.log(3.0))))
    n = int(np.clip(round(float(rng.uniform(340.0, 460.0)) / pixel), 64, 640))
    slice_mm = float(rng.choice((0.6, 1.0, 1.25, 2.0, 3.0, 4.0, 5.0)))
    # voxel cap as for training scans: coarser slices on fine grids
    while n * n * 400.0 / slice_mm > TRAIN_MAX_VOXELS and slice_mm < 5.0:
        slice_mm = {0.6: 1.0, 1.0: 1.25, 1.25: 2.0, 2.0: 3.0, 3.0: 4.0, 4.0: 5.0}[slice_mm]
    opts.update({
        "shape": (n, n), "pixel_mm": round(pixel, 4), "slice_mm": slice_mm,
        "slice_thickness_mm": None,
        "noise_hu": round(float(np.exp(rng.uniform(math.log(2.0), math.log(80.0)))), 2),
        "psf_fwhm_mm": round(float(rng.uniform(0.5, 3.5)), 3),
        "kvp": float(rng.choice((70.0, 80.0, 100.0, 120.0, 140.0))),
    })
    if opts["cranial"] in _TRAIN_CRANIAL[:3] and n * n * 300.0 / slice_mm > TRAIN_MAX_VOXELS:
        opts["cranial"] = "T6"
    return opts


def heldout_options(rng=None) -> dict:
    """A synthetic configuration never used in training, for measuring generalisation.

    Other anatomy ranges and appearance families than :func:`random_training_options`
    and :func:`random_transfer_options`: scans T4-T8 down to L3-L5, 0.6-0.9 mm pixels
    on a 512 grid, 1.25 or 2 mm slices, high noise (45-70 HU), bright thick cortex
    (800-1100 mg/cm3), coarse texture (4-6 mm grain), marrow patches 40-70 mg/cm3,
    heavy fat planes and soft texture 15-30 HU.

    Examples
    --------
    >>> opts = heldout_options(1)
    >>> opts["caudal"] in ("L3", "L4", "L5"), 45.0 <= opts["noise_hu"] <= 70.0
    (True, True)
    """
    rng = np.random.default_rng(rng)
    u = [float(x) for x in rng.random(10)]
    return {
        "cranial": str(rng.choice(("T4", "T5", "T6", "T7", "T8"))),
        "caudal": str(rng.choice(("L3", "L4", "L5"))), "margin_mm": 10.0,
        "shape": (512, 512), "pixel_mm": round(0.6 + 0.3 * u[0], 4),
        "slice_mm": float(rng.choice((1.25, 2.0))), "kvp": float(rng.choice((100.0, 120.0, 140.0))),
        "noise_hu": round(45.0 + 25.0 * u[1], 2), "psf_fwhm_mm": round(1.0 + 1.0 * u[2], 3),
        "cortical_mg_cm3": round(800.0 + 300.0 * u[3], 1), "cortical_mm": round(1.2 + 0.8 * u[4], 3),
        "texture_mg_cm3": round(30.0 + 40.0 * u[5], 2), "texture_scale_mm": round(4.0 + 2.0 * u[6], 3),
        "marrow_mg_cm3": round(40.0 + 30.0 * u[7], 2), "fat_planes": round(0.7 + 0.3 * u[8], 3),
        "soft_texture_hu": round(15.0 + 15.0 * u[9], 2), "shape_irregularity": 0.6,
    }
