"""Tests of the synthetic LDCT generator (bmdqct.synthetic.synthesize_ldct).

Small or coarse grids throughout, so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from bmdqct.levels import level_id, segmentation_class
from bmdqct.synthetic import (
    default_hu_line,
    noise_sd_of_mean,
    synthesize_ldct,
)
from bmdqct.synthetic._skeleton import TEXTURE_FWHM_MM

COARSE = dict(shape=(128, 128), pixel_mm=2.5, slice_mm=2.5, cranial="T9", caudal="L2")


@pytest.fixture(scope="module")
def coarse():
    return synthesize_ldct(5, **COARSE)


def test_same_seed_gives_identical_volume_and_labels(coarse):
    vol, truth = coarse
    vol2, truth2 = synthesize_ldct(5, **COARSE)
    assert np.array_equal(vol.hu, vol2.hu)
    assert np.array_equal(vol.affine, vol2.affine)
    assert np.array_equal(truth.levels.labels, truth2.levels.labels)
    assert truth.density_mg_cm3 == truth2.density_mg_cm3
    other, _ = synthesize_ldct(6, **COARSE)
    assert not np.array_equal(vol.hu, other.hu)


def test_volume_is_canonical_with_scanner_metadata(coarse):
    vol, truth = coarse
    assert vol.orientation == ("S", "P", "L")
    assert vol.hu.dtype == np.float32
    assert vol.spacing == pytest.approx((2.5, 2.5, 2.5))
    meta = vol.metadata
    assert meta["manufacturer"] == "bmdqct-synthetic" and meta["device_serial"] == "SYN-0001"
    assert meta["format"] == "synthetic" and meta["kvp"] == 120.0
    assert meta["study_date"] == truth.options["study_date"]
    vol2, _ = synthesize_ldct(5, **COARSE, scanner={"device_serial": "XYZ-9"}, study_date="2024-05-06",
                              kvp=80)
    assert vol2.metadata["device_serial"] == "XYZ-9" and vol2.metadata["model"] == "SynthCT 64"
    assert vol2.metadata["study_date"] == "2024-05-06" and vol2.metadata["kvp"] == 80.0


def test_truth_fields_and_classes(coarse):
    vol, truth = coarse
    present = truth.levels.present()
    # the scan covers T9-L2 plus a 12-mm margin, which may catch a neighbour's endplate
    assert {"T9", "T10", "T11", "T12", "L1", "L2"} <= set(present) <= {"T8", *present, "L3"}
    assert truth.levels.names["L1"] == level_id("L1") == 20
    assert dict(truth.classes.names) == {"T1-T6": 1, "T7-T12": 2, "L1-L2": 3}
    # the class map is the level map relabelled
    for name, ident in truth.levels.names.items():
        mask = truth.levels.labels == ident
        assert np.all(truth.classes.labels[mask] == segmentation_class(name))
    assert not np.any((truth.classes.labels > 0) & (truth.levels.labels == 0))
    # trabecular interiors lie inside their bodies
    assert np.all(truth.levels.labels[truth.trabecular.labels > 0]
                  == truth.trabecular.labels[truth.trabecular.labels > 0])
    a, b = default_hu_line(120)
    assert (truth.a_hu, truth.b_hu_per_mg_cm3, truth.kvp) == (a, b, 120.0)
    assert set(truth.density_mg_cm3) == set(truth.levels.present())
    assert truth.n_rib_pairs == 12 and truth.rib_levels[-1] == "T12"
    assert truth.seed == 5 and truth.options["cranial"] == "T9"
    summary = truth.to_dict()
    assert summary["levels"]["L2"] == 21 and summary["options"]["shape"] == [128, 128]


def test_resolved_options_reproduce_the_scan(coarse):
    vol, truth = coarse
    again, _ = synthesize_ldct(truth.seed, **truth.options)
    assert np.array_equal(vol.hu, again.hu)


def test_anatomy_is_defined_in_mm_not_on_the_grid(coarse):
    _, truth = coarse
    _, fine = synthesize_ldct(5, shape=(192, 192), pixel_mm=1.5, slice_mm=1.5, cranial="T9", caudal="L2",
                              noise_hu=0.0)
    assert fine.centers_mm["L1"] == pytest.approx(truth.centers_mm["L1"])
    assert fine.density_mg_cm3["L1"] == truth.density_mg_cm3["L1"]
    # body volume agrees within the partial-volume error of 2.5-mm voxels (~12 %)
    v_coarse = (truth.levels.labels == 20).sum() * truth.levels.voxel_volume_mm3
    v_fine = (fine.levels.labels == 20).sum() * fine.levels.voxel_volume_mm3
    assert v_coarse == pytest.approx(v_fine, rel=0.12)
    assert 15_000 < v_fine < 60_000  # an adult L1 body: about 25-45 cm³


def _gaussian_autocorrelation(sigma_vox, lags):
    """Autocorrelation at integer `lags` of white noise smoothed like ndimage.gaussian_filter."""
    if sigma_vox < 1e-3:
        return (lags == 0).astype(float)
    impulse = np.zeros(129)
    impulse[64] = 1.0
    h = ndimage.gaussian_filter1d(impulse, sigma_vox, mode="constant", truncate=3.0)
    full = np.correlate(h, h, mode="full") / np.sum(h * h)
    mid = full.size // 2
    return np.array([full[mid + int(d)] if abs(d) <= mid else 0.0 for d in lags])


def _texture_sd_of_mean(mask, spacing, sd_hu):
    """Upper bound on the SD of the mean of the trabecular texture over `mask`.

    The texture is white noise smoothed by a Gaussian (FWHM ``TEXTURE_FWHM_MM``) and scaled
    to SD `sd_hu`: its autocorrelation is the separable product of the kernels'
    autocorrelations. Var(mean) = sd² / n² * sum_d rho(d) P(d) with P(d) the number of
    mask pairs at lag d. The PSF blur and the subtraction of the texture's mean over the
    whole trabecular interior only lower the true variance, so this bounds it.
    """
    idx = np.nonzero(mask)
    box = mask[tuple(slice(i.min(), i.max() + 1) for i in idx)].astype(float)
    pad = tuple(2 * n - 1 for n in box.shape)
    spec = np.fft.rfftn(box, s=pad, axes=(0, 1, 2))
    pairs = np.fft.fftshift(np.fft.irfftn(np.abs(spec) ** 2, s=pad, axes=(0, 1, 2)))
    rho = 1.0
    for axis, n in enumerate(box.shape):
        sigma = TEXTURE_FWHM_MM[axis] / 2.3548 / spacing[axis]
        lags = np.arange(-(n - 1), n)
        shape = [1, 1, 1]
        shape[axis] = lags.size
        rho = rho * _gaussian_autocorrelation(sigma, lags).reshape(shape)
    return sd_hu * math.sqrt(max(float(np.sum(rho * pairs)), 0.0)) / box.sum()


@pytest.mark.parametrize("kvp, density", [(120.0, {"T12": 95.0, "L1": 150.0, "L2": 60.0}), (80.0, 110.0)])
def test_trabecular_core_mean_equals_bone_line_within_noise_ci(kvp, density):
    noise = 40.0
    vol, truth = synthesize_ldct(11, shape=(160, 160), pixel_mm=1.0, slice_mm=1.5, cranial="T11",
                                 caudal="L2", noise_hu=noise, kvp=kvp, density_mg_cm3=density)
    spacing = vol.spacing
    for level in ("T12", "L1", "L2"):
        trab = truth.trabecular.labels == level_id(level)
        # core: > 3 mm from anything that is not this body's trabecular interior (shell,
        # endplates, vein), far beyond the PSF (sigma 0.47 mm in-plane) and the 1.5-mm
        # partial-volume ramp through-plane, so no other tissue leaks into it
        core = ndimage.distance_transform_edt(trab, sampling=spacing) > 3.0
        assert core.sum() > 2000
        expected = truth.a_hu + truth.b_hu_per_mg_cm3 * truth.density_mg_cm3[level]
        measured = float(vol.hu[core].mean())
        # CI of the core mean: correlated noise (exact, from the NPS and the z kernel:
        # the NPS vanishes at f = 0, so the mean is far less noisy than noise/sqrt(n))
        # plus the zero-mean texture (bound above); 4 SD -> false alarm rate 6e-5
        sd_noise = noise_sd_of_mean(core, spacing, noise, grid_shape_yx=vol.shape[1:],
                                    peak_cycles_mm=truth.options["nps_peak_cycles_mm"],
                                    fwhm_z_mm=1.15 * spacing[0])
        sd_tex = _texture_sd_of_mean(core, spacing, truth.options["texture_mg_cm3"] * truth.b_hu_per_mg_cm3)
        sd = math.hypot(sd_noise, sd_tex)
        assert abs(measured - expected) < 4.0 * sd, (level, measured, expected, sd_noise, sd_tex)
        assert sd < 3.0  # the test is sharp: a 1 % error in b would show at L1


def test_noiseless_core_is_exact():
    vol, truth = synthesize_ldct(3, shape=(128, 128), pixel_mm=1.25, slice_mm=2.0, cranial="T12",
                                 caudal="L2", noise_hu=0.0, texture_mg_cm3=0.0, density_mg_cm3=123.0)
    for level in ("L1", "L2"):
        core = ndimage.distance_transform_edt(truth.trabecular.labels == level_id(level),
                                              sampling=vol.spacing) > 3.0
        expected = truth.a_hu + truth.b_hu_per_mg_cm3 * 123.0
        assert np.abs(vol.hu[core] - expected).max() < 0.05, np.abs(vol.hu[core] - expected).max()


THORACIC = tuple(f"T{n}" for n in range(1, 13))


@pytest.mark.parametrize("pairs, bearing", [(12, THORACIC), (11, THORACIC[:11]), (13, (*THORACIC, "L1"))])
def test_ribs_exactly_on_rib_bearing_levels(pairs, bearing):
    vol, truth = synthesize_ldct(8, shape=(128, 128), pixel_mm=2.5, slice_mm=2.5, cranial="T11",
                                 caudal="L2", n_rib_pairs=pairs, noise_hu=0.0)
    assert truth.n_rib_pairs == pairs
    assert truth.rib_levels == bearing
    z = vol.affine[2, 3] + vol.spacing[0] * np.arange(vol.shape[0])
    centred = [lvl for lvl in truth.levels.present() if z[0] < truth.centers_mm[lvl][2] < z[-1]]
    assert {"T11", "T12", "L1", "L2"} <= set(centred)
    # ribs of higher levels descend into the view: every labelled rib belongs to a rib-bearing level
    assert set(truth.ribs.names) <= set(bearing)
    for level in truth.levels.present():
        voxels = truth.ribs.labels == level_id(level)
        if level not in bearing:
            assert not voxels.any(), level
        elif level in centred:
            # a left and a right rib of bone: their voxels are bright
            assert voxels.sum() > 20, level
            left = voxels & (np.arange(vol.shape[2]) > vol.shape[2] // 2)[None, None, :]
            assert 0 < left.sum() < voxels.sum()
            assert float(np.median(vol.hu[voxels])) > 150.0
    # transitional anatomy is not an anomaly of the body (its BMD is valid)
    assert truth.anomalies == {}


@pytest.mark.parametrize("slice_mm", [1.25, 2.5, 4.0])
def test_masks_of_neighbouring_bodies_do_not_touch(slice_mm):
    _, truth = synthesize_ldct(9, shape=(96, 96), pixel_mm=3.0, slice_mm=slice_mm, cranial="T1",
                               caudal="L3", noise_hu=0.0, fracture="T12")
    names = truth.levels.present()
    assert {"T1", "L3"} <= set(names)
    struct = np.ones((3, 3, 3), bool)
    for upper, lower in zip(names[:-1], names[1:]):
        a = truth.levels.labels == level_id(upper)
        b = truth.levels.labels == level_id(lower)
        assert a.any() and b.any()
        assert not np.any(ndimage.binary_dilation(a, struct) & b), (upper, lower)


def test_fov_padding_outside_the_reconstruction_circle(coarse):
    vol, _ = coarse
    corners = vol.hu[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.all(corners == -2048.0)
    centre = vol.hu[:, 64, 64]
    assert np.all(centre > -1500.0)
    vol2, _ = synthesize_ldct(5, **COARSE, padding_hu=-3024.0)
    assert np.all(vol2.hu[:, 0, 0] == -3024.0)
    vol3, truth3 = synthesize_ldct(5, **COARSE, padding_hu=None)
    assert vol3.hu.min() > -1000.0 - 8.0 * truth3.noise_hu


def test_scan_stopping_above_l2_and_custom_ends():
    _, truth = synthesize_ldct(4, shape=(96, 96), pixel_mm=3.0, slice_mm=3.0, cranial="T10",
                               caudal="L1", margin_mm=-8.0, noise_hu=0.0)
    assert "L1" in truth.levels.present() and "L2" not in truth.levels.present()
    assert 3 not in np.unique(truth.classes.labels) or "L1" in truth.levels.present()
    _, top = synthesize_ldct(4, shape=(96, 96), pixel_mm=3.0, slice_mm=3.0, cranial="C6",
                             caudal="T6", noise_hu=0.0)
    assert {"C6", "C7", "T1", "T6"} <= set(top.levels.present()) and "T9" not in top.levels.present()


def test_fracture_and_sclerotic_focus():
    common = dict(shape=(128, 128), pixel_mm=1.5, slice_mm=1.5, cranial="T12", caudal="L2", noise_hu=0.0)
    vol0, t0 = synthesize_ldct(12, **common)
    vol1, t1 = synthesize_ldct(12, **common, fracture="L1", sclerotic="L2")
    assert t1.anomalies == {"L1": "fracture", "L2": "sclerotic"}
    lid = level_id("L1")
    # a wedge fracture removes volume, mostly anteriorly
    assert (t1.levels.labels == lid).sum() < 0.9 * (t0.levels.labels == lid).sum()
    # the sclerotic focus is dense and excluded from the trabecular truth
    body1 = t1.levels.labels == level_id("L2")
    body0 = t0.levels.labels == level_id("L2")
    assert (vol1.hu[body1] > 900.0).sum() > (vol0.hu[body0] > 900.0).sum() + 10
    assert (t1.trabecular.labels == level_id("L2")).sum() < (t0.trabecular.labels == level_id("L2")).sum()
    core = ndimage.distance_transform_edt(t1.trabecular.labels == level_id("L2"), sampling=vol1.spacing) > 2.0
    assert core.any() and np.all(vol1.hu[core] < 600.0)


def test_scoliosis_shifts_the_spine_laterally():
    common = dict(shape=(96, 96), pixel_mm=3.0, slice_mm=3.0, cranial="T4", caudal="L2", noise_hu=0.0)
    _, straight = synthesize_ldct(2, **common)
    _, curved = synthesize_ldct(2, **common, scoliosis_deg=20.0)
    xs = [abs(curved.centers_mm[lvl][0] - straight.centers_mm[lvl][0]) for lvl in ("T8", "T9", "T10")]
    assert max(xs) > 8.0


def test_trabecular_density_options():
    common = dict(shape=(64, 64), pixel_mm=5.0, slice_mm=5.0, cranial="T11", caudal="L2", noise_hu=0.0)
    _, t = synthesize_ldct(1, **common, density_mg_cm3=88.0)
    assert all(v == 88.0 for v in t.density_mg_cm3.values())
    _, t = synthesize_ldct(1, **common, density_mg_cm3={"L1": 70.0})
    assert t.density_mg_cm3["L1"] == 70.0 and t.density_mg_cm3["T12"] > 70.0 > t.density_mg_cm3["L2"]
    _, t = synthesize_ldct(1, **common)
    assert all(25.0 <= v <= 400.0 for v in t.density_mg_cm3.values())


@pytest.mark.parametrize("options, error, match", [
    ({"colour": "red"}, TypeError, "unknown option"),
    ({"cranial": "X9"}, ValueError, "cranial must be one of"),
    ({"cranial": "T12", "caudal": "T11"}, ValueError, "must lie above caudal"),
    ({"caudal": "C7"}, ValueError, "caudal must be one of"),
    ({"shape": (8, 8)}, ValueError, "16-2048 pixels"),
    ({"shape": "big"}, TypeError, "shape must be an int or"),
    ({"pixel_mm": "1"}, TypeError, "pixel_mm must be a number"),
    ({"slice_mm": 0.0}, ValueError, r"slice_mm must lie in \[0.3, 10\]"),
    ({"kvp": 200}, ValueError, "kvp must lie in"),
    ({"noise_hu": -1.0}, ValueError, "noise_hu must lie in"),
    ({"n_rib_pairs": 14}, ValueError, "n_rib_pairs must be 11, 12 or 13"),
    ({"density_mg_cm3": {"Q1": 100.0}}, ValueError, "unknown level 'Q1'"),
    ({"density_mg_cm3": {}}, ValueError, "must not be an empty mapping"),
    ({"density_mg_cm3": -5.0}, ValueError, "density_mg_cm3 must lie in"),
    ({"fracture": "C2"}, ValueError, "fracture must be one of"),
    ({"sclerotic": 3}, ValueError, "sclerotic must be one of"),
    ({"scoliosis_deg": 50.0}, ValueError, "scoliosis_deg must lie in"),
    ({"sex": "X"}, ValueError, "sex must be 'F', 'M' or None"),
    ({"study_date": "2024/01/01"}, ValueError, "ISO date"),
    ({"scanner": {"colour": "red"}}, ValueError, "unknown metadata key"),
    ({"scanner": "SYN"}, TypeError, "scanner must be a mapping"),
    ({"padding_hu": 0.0}, ValueError, "padding_hu must lie in"),
    ({"labels": "yes"}, TypeError, "labels must be True or False"),
])
def test_invalid_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        synthesize_ldct(1, **options)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_invalid_seed(seed):
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        synthesize_ldct(seed, shape=32)


def test_labels_can_be_skipped():
    vol, truth = synthesize_ldct(1, shape=(64, 64), pixel_mm=5.0, slice_mm=5.0, cranial="T11", caudal="L2",
                                 labels=False)
    assert not truth.levels.labels.any() and truth.levels.names == {}
    assert vol.shape == truth.levels.shape


def test_plot_synthetic_scan(close_figures, coarse):
    from matplotlib.figure import Figure

    from bmdqct.plotting.synthetic import plot_side_by_side, plot_synthetic_scan

    vol, truth = coarse
    fig = plot_synthetic_scan(vol, truth, outlines=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    title = fig.axes[1].get_title()
    assert title.startswith("axial z =") and abs(float(title.split()[3]) - truth.centers_mm["L1"][2]) <= 2.5
    fig = plot_side_by_side([("a", vol, None, None), ("b", vol, truth.centers_mm["T12"][2], None)],
                            window="lung")
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="unknown window"):
        plot_synthetic_scan(vol, truth, window="brain")
