"""Tests of bmdqct.voi: the elliptical-cylinder VOI of Pan et al. (2020).

Analytic vertebra phantoms: an elliptic-cylinder body (semi-axes ``ap`` x
``lr`` mm, height ``h`` mm) whose trabecular interior has a known HU inside a
2 mm cortical shell, on grids with slices of 0.6-3 mm and anisotropic pixels.
"""

import math

import numpy as np
import pytest

from bmdqct.errors import GeometryError, MeasurementError
from bmdqct.voi import DEFAULT_VOI_PROTOCOL, VOI, VOIProtocol, vertebral_body_voi
from bmdqct.volume import CTVolume, LabelVolume

TRABECULAR_HU = 137.0
CORTEX_HU = 700.0


def vertebra_phantom(spacing, *, ap=15.0, lr=20.0, height=26.0, shell=2.0, fov=(60.0, 70.0), z_margin=6.0):
    """(CTVolume, LabelVolume L1, trabecular mask) of one elliptic-cylinder body, in mm."""
    dz, dy, dx = spacing
    n = (int(round((height + 2 * z_margin) / dz)), int(round(fov[0] / dy)), int(round(fov[1] / dx)))
    z = (np.arange(n[0]) + 0.5) * dz - z_margin          # body spans z in [0, height)
    y = (np.arange(n[1]) + 0.5) * dy - fov[0] / 2
    x = (np.arange(n[2]) + 0.5) * dx - fov[1] / 2
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    in_z = (zz >= 0) & (zz < height)
    body = in_z & ((yy / ap) ** 2 + (xx / lr) ** 2 <= 1)
    inner = (zz >= shell) & (zz < height - shell) & ((yy / (ap - shell)) ** 2 + (xx / (lr - shell)) ** 2 <= 1)
    hu = np.full(n, 30.0)
    hu[body] = CORTEX_HU
    hu[inner] = TRABECULAR_HU
    ct = CTVolume.from_spacing(hu, spacing)
    labels = LabelVolume.from_spacing(body.astype(np.int16) * 20, spacing, names={"L1": 20})
    return ct, labels, inner


SPACINGS = [
    (0.6, 0.7, 0.7),
    (1.0, 1.0, 1.0),
    (1.25, 0.78, 0.78),
    (2.0, 0.5, 0.9),     # anisotropic in-plane pixels
    (2.5, 0.8, 0.6),
    (3.0, 1.5, 1.5),
]


@pytest.mark.parametrize("spacing", SPACINGS)
def test_voi_mean_and_volume_on_analytic_phantom(spacing):
    ct, labels, inner = vertebra_phantom(spacing)
    voi = vertebral_body_voi(ct, labels, "L1")
    values = voi.values(ct)
    # the VOI lies in the trabecular interior: its mean is the truth, exactly
    assert np.all(voi.mask <= inner)
    assert float(values.mean()) == pytest.approx(TRABECULAR_HU, abs=1e-4)
    dz, dy, dx = spacing
    # covered height: the odd number of slices within +-4.5 mm of the middle section
    n_slices = 2 * math.floor(4.5 / dz + 1e-6) + 1
    assert voi.covered_height_mm == pytest.approx(n_slices * dz)
    assert abs(voi.covered_height_mm - 9.0) <= dz
    assert voi.slice_range[1] - voi.slice_range[0] + 1 == n_slices
    # semi-axes from the digitised section; a = 0.3 A / (pi b) exactly
    a, b = voi.semi_axis_lr_mm, voi.semi_axis_ap_mm
    assert b == pytest.approx(0.2 * voi.longest_row_mm)
    assert math.pi * a * b == pytest.approx(0.3 * voi.section_area_mm2)
    # ... which approach the analytic ones: A = pi 15 20, longest row 2 * 20 mm.
    # The digitised area differs by less than the perimeter times half a pixel
    # diagonal; the longest row by at most one pixel width.
    half_diag = 0.5 * math.hypot(dy, dx)
    perimeter = math.pi * (3 * (15 + 20) - math.sqrt((3 * 15 + 20) * (15 + 3 * 20)))  # Ramanujan
    assert voi.section_area_mm2 == pytest.approx(math.pi * 15 * 20, abs=perimeter * half_diag)
    assert voi.longest_row_mm == pytest.approx(40.0, abs=dx)
    # VOI volume vs pi a b h on the covered height: the digitised ellipse area
    # differs from pi a b by less than its perimeter times half a pixel diagonal
    p_voi = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    tol = p_voi * half_diag * voi.covered_height_mm
    assert voi.volume_mm3 == pytest.approx(math.pi * a * b * voi.covered_height_mm, abs=tol)
    assert voi.n_voxels == int(voi.mask.sum()) == values.size
    assert voi.volume_mm3 == pytest.approx(voi.n_voxels * dz * dy * dx)
    # ... and the nominal 9 mm cylinder within one slice thickness more
    assert voi.volume_mm3 == pytest.approx(math.pi * a * b * 9.0, abs=tol + math.pi * a * b * dz)
    assert voi.scale == 1.0 and voi.flags == ()


