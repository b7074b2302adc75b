"""Tests of bmdqct.preprocess: resampling in physical space and HU clipping."""

from __future__ import annotations

import numpy as np
import pytest

from bmdqct.io import HU_AIR
from bmdqct.preprocess import clip_hu, resample, resample_like
from bmdqct.volume import CTVolume, LabelVolume, same_grid, to_canonical

COEFFICIENTS = np.array([3.0, -2.0, 5.0])  # HU per mm along L, P, S


def world_ramp(affine, shape):
    """CT whose HU is linear in LPS position: linear interpolation reproduces it exactly."""
    vol = CTVolume(np.zeros(shape), affine)
    world = vol.index_to_world(np.indices(shape).reshape(3, -1).T)
    return CTVolume((world @ COEFFICIENTS).reshape(shape), affine)


def assert_ramp_inside(out, source, atol):
    """Values equal the ramp wherever the point lies between the source's voxel centres."""
    world = out.index_to_world(np.indices(out.shape).reshape(3, -1).T)
    index = source.world_to_index(world)
    inside = np.all((index > -1e-6) & (index < np.array(source.shape) - 1 + 1e-6), axis=1)
    assert inside.any()
    np.testing.assert_allclose(out.hu.ravel()[inside], world[inside] @ COEFFICIENTS, atol=atol)


@pytest.mark.parametrize("spacing_mm, shape", [
    (1.0, (30, 10, 10)), ((1.5, 0.5, 2.0), (20, 20, 5)), (2, (15, 5, 5)),
])
def test_resample_covers_same_box(spacing_mm, shape):
    vol = world_ramp(CTVolume.from_spacing(np.zeros((1, 1, 1)), spacing=(3.0, 1.0, 1.0),
                                           origin=(4.0, -3.0, 12.0)).affine, (10, 10, 10))
    out = resample(vol, spacing_mm)
    assert out.shape == shape
    assert out.spacing == pytest.approx(np.broadcast_to(spacing_mm, (3,)))
    # outer voxel faces stay in place
    low_in = vol.index_to_world([-0.5, -0.5, -0.5])
    low_out = out.index_to_world([-0.5, -0.5, -0.5])
    np.testing.assert_allclose(low_out, low_in, atol=1e-9)
    assert_ramp_inside(out, vol, atol=1e-3)
    assert out.metadata == vol.metadata and out.orientation == ("S", "P", "L")


def test_resample_labels_nearest():
    labels = LabelVolume.from_spacing(np.arange(8).reshape(2, 2, 2), spacing=(2, 2, 2),
                                      names={"L1": 20})
    out = resample(labels, 1.0)
    assert isinstance(out, LabelVolume) and out.shape == (4, 4, 4)
    assert dict(out.names) == {"L1": 20}
    np.testing.assert_array_equal(np.bincount(out.labels.ravel()), [8] * 8)
    with pytest.raises(ValueError, match="nearest neighbour"):
        resample(labels, 1.0, order=1)


def test_resample_like_between_orientations_is_exact():
    """Same voxels, stored R-A-S vs canonical: nearest and linear give the permutation."""
    ras = np.diag([-0.7, -0.7, 2.5, 1.0])
    vol = CTVolume(np.arange(120.0).reshape(4, 5, 6), ras)
    labels = LabelVolume(np.arange(120).reshape(4, 5, 6), ras)
    canonical = to_canonical(vol)
    np.testing.assert_array_equal(resample_like(labels, canonical).labels,
                                  to_canonical(labels).labels)
    np.testing.assert_allclose(resample_like(vol, canonical).hu, canonical.hu, atol=1e-4)


def test_resample_like_oblique_and_fill():
    t = np.radians(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0],
                               [0, 0, 1]]) @ np.diag([1.0, 1.0, 2.0])
    source = world_ramp(affine, (12, 12, 6))
    target = CTVolume.from_spacing(np.zeros((8, 20, 20)), spacing=(1.5, 0.8, 0.8),
                                   origin=(-4, -2, -1))
    out = resample_like(source, target)
    assert same_grid(out, target)
    assert_ramp_inside(out, source, atol=1e-3)
    assert out.hu.min() == HU_AIR  # corners outside the rotated source are air
    assert resample_like(source, target, fill=-2000.0).hu.min() == -2000.0


def test_resample_like_returns_input_on_same_grid():
    vol = CTVolume.from_spacing(np.ones((2, 3, 4)), spacing=(1, 1, 1))
    assert resample_like(vol, vol) is vol


def test_resample_validation():
    vol = CTVolume.from_spacing(np.ones((2, 3, 4)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="one or three positive numbers"):
        resample(vol, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="one or three positive numbers"):
        resample(vol, (1.0, 2.0))
    with pytest.raises(ValueError, match=r"order must be 0 \(nearest\), 1 \(linear\) or 3"):
        resample(vol, 0.5, order=2)
    with pytest.raises(TypeError, match="like must be a CTVolume or LabelVolume"):
        resample_like(vol, np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="expected a CTVolume or LabelVolume"):
        resample(np.zeros((2, 3, 4)), 1.0)


def test_cubic_resampling_runs():
    vol = CTVolume.from_spacing(np.full((4, 4, 4), 100.0), spacing=(1, 1, 1))
    assert np.allclose(resample(vol, 0.5, order=3).hu[2:-2, 2:-2, 2:-2], 100.0, atol=1e-3)


def test_clip_hu():
    hu = np.array([[[-3024.0, -1000.0, 40.0, 2000.0]]])
    vol = CTVolume.from_spacing(hu, spacing=(1, 1, 1), metadata={"kvp": 120.0})
    out = clip_hu(vol, HU_AIR, 1500.0)
    assert out.hu.tolist() == [[[-1000.0, -1000.0, 40.0, 1500.0]]]
    assert vol.hu[0, 0, 0] == -3024.0 and out.metadata["kvp"] == 120.0
    with pytest.raises(ValueError, match="low_hu must be below high_hu"):
        clip_hu(vol, 100.0, 100.0)
    with pytest.raises(TypeError, match="volume must be a CTVolume"):
        clip_hu(hu, 0.0, 1.0)
