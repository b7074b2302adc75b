"""Transfer training data: widened synthetic options, held-out configuration, crop augmentation."""

import numpy as np
from scipy import ndimage

from bmdqct.segment.train import transfer_augment
from bmdqct.synthetic import (
    heldout_options,
    random_training_options,
    random_transfer_options,
)


def test_transfer_options_cover_the_widened_grid_and_noise():
    draws = [random_transfer_options(s) for s in range(200)]
    pixels = [d["pixel_mm"] for d in draws]
    slices = {d["slice_mm"] for d in draws}
    noise = [d["noise_hu"] for d in draws]
    assert 0.5 <= min(pixels) < 0.7 and 2.5 < max(pixels) <= 3.0
    assert {0.6, 5.0} <= slices or (min(slices) < 1.0 and max(slices) >= 4.0)
    assert min(noise) < 8.0 and 60.0 < max(noise) <= 80.0
    # the voxel cap of training scans holds (fine pixels get thicker slices)
    assert all(d["shape"][0] ** 2 * 400.0 / d["slice_mm"] <= 12_000_000 or d["slice_mm"] == 5.0
               for d in draws)


def test_heldout_configuration_lies_outside_the_training_draws():
    held = [heldout_options(s) for s in range(50)]
    train = [random_training_options(s) for s in range(200)]
    assert all(h["noise_hu"] >= 45.0 and h["cortical_mg_cm3"] >= 800.0 for h in held)
    assert max(t["cortical_mg_cm3"] for t in train) <= 800.0  # bright cortex is never trained
    assert all(h["texture_scale_mm"] >= 4.0 for h in held)
    assert max(t["texture_scale_mm"] for t in train) <= 4.0


def test_transfer_augment_draws_contrast_outside_bodies_and_keeps_inputs():
    x = np.full((16, 32, 32), 40.0, np.float32)  # soft tissue
    y = np.zeros(x.shape, np.uint8)
    y[:, 12:20, 12:20] = 3
    x[y > 0] = 300.0  # a bone block
    before = x.copy()
    bright_outside, body_means = 0, []
    for seed in range(40):
        out = transfer_augment(x, y, np.random.default_rng(seed))
        assert out.shape == x.shape and out.dtype == np.float32
        smooth = ndimage.median_filter(out, size=3)
        bright_outside += int(((smooth > 140.0) & (y == 0)).mean() > 0.01)
        body_means.append(float(out[y > 0].mean()))
    np.testing.assert_array_equal(x, before)  # input untouched
    np.testing.assert_array_equal(transfer_augment(x, y, np.random.default_rng(3)),
                                  transfer_augment(x, y, np.random.default_rng(3)))
    assert bright_outside >= 8  # contrast-filled structures appear in many draws
    assert np.all(np.abs(np.array(body_means) - 300.0) < 200.0)  # bone stays bone


def test_real_cases_are_drawn_at_the_configured_fraction():
    from bmdqct.segment.train import TrainingConfig, _pick_case

    cases = [{"id": i} for i in range(50)] + [{"id": "real", "real": True}]
    rng = np.random.default_rng(0)
    picks = [_pick_case(cases, TrainingConfig(data_fraction=0.25), rng) for _ in range(4000)]
    share = np.mean([p.get("real", False) for p in picks])
    assert abs(share - 0.25) < 0.03  # uniform drawing would give 1/51
    picks = [_pick_case(cases, TrainingConfig(), rng) for _ in range(5100)]
    share = np.mean([p.get("real", False) for p in picks])
    assert abs(share - 1 / 51) < 0.01  # data_fraction 0: uniform over all cases, as before