def test_voi_centre_and_geometry_exact_on_1mm_grid():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0), height=25.0, z_margin=5.0)
    voi = vertebral_body_voi(ct, labels, "L1")
    # body occupies slices 5..29; middle slice 17 (the centre of the range)
    assert voi.middle_slice == 17
    assert voi.slice_range == (13, 21)
    # the section is symmetric about the grid centre: centroid at (29.5, 34.5) voxels
    assert voi.center_vox == pytest.approx((17.0, 29.5, 34.5))
    assert voi.center_mm == pytest.approx(tuple(ct.index_to_world(voi.center_vox)))
    assert voi.longest_row_mm == 40.0
    assert voi.semi_axis_ap_mm == pytest.approx(8.0)


def test_middle_section_ignores_endplate_slivers():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0), height=24.0, z_margin=8.0)
    lab = np.array(labels.labels)
    lab[4, 29:31, 34:36] = 20         # a 4-voxel sliver 4 mm below the body
    voi = vertebral_body_voi(ct, LabelVolume(lab, labels.affine, labels.names), "L1")
    # body slices 8..31 -> middle 19.5 -> the slice nearer the centroid
    assert voi.middle_slice in (19, 20)


def test_voi_shrinks_inside_a_concave_body_and_flags_it():
    spacing = (1.0, 0.5, 0.5)
    ct, labels, _ = vertebra_phantom(spacing)
    lab = np.array(labels.labels)
    # a posterior notch (the basivertebral canal, exaggerated) reaching 6 mm behind the centre
    j0 = int(round((30.0 + 6.0) / 0.5))
    k0, k1 = int(round((35.0 - 3.0) / 0.5)), int(round((35.0 + 3.0) / 0.5))
    lab[:, j0:, k0:k1] = 0
    notched = LabelVolume(lab, labels.affine, labels.names)
    voi = vertebral_body_voi(ct, notched, "L1")
    assert voi.scale < 1.0
    assert [str(f) for f in voi.flags] == ["voi_shrunk:L1"]
    assert not np.any(voi.mask & (lab == 0))
    assert voi.semi_axis_ap_mm == pytest.approx(0.2 * voi.longest_row_mm * voi.scale)
    # one step less shrinking would leave the body
    k0, k1 = voi.slice_range
    larger = _ellipse_on_grid(ct.shape, spacing, voi.center_vox[1:], voi.semi_axis_ap_mm / 0.95,
                              voi.semi_axis_lr_mm / 0.95)
    assert np.any(larger & (lab[k0:k1 + 1] == 0))


def _ellipse_on_grid(shape, spacing, center_vox, semi_ap_mm, semi_lr_mm):
    """The ellipse (voxel centres inside) on one full axial plane of the grid."""
    jj, kk = np.mgrid[:shape[1], :shape[2]]
    return ((jj - center_vox[0]) * spacing[1] / semi_ap_mm) ** 2 + \
        ((kk - center_vox[1]) * spacing[2] / semi_lr_mm) ** 2 <= 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.8, 0.6)])
