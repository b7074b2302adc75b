"""Appearance variety of synthetic scans (cortex, endplates, texture, marrow, shape, discs,
soft tissue, PSF) and :func:`bmdqct.synthetic.random_training_options`.

The truth must stay exact whatever the appearance: body masks where the bodies are,
trabecular density = the mean mineral of the trabecular mask, bodies never touching.
Small or coarse grids throughout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from bmdqct.levels import level_id, segmentation_class
from bmdqct.synthetic import (
    DEFAULT_OPTIONS,
    noise_sd_of_mean,
    random_training_options,
    synthesize_ldct,
)
from bmdqct.synthetic._appearance import APPEARANCE_OPTIONS, MARROW_FWHM_MM, patchy
from bmdqct.synthetic.subject import _TRAIN_CAUDAL, _TRAIN_CRANIAL, TRAIN_MAX_VOXELS, _resolve

COARSE = dict(shape=(128, 128), pixel_mm=2.5, slice_mm=2.5, cranial="T11", caudal="L2")
#: Every appearance option at a heavy setting.
HEAVY = dict(cortical_mg_cm3=300.0, cortical_mm=0.4, cortical_variation=1.0, endplate_mg_cm3=600.0,
             endplate_mm=1.8, endplate_sclerosis=0.5, texture_mg_cm3=60.0, texture_scale_mm=4.0,
             marrow_mg_cm3=40.0, fat_islands=2.0, shape_irregularity=1.0, osteophytes=0.6,
             disc_height_sd=0.3, vacuum_disc_rate=0.3, fat_planes=1.0, soft_texture_hu=15.0)


def _body_pairs(truth):
    names = truth.levels.present()
    return list(zip(names[:-1], names[1:]))


def _assert_truth_consistent(truth):
    lev, trab, cls = truth.levels.labels, truth.trabecular.labels, truth.classes.labels
    assert np.all(lev[trab > 0] == trab[trab > 0])  # trabecular interiors inside their bodies
    for name, ident in truth.levels.names.items():
        assert np.all(cls[lev == ident] == segmentation_class(name))
    assert not np.any((cls > 0) & (lev == 0))
    struct = np.ones((3, 3, 3), bool)
    for upper, lower in _body_pairs(truth):
        a, b = lev == level_id(upper), lev == level_id(lower)
        assert not np.any(ndimage.binary_dilation(a, struct) & b), (upper, lower)


# --------------------------------------------------------------------------- options


def test_defaults_are_the_classic_appearance():
    assert {name: DEFAULT_OPTIONS[name] for name in APPEARANCE_OPTIONS} == {
        name: spec[0] for name, spec in APPEARANCE_OPTIONS.items()}
    vol, truth = synthesize_ldct(5, **COARSE)
    classic = {name: spec[0] for name, spec in APPEARANCE_OPTIONS.items()}
    again, truth2 = synthesize_ldct(5, **COARSE, **classic)
    assert np.array_equal(vol.hu, again.hu)
    assert np.array_equal(truth.levels.labels, truth2.levels.labels)
    for name, value in classic.items():
        assert truth.options[name] == value


def test_none_draws_the_appearance_from_the_seed_reproducibly():
    drawn = {name: None for name, spec in APPEARANCE_OPTIONS.items() if spec[2] is not None}
    vol, truth = synthesize_ldct(21, **COARSE, **drawn, texture_mg_cm3=None, psf_fwhm_mm=None)
    for name in (*drawn, "texture_mg_cm3", "psf_fwhm_mm"):
        lo, hi = APPEARANCE_OPTIONS[name][2] if name in APPEARANCE_OPTIONS else {
            "texture_mg_cm3": (8.0, 60.0), "psf_fwhm_mm": (0.7, 2.5)}[name]
        assert lo <= truth.options[name] <= hi, name
    again, _ = synthesize_ldct(21, **COARSE, **drawn, texture_mg_cm3=None, psf_fwhm_mm=None)
    assert np.array_equal(vol.hu, again.hu)
    replay, _ = synthesize_ldct(21, **truth.options)
    assert np.array_equal(vol.hu, replay.hu)
    _, other = synthesize_ldct(22, **COARSE, **drawn)
    assert other.options["cortical_mg_cm3"] != truth.options["cortical_mg_cm3"]
    # options given explicitly keep their value; the others draw the same as before
    _, partial = synthesize_ldct(21, **COARSE, **{**drawn, "marrow_mg_cm3": 5.0})
    assert partial.options["marrow_mg_cm3"] == 5.0
    assert partial.options["cortical_mg_cm3"] == truth.options["cortical_mg_cm3"]


@pytest.mark.parametrize("name", sorted(APPEARANCE_OPTIONS))
def test_appearance_options_are_validated(name):
    lo, hi = APPEARANCE_OPTIONS[name][1]
    with pytest.raises(ValueError, match=rf"{name} must lie in \[{lo:g}, {hi:g}\]"):
        synthesize_ldct(1, **{name: hi + 1.0})
    with pytest.raises(TypeError, match=f"{name} must be a number"):
        synthesize_ldct(1, **{name: "heavy"})


@pytest.mark.parametrize("options, error, match", [
    ({"cortical_mg_cm3": 50.0}, ValueError, r"cortical_mg_cm3 must lie in \[100, 1200\]"),
    ({"cortical_mm": 0.0}, ValueError, r"cortical_mm must lie in \[0.2, 2.5\]"),
    ({"texture_scale_mm": 0.1}, ValueError, "texture_scale_mm must lie in"),
    ({"texture_mg_cm3": 150.0}, ValueError, "texture_mg_cm3 must lie in"),
    ({"psf_fwhm_mm": 12.0}, ValueError, r"psf_fwhm_mm must lie in \[0, 10\]"),
    ({"fat_planes": -0.1}, ValueError, "fat_planes must lie in"),
    ({"vacuum_disc_rate": True}, TypeError, "vacuum_disc_rate must be a number"),
    ({"disc_height_sd": float("nan")}, ValueError, "disc_height_sd must lie in"),
])
def test_invalid_appearance_values(options, error, match):
    with pytest.raises(error, match=match):
        synthesize_ldct(1, **options)


# --------------------------------------------------------------------------- exact truth


def _gaussian_autocorrelation(sigma_vox, lags):
    if sigma_vox < 1e-3:
        return (lags == 0).astype(float)
    impulse = np.zeros(257)
    impulse[128] = 1.0
    h = ndimage.gaussian_filter1d(impulse, sigma_vox, mode="constant", truncate=3.0)
    full = np.correlate(h, h, mode="full") / np.sum(h * h)
    mid = full.size // 2
    return np.array([full[mid + int(d)] if abs(d) <= mid else 0.0 for d in lags])


def _field_sd_of_mean(mask, spacing, sd_hu, fwhm_mm):
    """Upper bound on the SD of the mean over `mask` of a unit field scaled to `sd_hu`.

    The field is white noise smoothed by a Gaussian of FWHM `fwhm_mm` (z, y, x), or a
    pointwise transform of one (the marrow patches): a transform of a Gaussian field
    whose autocorrelation is non-negative has an autocorrelation no larger (Hermite
    expansion), so the Gaussian's autocorrelation bounds both.
    """
    idx = np.nonzero(mask)
    box = mask[tuple(slice(i.min(), i.max() + 1) for i in idx)].astype(float)
    pad = tuple(2 * n - 1 for n in box.shape)
    spec = np.fft.rfftn(box, s=pad, axes=(0, 1, 2))
    pairs = np.fft.fftshift(np.fft.irfftn(np.abs(spec) ** 2, s=pad, axes=(0, 1, 2)))
    rho = 1.0
    for axis, n in enumerate(box.shape):
        sigma = fwhm_mm[axis] / 2.3548 / spacing[axis]
        lags = np.arange(-(n - 1), n)
        shape = [1, 1, 1]
        shape[axis] = lags.size
        rho = rho * _gaussian_autocorrelation(sigma, lags).reshape(shape)
    return sd_hu * math.sqrt(max(float(np.sum(rho * pairs)), 0.0)) / box.sum()


def test_trabecular_core_mean_equals_bone_line_under_heavy_texture():
    noise = 30.0
    vol, truth = synthesize_ldct(11, shape=(160, 160), pixel_mm=1.0, slice_mm=1.5, cranial="T11",
                                 caudal="L2", noise_hu=noise, density_mg_cm3={"T12": 95.0, "L1": 150.0,
                                                                               "L2": 60.0}, **HEAVY)
    _assert_truth_consistent(truth)
    spacing = vol.spacing
    b = truth.b_hu_per_mg_cm3
    scale = truth.options["texture_scale_mm"]
    for level in ("T12", "L1", "L2"):
        trab = truth.trabecular.labels == level_id(level)
        core = ndimage.distance_transform_edt(trab, sampling=spacing) > 3.0
        assert core.sum() > 2000
        expected = truth.a_hu + b * truth.density_mg_cm3[level]
        measured = float(vol.hu[core].mean())
        sd_noise = noise_sd_of_mean(core, spacing, noise, grid_shape_yx=vol.shape[1:],
                                    peak_cycles_mm=truth.options["nps_peak_cycles_mm"],
                                    fwhm_z_mm=1.15 * spacing[0])
        sd_tex = _field_sd_of_mean(core, spacing, 60.0 * b, (scale * 5.0 / 3.0, scale, scale))
        sd_marrow = _field_sd_of_mean(core, spacing, 40.0 * b, MARROW_FWHM_MM)
        sd = math.sqrt(sd_noise ** 2 + sd_tex ** 2 + sd_marrow ** 2)
        assert abs(measured - expected) < 4.0 * sd, (level, measured, expected, sd)
        # coarse blobs make the core mean uncertain (about 15 HU here), yet the test stays
        # sharp enough to catch a texture that is not zero-mean over the trabecular mask
        assert sd < 25.0
        # the texture is really there: hundreds of HU of variation inside the body
        assert float(vol.hu[core].std()) > 70.0


def test_patchy_marrow_field_is_standardized_and_skewed_dark():
    field = np.random.default_rng(0).standard_normal((40, 40, 40)).astype(np.float32)
    field = ndimage.gaussian_filter(field, 2.0)
    field /= field.std()
    out = patchy(field)
    assert out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-5 and float(out.std()) == pytest.approx(1.0, abs=1e-4)
    assert -np.percentile(out, 1) > np.percentile(out, 99)  # dark patches outweigh bright ones
    assert np.mean(np.abs(out - np.median(out)) < 1e-3) > 0.4  # mostly background, sparse patches


def test_fatty_islands_are_dark_and_excluded_from_the_trabecular_truth():
    common = dict(shape=(128, 128), pixel_mm=1.25, slice_mm=1.5, cranial="T12", caudal="L2",
                  noise_hu=0.0, texture_mg_cm3=0.0, density_mg_cm3=150.0)
    vol0, t0 = synthesize_ldct(31, **common)
    vol1, t1 = synthesize_ldct(31, **common, fat_islands=6.0)
    lid = level_id("L1")
    n0 = (t0.trabecular.labels == lid).sum()
    n1 = (t1.trabecular.labels == lid).sum()
    assert n1 < n0
    # bodies are unchanged; the removed voxels are dark (fatty marrow) inside the body
    assert np.array_equal(t0.levels.labels, t1.levels.labels)
    removed = (t0.trabecular.labels > 0) & (t1.trabecular.labels == 0)
    expected = t1.a_hu + t1.b_hu_per_mg_cm3 * 150.0
    assert removed.sum() > 50 and float(np.median(vol1.hu[removed])) < expected - 60.0
    # the remaining interior still reads the true density exactly
    core = ndimage.distance_transform_edt(t1.trabecular.labels == lid, sampling=vol1.spacing) > 3.0
    assert np.abs(vol1.hu[core] - expected).max() < 0.05


def test_cortex_and_endplate_options_shape_the_shell():
    common = dict(shape=(128, 128), pixel_mm=1.0, slice_mm=1.0, cranial="T12", caudal="L1",
                  margin_mm=4.0, noise_hu=0.0, texture_mg_cm3=0.0, density_mg_cm3=100.0, psf_fwhm_mm=0.0)
    faint, tf = synthesize_ldct(3, **common, cortical_mg_cm3=250.0, cortical_mm=0.4)
    dense, td = synthesize_ldct(3, **common, cortical_mg_cm3=800.0, cortical_mm=1.2)
    lid = level_id("L1")
    shell_f = (tf.levels.labels == lid) & (tf.trabecular.labels == 0)
    shell_d = (td.levels.labels == lid) & (td.trabecular.labels == 0)
    assert float(faint.hu[shell_f].mean()) < float(dense.hu[shell_d].mean()) - 100.0
    assert (tf.trabecular.labels == lid).sum() > (td.trabecular.labels == lid).sum()  # thinner shell
    thin, tt = synthesize_ldct(3, **common, endplate_mm=0.5, endplate_mg_cm3=400.0)
    thick, tk = synthesize_ldct(3, **common, endplate_mm=3.0, endplate_mg_cm3=700.0)
    assert np.array_equal(tt.levels.labels, tk.levels.labels)

    def height(t):
        zs = np.nonzero((t.trabecular.labels == lid).any(axis=(1, 2)))[0]
        return (zs.max() - zs.min() + 1) * vol_spacing_z

    vol_spacing_z = thin.spacing[0]
    assert height(tt) - height(tk) >= 4.0  # 2 x 2.5 mm thicker endplates, less the voxel steps
    centre = tuple(int(round(c)) for c in ndimage.center_of_mass(tt.levels.labels == lid))
    column = (tk.levels.labels[:, centre[1], centre[2]] == lid)
    assert float(thick.hu[column, centre[1], centre[2]].max()) > float(thin.hu[column, centre[1], centre[2]].max())
    # sclerotic endplates (every level at rate 1): thicker bands, outside the trabecular truth
    _, base = synthesize_ldct(3, **common)
    _, ts = synthesize_ldct(3, **common, endplate_sclerosis=1.0)
    assert np.array_equal(base.levels.labels, ts.levels.labels)
    assert (ts.trabecular.labels == lid).sum() < 0.95 * (base.trabecular.labels == lid).sum()


@pytest.mark.parametrize("slice_mm", [1.25, 2.5, 4.0])
def test_irregular_bodies_and_discs_never_touch(slice_mm):
    _, truth = synthesize_ldct(9, shape=(96, 96), pixel_mm=3.0, slice_mm=slice_mm, cranial="T1",
                               caudal="L3", noise_hu=0.0, fracture="T12", shape_irregularity=1.0,
                               disc_height_sd=0.5, osteophytes=1.0, endplate_sclerosis=1.0)
    assert {"T1", "L3"} <= set(truth.levels.present())
    _assert_truth_consistent(truth)


def test_irregular_shapes_change_the_bodies_within_reason():
    common = dict(shape=(128, 128), pixel_mm=1.5, slice_mm=1.5, cranial="T11", caudal="L2", noise_hu=0.0)
    _, regular = synthesize_ldct(14, **common)
    _, irregular = synthesize_ldct(14, **common, shape_irregularity=1.0)
    _assert_truth_consistent(irregular)
    assert regular.centers_mm == irregular.centers_mm  # shape, not geometry
    for level in ("T12", "L1"):
        a = regular.levels.labels == level_id(level)
        b = irregular.levels.labels == level_id(level)
        dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
        assert 0.75 < dice < 0.995, (level, dice)


def test_disc_heights_vary_and_bodies_follow():
    common = dict(shape=(96, 96), pixel_mm=3.0, slice_mm=3.0, cranial="T8", caudal="L2", noise_hu=0.0)
    _, regular = synthesize_ldct(4, **common)
    _, varied = synthesize_ldct(4, **common, disc_height_sd=0.3)
    gaps = []
    for t in (regular, varied):
        z = [t.centers_mm[lv][2] for lv in ("T8", "T9", "T10", "T11", "T12", "L1")]
        gaps.append(-np.diff(z))
    assert not np.allclose(gaps[0], gaps[1], atol=0.2)
    _assert_truth_consistent(varied)


def test_vacuum_discs_hold_gas_between_the_bodies():
    common = dict(shape=(128, 128), pixel_mm=1.5, slice_mm=1.0, cranial="T12", caudal="L3", noise_hu=0.0,
                  age_years=85.0)

    def gas(vol, truth):
        # voxels between two bodies: a body voxel both above and below in the same column
        bodies = ndimage.binary_erosion(truth.levels.labels > 0, np.ones((1, 5, 5), bool))
        below = np.maximum.accumulate(bodies, axis=0)
        above = np.maximum.accumulate(bodies[::-1], axis=0)[::-1]
        between = below & above & ~(truth.levels.labels > 0)
        return int(np.sum(vol.hu[between] < -300.0))

    assert gas(*synthesize_ldct(6, **common, vacuum_disc_rate=0.0)) == 0
    assert gas(*synthesize_ldct(6, **common, vacuum_disc_rate=1.0)) > 20


def test_fat_planes_and_soft_texture_change_only_soft_tissue():
    common = dict(shape=(128, 128), pixel_mm=2.0, slice_mm=2.5, cranial="T12", caudal="L3", noise_hu=0.0)
    plain, truth = synthesize_ldct(8, **common)
    fatty, truth_f = synthesize_ldct(8, **common, fat_planes=1.0)
    textured, _ = synthesize_ldct(8, **common, soft_texture_hu=20.0)
    assert np.array_equal(truth.levels.labels, truth_f.levels.labels)
    core = ndimage.distance_transform_edt(truth.trabecular.labels > 0, sampling=plain.spacing) > 3.0
    assert np.abs(plain.hu[core] - fatty.hu[core]).max() < 0.01  # equal up to FFT rounding
    assert np.abs(plain.hu[core] - textured.hu[core]).max() < 0.01
    # fat sheaths of psoas and quadratus lumborum, prevertebral fat, septa of the erector
    # spinae (fat where there was muscle); crura (muscle where there was fat); not in bodies
    change = fatty.hu - plain.hu
    bodies = ndimage.binary_dilation(truth.levels.labels > 0, iterations=1)
    assert np.sum((change < -60.0) & ~bodies) > 300
    assert np.sum((change > 60.0) & ~bodies) > 20
    inner = ndimage.binary_erosion(truth.levels.labels > 0, iterations=2)
    assert np.abs(change[inner]).max() < 1.0  # bodies keep their HU (edges blend with new fat)
    diff = textured.hu - plain.hu
    changed = np.abs(diff) > 1e-3
    assert changed.sum() > 1000
    assert 8.0 < float(diff[changed].std()) < 30.0
    soft = (plain.hu > -250.0) & (plain.hu < 250.0)
    assert np.mean(soft[changed]) > 0.9  # the texture lives in fat and muscle


def test_wide_psf_blurs_the_scan():
    common = dict(shape=(96, 96), pixel_mm=1.5, slice_mm=2.0, cranial="T12", caudal="L2", noise_hu=0.0)
    sharp, _ = synthesize_ldct(2, **common, psf_fwhm_mm=0.7)
    blurry, _ = synthesize_ldct(2, **common, psf_fwhm_mm=3.0)

    def edges(vol):
        inside = vol.hu > -1500.0  # ignore the FOV padding
        grad = np.abs(np.diff(vol.hu, axis=2))
        return float(grad[inside[:, :, 1:] & inside[:, :, :-1]].mean())

    assert edges(blurry) < 0.8 * edges(sharp)


# --------------------------------------------------------------------------- training options


def test_random_training_options_are_diverse_valid_and_deterministic():
    draws = [random_training_options(np.random.default_rng(i)) for i in range(300)]
    assert random_training_options(7) == random_training_options(np.random.default_rng(7))
    assert draws[0] != draws[1]
    for opts in draws[:60]:
        _resolve(0, opts)  # every draw is a valid option set
    cranial = {o["cranial"] for o in draws}
    caudal = [o["caudal"] for o in draws]
    assert cranial <= set(_TRAIN_CRANIAL) | {"T6", "T7", "T8", "T9", "T10", "T11", "T12"}
    assert len(cranial & set(_TRAIN_CRANIAL)) >= 5
    assert set(caudal) == set(_TRAIN_CAUDAL)
    above_l2 = np.mean([c in ("T11", "T12", "L1") for c in caudal])
    assert 0.25 < above_l2 < 0.45
    pixel = np.array([o["pixel_mm"] for o in draws])
    assert pixel.min() < 0.8 and pixel.max() > 2.8 and np.all((pixel >= 0.7) & (pixel <= 3.0))
    fov = np.array([o["shape"][0] * o["pixel_mm"] for o in draws])
    assert np.all((fov > 340.0) & (fov < 460.0))
    assert {o["slice_mm"] for o in draws} == {1.0, 1.25, 1.5, 2.0, 2.5, 3.0}
    assert {o["kvp"] for o in draws} >= {80.0, 100.0, 120.0, 140.0}
    noise = np.array([o["noise_hu"] for o in draws])
    assert noise.min() < 12.0 and noise.max() > 50.0
    psf = np.array([o["psf_fwhm_mm"] for o in draws])
    assert psf.min() < 0.7 and psf.max() > 2.8
    ribs = [o["n_rib_pairs"] for o in draws]
    assert 0 < ribs.count(11) < 45 and 0 < ribs.count(13) < 45
    assert 0 < sum("fracture" in o for o in draws) < 60 and 0 < sum("sclerotic" in o for o in draws) < 50
    assert 50 < sum(o["scoliosis_deg"] > 0 for o in draws) < 130
    dens = [o["density_mg_cm3"] for o in draws]
    assert 100 < dens.count(None) < 200
    assert min(d for d in dens if d) < 40.0 and max(d for d in dens if d) > 230.0
    for name, (_, (lo, hi), _) in APPEARANCE_OPTIONS.items():
        values = np.array([o[name] for o in draws], dtype=float)
        assert np.all((values >= lo) & (values <= hi)), name
        assert values.max() > values.min(), name
    cort = np.array([o["cortical_mg_cm3"] for o in draws])
    assert cort.min() < 270.0 and cort.max() > 780.0
    scale = np.array([o["texture_scale_mm"] for o in draws])
    assert scale.min() < 1.1 and scale.max() > 3.9


def test_random_training_grids_stay_cheap():
    from bmdqct.synthetic._anatomy import MODEL_LEVELS, _BODY_REF

    sizes = []
    for i in range(200):
        o = random_training_options(i)
        first, last = MODEL_LEVELS.index(o["cranial"]), MODEL_LEVELS.index(o["caudal"])
        length = sum(_BODY_REF[lv][0] + _BODY_REF[lv][3] for lv in MODEL_LEVELS[first:last + 1])
        sizes.append((length + 2 * o["margin_mm"]) / o["slice_mm"] * o["shape"][0] * o["shape"][1])
    assert np.mean(sizes) < TRAIN_MAX_VOXELS
    assert np.mean(np.array(sizes) > 1.5 * TRAIN_MAX_VOXELS) < 0.05


def test_a_random_training_scan_renders_with_exact_truth():
    opts = random_training_options(np.random.default_rng(5))
    opts.update(shape=(96, 96), pixel_mm=4.0, slice_mm=4.0)  # same subject and look, coarse grid
    vol, truth = synthesize_ldct(5, **opts)
    assert truth.levels.present()
    _assert_truth_consistent(truth)
    again, _ = synthesize_ldct(5, **opts)
    assert np.array_equal(vol.hu, again.hu)
