"""Tests of the shared synthetic-CT physics (bmdqct.synthetic._physics)."""

from __future__ import annotations

import numpy as np
import pytest

from bmdqct.synthetic import _physics as ph


def test_default_line_per_kvp_slope_rises_as_kvp_falls():
    lines = {kvp: ph.default_hu_line(kvp) for kvp in (80, 100, 120)}
    assert lines == {80: (-0.4, 2.194), 100: (-0.4, 1.704), 120: (-0.4, 1.424)}
    assert ph.default_hu_line(140)[1] < lines[120][1]
    # 80 mg/cm³ (ACR osteoporosis threshold) reads about 110 HU at 120 kVp (Pickhardt 2013)
    assert 105 < ph.bone_hu(80.0, *lines[120]) < 120


def test_bone_hu_keeps_float32():
    rho = np.array([0.0, 100.0], dtype=np.float32)
    hu = ph.bone_hu(rho, -0.4, 1.424)
    assert hu.dtype == np.float32 and np.allclose(hu, [-0.4, 142.0])


def test_mindways_rods_recover_the_line_with_the_two_component_fit():
    """QCT Pro fit (qct-reference §1.2): HU - W = sigma_ref K + beta_ref; sigma_CT = sigma_ref - 0.2174,
    beta_CT = beta_ref + 999.6 must return the scanner's (b, a) exactly."""
    k = np.array([-51.83, -53.40, 58.88, 157.05, 375.83])
    w = np.array([1012.25, 1056.95, 1103.57, 1119.52, 923.20])
    for kvp in (80, 100, 120):
        a, b = ph.default_hu_line(kvp)
        hu = ph.mindways_rod_hu(k, w, a, b)
        sigma_ref, beta_ref = np.polyfit(k, hu - w, 1)
        assert sigma_ref - 0.2174 == pytest.approx(b, abs=1e-9)
        assert beta_ref + 999.6 == pytest.approx(a, abs=1e-9)
    # the test vector of qct-reference §1.2 (sigma_ref 1.40, beta_ref -1000)
    assert np.allclose(ph.mindways_rod_hu(k, w, -0.4, 1.1826),
                       [-60.312, -17.810, 186.002, 339.390, 449.362], atol=1e-3)


def test_ha_rods_use_faulkner_conversion():
    assert ph.ha_rod_hu(-7.32, 5.0, 1.5) == pytest.approx(5.0)
    assert ph.ha_rod_hu(107.68, 0.0, 1.0) == pytest.approx(100.0)


def test_tissue_table_values_and_kvp_trends():
    t120, t80 = ph.tissue_table(120), ph.tissue_table(80)
    assert set(t120) == set(ph.TISSUES)
    assert t120["air"] == t80["air"] == -1000.0
    assert t120["fat"] == -100.0 and t80["fat"] < t120["fat"] - 20
    assert -900 < t120["lung"] < -800 and 30 <= t120["muscle"] <= 60 and t120["liver"] > t120["muscle"]
    assert t80["cortical_bone"] > t120["cortical_bone"] > 1400
    assert ph.tissue_hu("cortical_bone", 120, a_hu=0.0, b_hu_per_mg_cm3=1.0) == ph.CORTICAL_BONE_MG_CM3