def test_voi_mask_is_the_ellipse_on_the_full_grid(spacing):
    """The VOI, placed on the body's bounding box, lands where its centre and axes say on the full grid."""
    ct, labels, _ = vertebra_phantom(spacing, fov=(80.0, 90.0))
    shift = (int(round(7 / spacing[1])), int(round(-9 / spacing[2])))     # off the grid's centre
    lab = np.roll(np.asarray(labels.labels), shift, axis=(1, 2))
    voi = vertebral_body_voi(ct, LabelVolume(lab, labels.affine, labels.names), "L1")
    k0, k1 = voi.slice_range
    plane = _ellipse_on_grid(ct.shape, spacing, voi.center_vox[1:], voi.semi_axis_ap_mm, voi.semi_axis_lr_mm)
    expected = np.zeros(ct.shape, bool)
    expected[k0:k1 + 1] = plane
    assert np.array_equal(voi.mask, expected)
    body = lab == 20
    assert voi.center_vox[1:] == pytest.approx(np.argwhere(body[voi.middle_slice]).mean(axis=0), abs=1e-3)


def test_margin_keeps_the_ellipse_away_from_the_edge():
    from scipy import ndimage as ndi

    ct, labels, _ = vertebra_phantom((1.0, 0.5, 0.5), ap=10.0, lr=12.0)
    loose = vertebral_body_voi(ct, labels, "L1")
    tight = vertebral_body_voi(ct, labels, "L1", protocol=VOIProtocol(margin_mm=5.0))
    assert loose.scale == 1.0
    assert tight.scale < 1.0
    assert [str(f) for f in tight.flags] == ["voi_shrunk:L1"]
    # a D-shaped section (flat back, as real bodies have) whose centroid lies near the back:
    # every VOI voxel centre lies more than the margin inside the body, measured on the full plane
    lab = np.array(labels.labels)
    lab[:, 60:70, 46:94] = np.where(lab[:, 50:51, 46:94] > 0, 20, 0)   # posterior half made rectangular
    lab[:, 70:] = 0
    body = lab == 20
    for margin in (2.0, 3.0):
        voi = vertebral_body_voi(ct, LabelVolume(lab, labels.affine, labels.names), "L1",
                                 protocol=VOIProtocol(margin_mm=margin))
        for k in range(voi.slice_range[0], voi.slice_range[1] + 1):
            depth_mm = ndi.distance_transform_edt(body[k], sampling=(0.5, 0.5))
            assert np.all(depth_mm[voi.mask[k]] > margin)


def test_protocol_parameters_change_the_voi():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0))
    voi = vertebral_body_voi(ct, labels, "L1", protocol=VOIProtocol(height_mm=5.0, area_fraction=0.15))
    assert voi.covered_height_mm == 5.0
    assert math.pi * voi.semi_axis_lr_mm * voi.semi_axis_ap_mm == pytest.approx(0.15 * voi.section_area_mm2)
    assert DEFAULT_VOI_PROTOCOL == VOIProtocol(0.30, 0.20, 9.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(area_fraction=0.0), "area_fraction"),
    (dict(ap_fraction_of_row=1.5), "ap_fraction_of_row"),
    (dict(height_mm=-1.0), "height_mm"),
    (dict(shrink_step=1.0), "shrink_step"),
    (dict(margin_mm=-0.5), "margin_mm"),
    (dict(min_scale=0.0), "min_scale"),
])
def test_protocol_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VOIProtocol(**kwargs)


def test_voi_mask_box_and_repr():
    ct, labels, _ = vertebra_phantom((2.0, 1.0, 1.0))
    voi = vertebral_body_voi(ct, labels, "L1")
    full = voi.mask
    assert full.shape == ct.shape and full.dtype == bool
    assert np.array_equal(full[voi.slices], voi.box_mask)
    assert not voi.box_mask.flags.writeable
    assert "VOI(level='L1'" in repr(voi)
    d = voi.to_dict()
    assert d["n_voxels"] == voi.n_voxels and d["flags"] == []


def test_voi_to_dict_states_the_frame_and_the_voxel_indices():
    """center_index is center_mm mapped back through the grid's affine, here with an offset origin."""
    from dataclasses import replace

    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0), height=25.0, z_margin=5.0)
    affine = np.array(ct.affine)
    affine[:3, 3] = (-35.0, 120.0, -400.0)
    ct, labels = replace(ct, affine=affine), replace(labels, affine=affine)
    d = vertebral_body_voi(ct, labels, "L1").to_dict()
    assert d["frame"] == "LPS"
    # the grid is canonical (axis 0 -> +z, 1 -> +y, 2 -> +x), 1 mm: exact indices of the centre
    assert d["center_index"] == pytest.approx([17.0, 29.5, 34.5])
    assert d["center_mm"] == pytest.approx([-35.0 + 34.5, 120.0 + 29.5, -400.0 + 17.0])
    assert all(type(v) is float for v in d["center_index"])
    assert list(d)[:3] == ["level", "frame", "center_mm"]


