"""Tests of bmdqct.volume: the geometry convention and to_canonical."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bmdqct.errors import GeometryError
from bmdqct.io import load_ct, write_nifti
from bmdqct.volume import CTVolume, LabelVolume, axis_codes, same_grid, to_canonical

SPACING = (0.7, 1.1, 2.5)
ORIENTATIONS = [(perm, signs) for perm in itertools.permutations(range(3))
                for signs in itertools.product((1.0, -1.0), repeat=3)]


def oriented_volume(perm, signs, shape=(3, 4, 5)):
    """Volume whose array axis i runs along LPS axis perm[i] with sign signs[i]."""
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for i, (axis, sign) in enumerate(zip(perm, signs)):
        affine[axis, i] = sign * SPACING[i]
    affine[:3, 3] = (12.5, -40.0, 101.25)
    return CTVolume(np.arange(np.prod(shape), dtype=float).reshape(shape), affine)


def world_by_value(volume):
    """World position of every voxel, ordered by its (unique) value."""
    index = np.indices(volume.shape).reshape(3, -1).T
    order = np.argsort(volume.hu.ravel())
    return volume.index_to_world(index)[order]


def test_all_48_orientations_reach_spl_keeping_world_positions():
    assert len(ORIENTATIONS) == 48
    for perm, signs in ORIENTATIONS:
        vol = oriented_volume(perm, signs)
        can = to_canonical(vol)
        assert can.orientation == ("S", "P", "L"), (perm, signs)
        np.testing.assert_allclose(world_by_value(can), world_by_value(vol), atol=1e-9)
        # spacing follows the axes: the z axis (2.5 mm or whichever) lands on axis 0
        assert can.spacing == pytest.approx(tuple(SPACING[list(perm).index(a)]
                                                  for a in (2, 1, 0)))
        assert not can.hu.flags.writeable and can.hu.flags.c_contiguous


@pytest.mark.parametrize("perm, signs", ORIENTATIONS[::7])
def test_orientations_through_nifti_files(tmp_path, perm, signs):
    vol = oriented_volume(perm, signs)
    back = load_ct(write_nifti(vol, tmp_path / "v.nii.gz"))
    assert back.orientation == ("S", "P", "L")
    assert back.metadata["input_orientation"] == vol.orientation
    np.testing.assert_array_equal(back.hu, to_canonical(vol).hu)
    # NIfTI sform is float32: coordinates of ~100 mm round to < 1e-4 mm
    np.testing.assert_allclose(world_by_value(back), world_by_value(vol), atol=1e-4)


def test_style_guide_example_ras_to_spl():
    vol = CTVolume(np.zeros((4, 5, 6)), np.diag([-0.7, -0.7, 2.5, 1.0]))
    assert vol.orientation == ("R", "A", "S")
    can = to_canonical(vol)
    assert (can.orientation, can.shape, can.spacing) == (("S", "P", "L"), (6, 5, 4),
                                                         pytest.approx((2.5, 0.7, 0.7)))


def test_canonical_volume_is_returned_unchanged():
    vol = CTVolume.from_spacing(np.zeros((2, 3, 4)), spacing=(1, 2, 3))
    assert to_canonical(vol) is vol
    assert vol.orientation == ("S", "P", "L")


def test_oblique_affine_keeps_obliquity_and_positions():
    t = np.radians(10)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.8, 0.9, 2.0])
    vol = CTVolume(np.arange(60.0).reshape(3, 4, 5), affine)
    can = to_canonical(vol)
    assert can.orientation == ("S", "P", "L")
    np.testing.assert_allclose(world_by_value(can), world_by_value(vol), atol=1e-9)


def test_labels_reoriented_like_ct():
    vol = oriented_volume((0, 2, 1), (-1.0, 1.0, -1.0))
    labels = LabelVolume(np.arange(60).reshape(3, 4, 5) % 7, vol.affine, names={"L1": 20})
    can_labels, can_ct = to_canonical(labels), to_canonical(vol)
    assert isinstance(can_labels, LabelVolume) and dict(can_labels.names) == {"L1": 20}
    assert same_grid(can_labels, can_ct)
    np.testing.assert_array_equal(can_labels.labels, can_ct.hu.astype(int) % 7)


def test_input_is_not_mutated():
    hu = np.arange(24.0).reshape(2, 3, 4)
    vol = CTVolume(hu, np.diag([-1.0, -1.0, 1.0, 1.0]))
    to_canonical(vol)
    assert hu.flags.writeable and hu[0, 0, 1] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        vol.hu[0, 0, 0] = 5.0


def test_axis_codes_and_spacing_from_affine():
    assert axis_codes(np.diag([1.0, 1.0, 1.0, 1.0])) == ("L", "P", "S")
    assert axis_codes(np.diag([-1.0, -1.0, 1.0, 1.0])) == ("R", "A", "S")
    vol = CTVolume.from_spacing(np.zeros((2, 2, 2)), spacing=(3.0, 0.5, 0.25))
    assert vol.spacing == (3.0, 0.5, 0.25) and vol.voxel_volume_mm3 == pytest.approx(0.375)
    np.testing.assert_allclose(vol.world_to_index(vol.index_to_world([1, 1, 1])), [1, 1, 1])


@pytest.mark.parametrize("hu, affine, match", [
    (np.zeros((2, 2)), np.eye(4), "3-D array"),
    (np.zeros((2, 2, 2)), np.eye(3), r"shape \(4, 4\)"),
    (np.zeros((2, 2, 2)), np.diag([1.0, 1.0, 0.0, 1.0]), "invertible"),
    (np.zeros((2, 2, 2)), np.full((4, 4), np.nan), "finite"),
])
def test_ct_volume_validation(hu, affine, match):
    with pytest.raises(GeometryError, match=match):
        CTVolume(hu, affine)


def test_label_volume_validation():
    assert LabelVolume(np.ones((1, 1, 2)), np.eye(4)).labels.dtype == np.int16
    with pytest.raises(GeometryError, match="integers"):
        LabelVolume(np.full((1, 1, 2), 0.5), np.eye(4))
    with pytest.raises(GeometryError, match="0..32767"):
        LabelVolume(np.full((1, 1, 2), -1), np.eye(4))
    with pytest.raises(KeyError, match="no label named 'L9'"):
        LabelVolume(np.ones((1, 1, 2)), np.eye(4), names={"L1": 1}).mask("L9")