@pytest.mark.parametrize("call, error, match", [
    (lambda: ph.default_hu_line(60), ValueError, "kvp must lie in 70-140"),
    (lambda: ph.default_hu_line("high"), TypeError, "kvp must be a number"),
    (lambda: ph.tissue_hu("bone marrow", 120), ValueError, "unknown tissue"),
    (lambda: ph.psf_sigma_voxels(-1.0, (1, 1, 1)), ValueError, "fwhm_mm must be 3 finite non-negative"),
    (lambda: ph.psf_sigma_voxels(1.0, (0, 1, 1)), ValueError, "spacing must be positive"),
    (lambda: ph.correlated_noise((4, 8), (1, 1, 1), 10.0), ValueError, "shape must be 3 positive sizes"),
    (lambda: ph.correlated_noise((4, 8, 8), (1, 1, 1), -1.0), ValueError, "noise_hu must be a finite SD"),
    (lambda: ph.noise_power_spectrum((8, 8), 1.0, peak_cycles_mm=0.0), ValueError, "peak_cycles_mm"),
    (lambda: ph.noise_sd_of_mean(np.zeros((2, 4, 4), bool), (1, 1, 1), 10.0), ValueError, "at least one True"),
    (lambda: ph.blur_and_add_noise(np.zeros((2, 4, 4)), (1, 1, 1), psf_fwhm_mm=1.0, noise_hu=1.0),
     TypeError, "3-D float32 ndarray"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_psf_preserves_mean_and_has_the_given_fwhm():
    img = np.zeros((1, 101, 101), np.float32)
    img[0, 50, 50] = 1.0
    out = ph.apply_psf(img, (1.0, 0.5, 0.5), (0.0, 2.0, 2.0))
    assert out is not img and img[0, 50, 50] == 1.0  # input untouched
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    profile = out[0, 50]
    half = profile >= profile.max() / 2
    assert half.sum() * 0.5 == pytest.approx(2.0, abs=0.5)  # FWHM 2 mm on 0.5-mm pixels
    # the FFT path of blur_and_add_noise applies the same sampled kernel (circularly)
    img2 = img.copy()
    ph.blur_and_add_noise(img2, (1.0, 0.5, 0.5), psf_fwhm_mm=2.0, noise_hu=0.0)
    assert np.allclose(img2, out, atol=1e-6)


def test_correlated_noise_sd_nps_and_determinism():
    noise = ph.correlated_noise((24, 96, 96), (1.0, 0.7, 0.7), 30.0, rng=3)
    assert noise.std() == pytest.approx(30.0, rel=0.03)  # 220k voxels, a few hundred independent blobs
    assert abs(noise.mean()) < 0.5
    assert np.array_equal(noise, ph.correlated_noise((24, 96, 96), (1.0, 0.7, 0.7), 30.0, rng=3))
    # NPS peaks near the requested frequency, not at zero (no DC power: ramp-filtered noise)
    spec = np.mean(np.abs(np.fft.fft2(noise, axes=(1, 2))) ** 2, axis=0)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(96, 0.7), np.fft.fftfreq(96, 0.7), indexing="ij"))
    bins = np.digitize(f, np.linspace(0, 0.72, 13))
    radial = np.array([spec[bins == i].mean() for i in range(1, 13)])
    peak = (np.argmax(radial) + 0.5) * 0.06
    assert 0.18 < peak < 0.45 and radial[0] < 0.5 * radial.max()
    # adjacent slices correlate (slice profile), slices far apart do not
    r1 = np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]
    r3 = np.corrcoef(noise[:-3].ravel(), noise[3:].ravel())[0, 1]
    assert 0.05 < r1 < 0.5 and abs(r3) < 0.03


def test_long_volumes_reuse_shifted_noise_slices_with_the_same_statistics():
    noise = ph.correlated_noise((120, 64, 64), (1.0, 0.7, 0.7), 20.0, rng=1)
    per_slice = noise.std(axis=(1, 2))
    assert np.all(np.abs(per_slice - 20.0) < 3.0)
    # no two slices identical (each reuse is shifted and/or sign-flipped)
    flat = noise.reshape(120, -1)
    corr = np.corrcoef(flat[::7])
    assert np.max(np.abs(corr - np.eye(len(corr)))) < 0.2


def test_noise_sd_of_mean_matches_monte_carlo():
    mask = np.zeros((10, 40, 40), bool)
    mask[3:7, 10:25, 12:30] = True
    predicted = ph.noise_sd_of_mean(mask, (1.5, 0.8, 0.8), 25.0)
    means = [ph.correlated_noise((10, 40, 40), (1.5, 0.8, 0.8), 25.0, rng=i)[mask].mean() for i in range(300)]
    # 300 draws: the sample SD is within 3 x 4 % of the truth
    assert np.std(means) == pytest.approx(predicted, rel=0.12)
    # the NPS has no power at f = 0: region means are much less noisy than white noise
    assert predicted < 25.0 / np.sqrt(mask.sum())


def test_fov_padding():
    m = ph.fov_mask((10, 12), 1.0)
    assert m.shape == (10, 12) and m[5, 6] and not m[0, 0] and not m[5, 0]
    vol = np.zeros((3, 10, 12), np.float32)
    out = ph.apply_fov_padding(vol, 1.0, padding_hu=-3024.0)
    assert out is not vol and np.all(vol == 0)
    assert np.all(out[:, ~m] == -3024.0) and np.all(out[:, m] == 0.0)
    ph.apply_fov_padding(vol, 1.0, out=vol)
    assert np.all(vol[:, ~m] == -2048.0)
    small = ph.fov_mask((10, 10), 1.0, diameter_mm=4.0)
    assert small.sum() < m.sum()