def test_short_body_cannot_hold_the_voi():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0), height=6.0, shell=1.0)
    with pytest.raises(MeasurementError, match="does not cover the 9 mm VOI"):
        vertebral_body_voi(ct, labels, "L1")


def test_voi_leaving_the_scan_is_refused():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0), z_margin=0.0, height=8.0)
    with pytest.raises(MeasurementError, match="leaves the scan"):
        vertebral_body_voi(ct, labels, "L1")


def test_split_section_cannot_hold_the_voi():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0))
    lab = np.array(labels.labels)
    lab[:, :, 25:45] = 0              # two halves; the centroid falls in the gap
    with pytest.raises(MeasurementError, match="leaves the body even shrunk"):
        vertebral_body_voi(ct, LabelVolume(lab, labels.affine, labels.names), "L1")


def test_a_body_too_thin_for_any_voxel_centre_is_refused():
    # a 2 x 2 mm column: semi-axes 0.4 x 0.95 mm about a centroid between four voxel centres
    lab = np.zeros((20, 10, 10), np.int16)
    lab[2:18, 4:6, 4:6] = 20
    ct = CTVolume.from_spacing(np.where(lab > 0, 150.0, 0.0), (1, 1, 1))
    with pytest.raises(MeasurementError, match="holds no voxel centre"):
        vertebral_body_voi(ct, LabelVolume.from_spacing(lab, (1, 1, 1), names={"L1": 20}), "L1")


def test_voi_errors_on_grid_and_level():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0))
    other = LabelVolume.from_spacing(labels.labels, (1.0, 1.0, 2.0), names=labels.names)
    with pytest.raises(GeometryError, match="must lie on the CT's grid"):
        vertebral_body_voi(ct, other, "L1")
    with pytest.raises(KeyError, match="no label named 'L2'"):
        vertebral_body_voi(ct, labels, "L2")
    empty = LabelVolume(np.zeros(ct.shape, np.int16), ct.affine, {"L1": 20})
    with pytest.raises(MeasurementError, match="empty"):
        vertebral_body_voi(ct, empty, "L1")
    with pytest.raises(TypeError, match="labels must be"):
        vertebral_body_voi(ct, np.zeros(ct.shape), "L1")
    from bmdqct.labeling import vertebra_labels_from_map

    vl = vertebra_labels_from_map(ct, labels, check_ribs=False)
    with pytest.raises(KeyError, match=r"level 'L2' is not labelled; labelled levels are \['L1'\]"):
        vertebral_body_voi(ct, vl, "L2")
    with pytest.raises(TypeError, match="volume must be a CTVolume"):
        vertebral_body_voi(np.zeros(ct.shape), labels, "L1")
    voi = vertebral_body_voi(ct, labels, "L1")
    small = CTVolume.from_spacing(np.zeros((3, 3, 3)), (1, 1, 1))
    with pytest.raises(GeometryError, match="placed on a grid of shape"):
        voi.values(small)
    assert isinstance(voi, VOI)


def test_voi_keeps_a_readonly_copy_of_the_grid_affine():
    ct, labels, _ = vertebra_phantom((2.0, 1.0, 1.0))
    voi = vertebral_body_voi(ct, labels, "L1")
    assert voi.shape == ct.shape
    assert np.array_equal(voi.affine, ct.affine) and not voi.affine.flags.writeable
    mine = np.array(ct.affine)
    rebuilt = VOI(**{**{f: getattr(voi, f) for f in voi.__dataclass_fields__}, "affine": mine})
    assert rebuilt.affine is not mine and mine.flags.writeable      # the caller's array is left alone
    with pytest.raises(GeometryError, match="finite 4x4"):
        VOI(**{**{f: getattr(voi, f) for f in voi.__dataclass_fields__}, "affine": np.eye(3)})


@pytest.mark.parametrize("change, match", [
    (dict(spacing=(2.0, 1.0, 1.5)), r"spacing \(2, 1, 1\) mm.*got a volume of shape \(19, 60, 70\), "
                                    r"spacing \(2, 1, 1.5\) mm"),
    (dict(origin=(0.0, 0.0, 10.0)), r"origin \(0, 0, 0\) mm.*origin \(0, 0, 10\) mm"),
    (dict(origin=(0.0, 0.002, 0.0)), r"origin \(0, 0, 0\) mm.*origin \(0, 0.002, 0\) mm"),  # > 1e-3 mm
])
def test_values_refuse_a_volume_of_the_same_shape_on_another_grid(change, match):
    """Same array shape, other spacing or origin: the voxels are other places in the patient."""
    ct, labels, _ = vertebra_phantom((2.0, 1.0, 1.0))
    voi = vertebral_body_voi(ct, labels, "L1")
    moved = CTVolume.from_spacing(ct.hu, **{"spacing": (2.0, 1.0, 1.0), **change})
    assert moved.shape == ct.shape
    with pytest.raises(GeometryError, match="the VOI of L1 was placed on a grid of shape") as err:
        voi.values(moved)
    assert err.match(match) and err.match("resample_like")


def test_values_refuse_a_flipped_volume_and_accept_the_same_grid_within_tolerance():
    ct, labels, _ = vertebra_phantom((1.0, 1.0, 1.0))
    voi = vertebral_body_voi(ct, labels, "L1")
    flip = np.diag([-1.0, 1.0, 1.0, 1.0]) @ ct.affine           # L-R mirrored, same shape and spacing
    with pytest.raises(GeometryError, match="orientation SPL; got .* orientation SPR"):
        voi.values(CTVolume(ct.hu, flip))
    nudged = np.array(ct.affine)
    nudged[:3, 3] += 5e-4                                         # within same_grid's 1e-3 mm
    assert float(voi.values(CTVolume(ct.hu, nudged)).mean()) == pytest.approx(TRABECULAR_HU, abs=1e-4)
    with pytest.raises(TypeError, match="expects a CTVolume"):
        voi.values(np.asarray(ct.hu))


# --------------------------------------------------------------------------- real data


def _ts_case(real_data):
    from bmdqct.io import load_ct, load_labels

    folder = real_data / "ts_abdomen_3mm"
    ct = load_ct(folder / "ct.nii.gz")
    levels = load_labels(folder / "totalseg_labels.nii.gz", like=ct, scheme="totalsegmentator")
    body = load_labels(folder / "totalseg_vertebrae_body.nii.gz", like=ct)
    return folder, ct, levels, body


def test_totalsegmentator_bodies_land_near_the_design_figures(real_data):
    """Body mask = totalseg_vertebrae_body == 1 within each level (design-notes figures)."""
    import json

    folder, ct, levels, body = _ts_case(real_data)
    bodies = np.where(np.asarray(body.labels) == 1, np.asarray(levels.labels), 0)
    names = {n: levels.names[n] for n in ("T12", "L1", "L2")}
    voi_labels = LabelVolume(bodies, ct.affine, names)
    report = json.loads((folder / "totalseg_spine_report.json").read_text())["results"]
    means = {}
    for name in ("T12", "L1", "L2"):
        voi = vertebral_body_voi(ct, voi_labels, name)
        values = voi.values(ct)
        means[name] = float(values.mean())
        # design notes: sections ~1,500 mm2, longest rows 42-45 mm, semi-axes ~8.5 x 17 mm, 9 mm = 3 slices
        assert 1350 <= voi.section_area_mm2 <= 1650
        assert 42.0 <= voi.longest_row_mm <= 45.0
        assert 8.0 <= voi.semi_axis_ap_mm <= 9.1
        assert 15.5 <= voi.semi_axis_lr_mm <= 18.0
        assert voi.covered_height_mm == 9.0 and voi.slice_range[1] - voi.slice_range[0] == 2
        assert voi.scale == 1.0
        # design notes: VOI means of roughly 105-110 HU
        assert 100.0 <= means[name] <= 116.0
    # the bar: within 20 HU of TotalSegmentator's eroded-body medians
    for name in ("L1", "L2"):
        assert abs(means[name] - report[f"vertebrae_{name}_intensity_median"]) <= 20.0
