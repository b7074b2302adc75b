"""Tests of bmdqct.labeling: naming, splitting, fragments, partial bodies, rib check.

``make_spine`` builds an analytic spine in mm: elliptic-cylinder bodies
(30 x 40 mm section) with a cortical shell, discs between them, ribs on the
rib-bearing levels (bars from the body's posterolateral corner running 75 mm
laterally and descending) and short transverse processes on the lumbar levels.
"""

import numpy as np
import pytest

from bmdqct.errors import GeometryError, LabelingError
from bmdqct.labeling import (
    QCFlag,
    VertebraLabels,
    check_rib_levels,
    isolate_vertebral_body,
    label_vertebrae,
    level_sequence,
    vertebra_labels_from_map,
)
from bmdqct.levels import level_id, level_index, segmentation_class
from bmdqct.volume import CTVolume, LabelVolume

LEVEL_NAMES = level_sequence(12)      # C1 ... T12, L1 ... L5, S1
BODY_AP, BODY_LR = 15.0, 20.0      # semi-axes, mm


def make_spine(levels=("T11", "T12", "L1", "L2"), *, spacing=(2.0, 1.0, 1.0), height_mm=24.0, disc_mm=6.0,
               margin_mm=(10.0, 10.0), ribs=None, fov_mm=(110.0, 220.0), trabecular_hu=150.0,
               rib_start_mm=-6.0):
    """(CTVolume, 4-class LabelVolume, per-level truth LabelVolume); levels listed top to bottom.

    ``margin_mm`` = (below the lowest body, above the highest). ``ribs`` = levels with ribs
    (default: the thoracic ones); each starts ``rib_start_mm`` above its body's top.
    """
    levels = sorted(levels, key=level_index)
    if ribs is None:
        ribs = [n for n in levels if n.startswith("T")]
    dz, dy, dx = spacing
    total_z = margin_mm[0] + margin_mm[1] + len(levels) * height_mm + (len(levels) - 1) * disc_mm
    shape = (int(round(total_z / dz)), int(round(fov_mm[0] / dy)), int(round(fov_mm[1] / dx)))
    z = (np.arange(shape[0]) + 0.5) * dz
    y = (np.arange(shape[1]) + 0.5) * dy - 45.0          # body centre 45 mm from the front
    x = (np.arange(shape[2]) + 0.5) * dx - fov_mm[1] / 2
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    section = (yy / BODY_AP) ** 2 + (xx / BODY_LR) ** 2 <= 1
    inner = (yy / (BODY_AP - 2)) ** 2 + (xx / (BODY_LR - 2)) ** 2 <= 1
    hu = np.full(shape, 30.0, np.float32)
    classes = np.zeros(shape, np.int16)
    truth = np.zeros(shape, np.int16)
    top = margin_mm[0] + len(levels) * height_mm + (len(levels) - 1) * disc_mm
    for i, name in enumerate(levels):
        z1 = top - i * (height_mm + disc_mm)
        z0 = z1 - height_mm
        in_z = (zz >= z0) & (zz < z1)
        body = in_z & section
        hu[np.broadcast_to(body, shape)] = 600.0
        core = (zz >= z0 + 2) & (zz < z1 - 2) & inner
        hu[np.broadcast_to(core, shape)] = trabecular_hu
        classes[np.broadcast_to(body, shape)] = segmentation_class(name)
        truth[np.broadcast_to(body, shape)] = level_id(name)
        if i > 0:  # disc above this body
            disc = (zz >= z1) & (zz < z1 + disc_mm) & section
            hu[np.broadcast_to(disc, shape)] = 80.0
        for side in (-1, 1):
            if name in ribs:
                # rib: 8 mm thick bar from the posterolateral corner, 75 mm laterally, descending 0.3 mm/mm
                lateral = side * xx - (BODY_LR - 6.0)
                zc = (z1 + rib_start_mm) - 0.3 * np.clip(lateral, 0, None)
                bar = (lateral >= 0) & (lateral <= 75.0) & (np.abs(yy - 10.0) <= 4.0) & (np.abs(zz - zc) <= 4.0)
                hu[np.broadcast_to(bar & ~section, shape)] = 700.0
            elif name.startswith("L"):
                # transverse process: behind the body, 18 mm beyond its lateral wall
                lateral = side * xx
                bar = ((lateral >= 8.0) & (lateral <= BODY_LR + 18.0) & (np.abs(yy - 24.0) <= 4.0)
                       & (np.abs(zz - 0.5 * (z0 + z1)) <= 5.0))
                hu[np.broadcast_to(bar, shape)] = 700.0
    # the neural arch: a bone ring round the spinal canal (fluid, 30 HU) behind the bodies,
    # which lets the column guard find the column
    ring = np.hypot(yy - (BODY_AP + 8.0), xx)
    hu[np.broadcast_to((ring >= 6.0) & (ring <= 10.0) & (yy > BODY_AP), shape)] = 700.0
    ct = CTVolume.from_spacing(hu, spacing)
    cls = LabelVolume.from_spacing(classes, spacing, names={"T1-T6": 1, "T7-T12": 2, "L1-L2": 3})
    names = {n: level_id(n) for n in levels}
    return ct, cls, LabelVolume.from_spacing(truth, spacing, names=names)


def _assert_named_like_truth(vl: VertebraLabels, truth: LabelVolume, names):
    assert set(vl.levels) == set(names)
    for name in names:
        assert np.array_equal(vl.mask(name), truth.mask(name)), name


def _assert_bodies_in_named_vertebrae(vl: VertebraLabels, truth: LabelVolume, names, share=0.95):
    """Same names as the truth, each body at least `share` inside the same-named true body."""
    assert set(vl.levels) == set(names)
    for name in names:
        got = vl.mask(name)
        assert np.sum(got & truth.mask(name)) >= share * got.sum(), name


def test_lumbar_named_top_down_thoracic_bottom_up():
    names = ("T8", "T9", "T10", "T11", "T12", "L1", "L2")
    ct, cls, truth = make_spine(names, spacing=(2.0, 2.0, 2.0))
    vl = label_vertebrae(ct, cls)
    _assert_named_like_truth(vl, truth, names)
    assert list(vl.levels) == list(names)   # cranio-caudal order
    assert vl.labels.names == {n: level_id(n) for n in names}
    assert vl.flags == ()
    info = vl.levels["L1"]
    assert info.height_mm == pytest.approx(24.0)
    assert info.heights_mm == pytest.approx((24.0, 24.0, 24.0))
    assert not info.partial and np.isnan(info.confidence)
    assert info.volume_mm3 == pytest.approx(info.n_voxels * 8.0)
    assert info.label_id == 20 and info.source_class == 3
    assert vl.rib_check.lowest_rib_level == "T12" and vl.rib_check.consistent is True
    assert info.rib_bearing is False and vl.levels["T12"].rib_bearing is True


def test_full_thoracic_stack_and_confidence():
    names = tuple(f"T{n}" for n in range(1, 13)) + ("L1", "L2")
    ct, cls, truth = make_spine(names, spacing=(3.0, 3.0, 3.0), height_mm=21.0)
    confidence = np.where(np.asarray(cls.labels) > 0, 0.9, 1.0).astype(np.float32)
    vl = label_vertebrae(ct, cls, confidence=confidence, check_ribs=False)
    _assert_named_like_truth(vl, truth, names)
    assert vl.levels["T3"].confidence == pytest.approx(0.9)
    assert vl.rib_check is None and vl.levels["T3"].rib_bearing is None


def test_exact_tiny_array():
    cls = np.zeros((30, 8, 8), np.int16)
    cls[1:8, 2:6, 2:6] = 3      # lower L1-L2 component -> L2
    cls[10:17, 2:6, 2:6] = 3    # upper -> L1
    cls[20:27, 2:6, 2:6] = 2    # T12
    spacing = (3.0, 3.0, 3.0)
    ct = CTVolume.from_spacing(np.where(cls > 0, 200.0, 0.0), spacing)
    vl = label_vertebrae(ct, LabelVolume.from_spacing(cls, spacing), min_volume_mm3=100.0, check_ribs=False)
    assert vl.levels["L2"].slice_range == (1, 7)
    assert vl.levels["L1"].slice_range == (10, 16)
    assert vl.levels["T12"].slice_range == (20, 26)
    assert vl.levels["L1"].z_range_mm == (30.0, 48.0)
    assert vl.levels["T12"].n_voxels == 7 * 16
    expected = np.where(cls == 2, 19, 0) + np.where((cls == 3) & (np.arange(30) >= 10)[:, None, None], 20, 0)
    expected += np.where((cls == 3) & (np.arange(30) < 10)[:, None, None], 21, 0)
    assert np.array_equal(vl.labels.labels, expected)


def test_fragment_dropped_and_flagged():
    ct, cls, truth = make_spine(("T12", "L1", "L2"))
    lab = np.array(cls.labels)
    lab[30:33, 90:95, 20:25] = 3       # a 150 mm3 fragment of class L1-L2 far from the spine
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    _assert_named_like_truth(vl, truth, ("T12", "L1", "L2"))
    assert [f.code for f in vl.flags] == ["fragment_dropped"]


@pytest.mark.parametrize("spacing", [(1.0, 1.5, 1.5), (2.5, 1.5, 1.5)])
def test_touching_bodies_are_split_at_the_disc(spacing):
    """The segmentation fills the disc between L1 and L2: one component, two bodies."""
    ct, cls, truth = make_spine(("T12", "L1", "L2"), spacing=spacing)
    lab = np.array(cls.labels)
    l1, l2 = truth.mask("L1"), truth.mask("L2")
    k_lo = np.nonzero(l1.any(axis=(1, 2)))[0][0]
    k_hi = np.nonzero(l2.any(axis=(1, 2)))[0][-1]
    lab[k_hi + 1:k_lo] = np.where(l1[k_lo], 3, lab[k_hi + 1:k_lo])   # disc slices labelled L1-L2
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    assert "split" in [f.code for f in vl.flags]
    area = l1[k_lo].sum()            # voxels per body slice
    for name, mask in (("L1", l1), ("L2", l2)):
        got = vl.mask(name)
        # each body keeps all but at most one slice of its own voxels, plus at most the disc
        assert np.sum(got & mask) >= mask.sum() - area
        extra_mm = np.sum(got & ~mask) / area * spacing[0]
        assert extra_mm <= 6.0 + spacing[0]
    assert vl.levels["L1"].height_mm == pytest.approx(24.0, abs=6.0 + spacing[0])


def test_narrow_bridge_between_bodies_is_split():
    ct, cls, truth = make_spine(("T12", "L1", "L2"), spacing=(1.0, 1.0, 1.0))
    lab = np.array(cls.labels)
    l1, l2 = truth.mask("L1"), truth.mask("L2")
    k_lo = np.nonzero(l1.any(axis=(1, 2)))[0][0]
    k_hi = np.nonzero(l2.any(axis=(1, 2)))[0][-1]
    lab[k_hi + 1:k_lo, 40:50, 105:115] = 3     # a 10 x 10 mm bridge through the disc
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    assert set(vl.levels) == {"T12", "L1", "L2"}
    assert np.sum(vl.mask("L1") & l1) >= 0.97 * l1.sum()
    assert np.sum(vl.mask("L2") & l2) >= 0.97 * l2.sum()


# --------------------------------------------------------------------------- disc planes


def test_body_straddling_a_disc_is_cut_back_to_its_own_vertebra():
    # the network's T1-T6 mask of T6 runs through the disc into the top 8 mm of T7
    levels = ("T4", "T5", "T6", "T7", "T8", "T9")
    ct, cls, truth = make_spine(levels, spacing=(1.0, 1.0, 1.0))
    lab = np.array(cls.labels)
    t6, t7 = truth.mask("T6"), truth.mask("T7")
    k_t6 = np.nonzero(t6.any(axis=(1, 2)))[0][0]          # T6's lowest slice
    k_t7 = np.nonzero(t7.any(axis=(1, 2)))[0][-1]         # T7's top slice
    section = t6[k_t6]
    lab[k_t7 - 7:k_t6] = np.where(section, 1, lab[k_t7 - 7:k_t6])
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    assert "disc_trimmed" in [f.code for f in vl.flags]
    _assert_bodies_in_named_vertebrae(vl, truth, levels, share=0.85)   # T7 takes part of the painted disc
    got6, got7 = vl.mask("T6"), vl.mask("T7")
    assert np.sum(got6 & t6) >= 0.95 * got6.sum()          # T6 lies in T6
    assert np.sum(got7 & t7) >= 0.97 * t7.sum()            # T7 has its top back
    assert np.sum(got7 & ~t7) <= 6 * section.sum()         # and at most the 6 mm disc besides


def test_two_stacked_pieces_of_one_body_are_joined():
    # T12's upper half segmented T7-T12, its lower half L1-L2: one body, not two
    levels = ("T9", "T10", "T11", "T12", "L1", "L2")
    ct, cls, truth = make_spine(levels, spacing=(1.0, 1.0, 1.0))
    lab = np.array(cls.labels)
    t12 = truth.mask("T12")
    ks = np.nonzero(t12.any(axis=(1, 2)))[0]
    lower = ks[: ks.size // 2]
    lab[lower] = np.where(t12[lower], 3, lab[lower])
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    assert "disc_trimmed" in [f.code for f in vl.flags]
    _assert_bodies_in_named_vertebrae(vl, truth, levels)
    assert np.sum(vl.mask("T12") & t12) >= 0.97 * t12.sum()


def test_disc_planes_trusted_only_between_regular_neighbours():
    from bmdqct.labeling._discs import reliable_planes

    planes = reliable_planes([5, 27, 49, 60, 71, 93, 115], 1.0, 22.0)   # 60: the dark middle of a body
    assert planes.tolist() == [27, 93]
    assert reliable_planes([5, 27], 1.0, 22.0).size == 0                  # too few to judge
    # dark body middles between the discs: every gap is half a pitch, nothing is trusted
    assert reliable_planes(np.arange(0, 200, 15), 1.0, 30.0).size == 0


def test_body_cut_by_the_scan_is_partial():
    ct, cls, truth = make_spine(("T12", "L1", "L2"), margin_mm=(-10.0, 10.0))   # L2 cut at the bottom
    vl = label_vertebrae(ct, cls)
    assert vl.levels["L2"].partial and not vl.levels["L1"].partial
    assert "partial:L2" in [str(f) for f in vl.flags]
    _assert_named_like_truth(vl, truth, ("T12", "L1", "L2"))


def test_scan_ending_above_l2_names_l1():
    """L1 class with one body cut at the bottom edge; T12 above anchors the names."""
    ct, cls, truth = make_spine(("T11", "T12", "L1"), margin_mm=(-8.0, 10.0))
    vl = label_vertebrae(ct, cls)
    assert list(vl.levels) == ["T11", "T12", "L1"]
    assert vl.levels["L1"].partial
    assert "naming_uncertain" not in [f.code for f in vl.flags]


def test_scan_ending_above_l1_is_thoracic_only_and_uncertain_without_an_anchor():
    # three rib-bearing bodies and nothing below or above them: no anchor fixes the count
    ct, cls, truth = make_spine(("T10", "T11", "T12"))
    vl = label_vertebrae(ct, cls)
    assert len(vl.levels) == 3
    codes = [str(f) for f in vl.flags]
    assert "class_missing" in codes
    assert any(c.startswith("thoracic_only:") for c in codes)
    assert sorted(c for c in codes if c.startswith("level_uncertain")) == sorted(
        f"level_uncertain:{n}" for n in vl.levels)
    assert all(info.probability < 0.9 for info in vl.levels.values())


def test_lumbar_only_scan_without_ribs_is_uncertain():
    ct, cls, truth = make_spine(("L1", "L2"), margin_mm=(10.0, -30.0), ribs=())   # L1 entirely out of view
    vl = label_vertebrae(ct, cls)
    (name,) = vl.levels
    assert np.array_equal(vl.mask(name), truth.mask("L2"))
    assert f"level_uncertain:{name}" in [str(f) for f in vl.flags]
    assert "class_missing" in [f.code for f in vl.flags]


def test_missing_body_is_bridged_by_the_distance_between_bodies():
    ct, cls, truth = make_spine(("T9", "T10", "T11", "T12", "L1"))
    lab = np.array(cls.labels)
    lab[truth.mask("T11")] = 0                      # the model missed T11
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    # the 60 mm step between T10 and T12 is two levels: the names above the gap are not shifted
    _assert_named_like_truth(vl, truth, ("T9", "T10", "T12", "L1"))
    assert vl.levels["L1"].probability >= 0.9


def test_lumbar_body_in_the_wrong_class_is_named_from_the_ribs():
    ct, cls, truth = make_spine(("T12", "L1", "L2", "L3"))
    lab = np.array(cls.labels)
    lab[truth.mask("L3")] = 3                       # L3 classed L1-L2, as the network does
    lab[truth.mask("T12")] = 3                      # and T12 too: the ribs say otherwise
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    _assert_named_like_truth(vl, truth, ("T12", "L1", "L2", "L3"))
    assert "level_corrected:T12" in [str(f) for f in vl.flags]
    assert vl.levels["L1"].probability >= 0.9


@pytest.mark.parametrize("ribs, lowest", [
    (("T10", "T11", "T12"), "T12"),
    (("T10", "T11", "T12", "L1"), "L1"),      # a 13th rib pair: its body is named T12 (no T1 in view)
    (("T10", "T11"), "T11"),                 # 11 rib pairs: the lowest rib-bearing body is named T12
])
def test_ribs_outweigh_the_network_class_boundary(ribs, lowest):
    names = ("T10", "T11", "T12", "L1", "L2")
    ct, cls, truth = make_spine(names, spacing=(2.0, 1.5, 1.5), ribs=ribs)
    vl = label_vertebrae(ct, cls)
    shift = LEVEL_NAMES.index("T12") - LEVEL_NAMES.index(lowest)          # names follow the ribs
    got = {n: vl.mask(n) for n in vl.levels}
    for name in names:
        new = LEVEL_NAMES[LEVEL_NAMES.index(name) + shift]
        if new in got:
            assert np.array_equal(got[new], truth.mask(name)), (name, new)
    assert vl.rib_check.lowest_rib_level == "T12"
    corrected = [f for f in vl.flags if f.code == "level_corrected"]
    assert bool(corrected) is (shift != 0)
    # transverse processes stay well inside the rib reach, ribs well outside
    reach = vl.rib_check.reach_mm
    for name in names:
        new = LEVEL_NAMES[LEVEL_NAMES.index(name) + shift]
        if new in reach:
            assert (max(reach[new]) > 45.0) if name in ribs else (max(reach[new]) < 25.0), name


@pytest.mark.parametrize("ribs, count", [(tuple(f"T{n}" for n in range(1, 13)) + ("L1",), 13),
                                         (tuple(f"T{n}" for n in range(1, 12)), 11)])
def test_transitional_anatomy_counted_from_the_first_rib_is_flagged(ribs, count):
    names = ("C7",) + tuple(f"T{n}" for n in range(1, 13)) + ("L1", "L2")
    ct, cls, truth = make_spine(names, spacing=(2.5, 2.0, 2.0), ribs=ribs, height_mm=20.0)
    lab = np.array(cls.labels)
    lab[truth.mask("C7")] = 1                       # the network extends T1-T6 to C7, as it does
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    codes = [str(f) for f in vl.flags]
    # the count from the first rib is right down to the last body whose name does not
    # depend on the anatomy; what was seen is flagged (a 13th pair: long ribs on the body
    # below T12, a rib mismatch; 11 seen: as likely 12 with an unseen hypoplastic twelfth
    # pair), and the names below stay uncertain: never used for a category
    assert np.array_equal(vl.mask("T1"), truth.mask("T1"))
    assert np.array_equal(vl.mask("T10"), truth.mask("T10"))
    assert any(c.startswith(("transitional_anatomy", "rib_mismatch")) for c in codes) or count == 11
    for name in ("L1", "L2"):
        assert f"level_uncertain:{name}" in codes, name
    # no certain name below T10 sits on a body of another name
    for name in vl.levels:
        if level_index(name) > level_index("T10") and f"level_uncertain:{name}" not in codes:
            assert np.array_equal(vl.mask(name), truth.mask(name)), name


def test_rib_check_accepts_a_label_volume():
    ct, cls, truth = make_spine(("T12", "L1"), spacing=(2.0, 1.5, 1.5))
    rc = check_rib_levels(ct, truth)
    assert dict(rc.rib_bearing) == {"T12": True, "L1": False}
    assert rc.consistent is True
    assert rc.to_dict()["lowest_rib_level"] == "T12"


def test_labeling_errors():
    ct, cls, _ = make_spine(("L1", "L2"), spacing=(3.0, 3.0, 3.0), ribs=())
    empty = LabelVolume(np.zeros(ct.shape, np.int16), ct.affine, cls.names)
    with pytest.raises(LabelingError, match="no vertebral body in the segmentation"):
        label_vertebrae(ct, empty)
    wrong = LabelVolume(np.asarray(cls.labels) * 10, ct.affine)
    with pytest.raises(LabelingError, match="classes must be 0-3"):
        label_vertebrae(ct, wrong)
    shifted = LabelVolume.from_spacing(cls.labels, (3.0, 3.0, 2.0))
    with pytest.raises(GeometryError, match="must lie on the CT's grid"):
        label_vertebrae(ct, shifted)
    with pytest.raises(GeometryError, match="confidence must have the CT's shape"):
        label_vertebrae(ct, cls, confidence=np.ones((2, 2, 2)))
    specks = np.zeros(ct.shape, np.int16)
    specks[10, 10, 10] = 3
    with pytest.raises(LabelingError, match="after dropping fragments"):
        label_vertebrae(ct, LabelVolume(specks, ct.affine, cls.names))
    with pytest.raises(TypeError, match="volume must be a CTVolume"):
        label_vertebrae(np.zeros(ct.shape), cls)
    with pytest.raises(TypeError, match="classes must be a LabelVolume, got ndarray"):
        label_vertebrae(ct, np.asarray(cls.labels))
    vl = label_vertebrae(ct, cls, check_ribs=False)
    with pytest.raises(KeyError, match=r"level 'T12' is not labelled; labelled levels are \['L1', 'L2'\]"):
        vl.mask("T12")


def test_qcflag_strings():
    assert str(QCFlag("single_level")) == "single_level"
    assert str(QCFlag("partial", "T12", "cut")) == "partial:T12"
    assert QCFlag("x", "L1", "m").to_dict() == {"code": "x", "level": "L1", "message": "m"}


# --------------------------------------------------------------------------- external label maps


def test_external_map_with_posterior_elements():
    ct, cls, truth = make_spine(("T12", "L1", "L2"), spacing=(2.0, 1.0, 1.0))
    ts = {"T12": 32, "L1": 31, "L2": 30}
    lab = np.zeros(ct.shape, np.int16)
    for name, tid in ts.items():
        body = truth.mask(name)
        lab[body] = tid
        # a 6 mm-wide, 40 mm-long spinous process behind the body
        arch = np.zeros_like(body)
        arch[:, 61:101, 107:113] = body[:, 45:46, 107:113].any(axis=1, keepdims=True)
        lab[arch] = tid
    labels = LabelVolume(lab, ct.affine, {**ts, "liver": 5})
    vl = vertebra_labels_from_map(ct, labels)
    assert list(vl.levels) == ["T12", "L1", "L2"]
    for name in ts:
        body = truth.mask(name)
        got = vl.mask(name)
        dice = 2 * np.sum(got & body) / (got.sum() + body.sum())
        assert dice > 0.97, name
    assert vl.levels["L1"].source_class is None
    kept = vertebra_labels_from_map(ct, labels, isolate_bodies=False, check_ribs=False)
    assert kept.levels["L1"].n_voxels > vl.levels["L1"].n_voxels


def test_external_map_without_vertebrae_is_refused():
    ct, _, _ = make_spine(("L1",), spacing=(3.0, 3.0, 3.0), ribs=())
    organs = LabelVolume(np.ones(ct.shape, np.int16) * 5, ct.affine, {"liver": 5, "L1": 31})
    with pytest.raises(LabelingError, match="holds no vertebral level"):
        vertebra_labels_from_map(ct, organs)
    with pytest.raises(ValueError, match="isolate_bodies must be"):
        vertebra_labels_from_map(ct, organs, isolate_bodies="yes")
    specks = np.zeros(ct.shape, np.int16)
    specks[5:7, 5:7, 5:7] = 31                      # 216 mm3 of "L1", not touching the edge
    with pytest.raises(LabelingError, match="no vertebral body left in the label map after dropping fragments"):
        vertebra_labels_from_map(ct, LabelVolume(specks, ct.affine, {"L1": 31}))


def test_isolate_body_keeps_a_body_only_mask():
    ct, _, truth = make_spine(("L1",), spacing=(1.0, 1.0, 1.0), ribs=())
    body = truth.mask("L1")
    iso = isolate_vertebral_body(body, ct.spacing)
    assert np.sum(iso ^ body) <= 0.01 * body.sum()
    assert not isolate_vertebral_body(np.zeros((3, 3, 3), bool), (1, 1, 1)).any()


def test_isolation_keeps_the_full_height_of_a_tilted_body():
    """A tilted body's end slices (rims, ramps) are narrower than the opening's disc; they come back.

    Before, the opening removed 7 end slices at each end of this L1 (Dice 0.88 with the body).
    """
    from bmdqct.synthetic import synthesize_ldct

    ct, truth = synthesize_ldct(3, shape=(160, 160), pixel_mm=1.0, slice_mm=1.0, cranial="T12", caudal="L2",
                                noise_hu=0.0)
    body = truth.levels.mask("L1")
    whole = body.copy()
    ks = np.nonzero(body.any(axis=(1, 2)))[0]
    k_mid = (ks[0] + ks[-1]) // 2
    for k in range(k_mid - 6, k_mid + 7):         # a 13 mm tall arch: pedicles and a spinous process
        rows, cols = np.nonzero(body[k].any(axis=1))[0], np.nonzero(body[k].any(axis=0))[0]
        back, c = rows[-1], (cols[0] + cols[-1]) // 2
        whole[k, back:back + 40, c - 4:c + 4] = True
        for side in (-1, 1):
            whole[k, back - 3:back + 12, c + side * 12 - 3:c + side * 12 + 3] = True
    iso = isolate_vertebral_body(whole, ct.spacing)
    got = np.nonzero(iso.any(axis=(1, 2)))[0]
    assert (got[0], got[-1]) == (ks[0], ks[-1])
    assert np.sum(body & ~iso) <= 0.005 * body.sum()
    # what is added: the stubs of the pedicles and the process (0.45 x 9 mm long)
    assert 2 * np.sum(iso & body) / (iso.sum() + body.sum()) > 0.97


def test_body_only_map_is_left_whole_on_a_coarse_grid():
    """Isolation is decided once per map: body-only masks stay as they are on every level.

    Before, T11 and T12 of this 2 mm scan lost 16-21 % (their end slices) to the isolation
    while L1-L3 were kept: T12 then looked 24 % shorter than its neighbours.
    """
    from bmdqct.synthetic import synthesize_ldct

    ct, truth = synthesize_ldct(3, shape=(128, 128), pixel_mm=2.0, slice_mm=2.0, cranial="T11", caudal="L3")
    vl = vertebra_labels_from_map(ct, truth.levels, check_ribs=False)
    assert {"T11", "T12", "L1", "L2", "L3"} <= set(vl.levels)
    for name in vl.levels:
        assert np.array_equal(vl.mask(name), truth.levels.mask(name)), name


def test_totalsegmentator_map_on_real_data(real_data):
    from bmdqct.io import load_ct, load_labels

    folder = real_data / "ts_abdomen_3mm"
    ct = load_ct(folder / "ct.nii.gz")
    labels = load_labels(folder / "totalseg_labels.nii.gz", like=ct, scheme="totalsegmentator")
    vl = vertebra_labels_from_map(ct, labels)
    assert {"T12", "L1", "L2", "L3"} <= set(vl.levels)
    # T12 reaches the scan's upper edge; L1-L3 are whole
    assert vl.levels["T12"].partial
    assert not any(vl.levels[n].partial for n in ("L1", "L2", "L3"))
    # TotalSegmentator's report: middle heights 24 mm for L1 and L2
    assert vl.levels["L1"].height_mm == pytest.approx(24.0, abs=3.0)
    # the ribs of T12 are seen, none on L1/L2
    assert vl.rib_check.rib_bearing["T12"] is True
    assert vl.rib_check.rib_bearing["L1"] is False and vl.rib_check.rib_bearing["L2"] is False
    assert vl.rib_check.consistent is True
    # bodies match TotalSegmentator's own body masks (Dice 0.965-0.973 for T12-L3 with the end
    # slices restored; 0.935-0.95 before)
    body = np.asarray(load_labels(folder / "totalseg_vertebrae_body.nii.gz", like=ct).labels) == 1
    for name in ("L1", "L2"):
        ref = body & np.asarray(labels.mask(name))
        got = vl.mask(name)
        assert 2 * np.sum(got & ref) / (got.sum() + ref.sum()) > 0.955


# --------------------------------------------------------------------------- synthetic scans
# Truth.classes stands in for the model's output; Truth.levels is the answer.


@pytest.mark.parametrize("n_rib_pairs", [12, 13, 11])
def test_synthetic_scan_named_from_the_ribs(n_rib_pairs):
    # T10-L2 in view: without T1 or the sacrum, 11 or 13 rib pairs cannot be told from a
    # network boundary in the wrong place; the lowest rib-bearing body is named T12 and the
    # disagreement with the network's classes is flagged level_corrected
    from bmdqct.synthetic import synthesize_ldct

    ct, truth = synthesize_ldct(7, cranial="T10", caudal="L2", shape=(200, 200), pixel_mm=1.8, slice_mm=2.5,
                                n_rib_pairs=n_rib_pairs)
    vl = label_vertebrae(ct, truth.classes)
    lowest = tuple(truth.rib_levels)[-1]
    seq = level_sequence(12)
    shift = seq.index("T12") - seq.index(lowest)
    for name in ("T10", "T11", "T12", "L1", "L2"):
        new = seq[seq.index(name) + shift]
        if new not in vl.levels:
            continue
        got, true = vl.mask(new), truth.levels.mask(name)
        assert 2 * np.sum(got & true) / (got.sum() + true.sum()) > 0.98, name
    assert vl.rib_check.lowest_rib_level == "T12"
    corrected = [f for f in vl.flags if f.code == "level_corrected"]
    assert bool(corrected) is (n_rib_pairs != 12)
    uncertain = {f.level for f in vl.flags if f.code == "level_uncertain"}
    if n_rib_pairs == 12:
        assert vl.levels["L1"].probability >= 0.9 and "L1" not in uncertain
    elif n_rib_pairs == 11:
        # ribs against the network's boundary, no second anchor: never a certain wrong L1
        assert "L1" in uncertain
    # 13 pairs: the first body without ribs is named L1 (the counting convention), flagged
    # level_corrected; the generator calls the 13th rib-bearing body L1 (a lumbar rib), which
    # the image alone cannot tell without T1 or the sacrum in view


def test_rib_entering_at_the_disc_above_belongs_to_the_lower_body():
    # mid-thoracic rib heads articulate with the disc above their own body, and the neck
    # rises to the tubercle: each rib here enters 2 mm above its body (in the 6 mm disc),
    # its upper edge inside the body above. Counted by its top it would move one level up
    # (T12 rib-free: 11 pairs, or names one off); counted by its centre it stays its own.
    ct, cls, truth = make_spine(("T10", "T11", "T12", "L1"), spacing=(1.0, 1.0, 1.0), rib_start_mm=9.0)
    rc = check_rib_levels(ct, truth)
    assert dict(rc.rib_bearing) == {"T10": True, "T11": True, "T12": True, "L1": False}
    assert rc.lowest_rib_level == "T12" and rc.consistent is True
    vl = label_vertebrae(ct, cls)
    _assert_named_like_truth(vl, truth, ("T10", "T11", "T12", "L1"))
    assert [vl.levels[n].rib_bearing for n in ("T10", "T11", "T12", "L1")] == [True, True, True, False]


def test_lowest_body_keeps_its_rib_when_its_mask_misses_the_lower_half():
    # the network segments only the upper half of the lowest body, and the rib enters beside the
    # lower half: "no rib" there would name the body L1 and shift every name
    ct, cls, truth = make_spine(("T10", "T11", "T12"), spacing=(1.0, 1.0, 1.0), margin_mm=(20.0, 10.0))
    lab = np.array(truth.labels)
    t12 = lab == truth.names["T12"]
    ks = np.nonzero(t12.any(axis=(1, 2)))[0]
    lab[ks[: ks.size // 2]] = np.where(t12[ks[: ks.size // 2]], 0, lab[ks[: ks.size // 2]])
    rc = check_rib_levels(ct, LabelVolume(lab, truth.affine, truth.names))
    assert rc.rib_bearing["T12"] is True and max(rc.reach_mm["T12"]) > 32.0


def test_rib_entering_between_two_bodies_goes_to_the_nearer_one():
    # T12's rib enters 1 mm below its mask, in the gap to L1 (4 mm away): it is T12's, not L1's
    ct, cls, truth = make_spine(("T11", "T12", "L1"), spacing=(1.0, 1.0, 1.0), rib_start_mm=-18.0)
    rc = check_rib_levels(ct, truth)
    assert dict(rc.rib_bearing) == {"T11": True, "T12": True, "L1": False}
    assert rc.lowest_rib_level == "T12" and rc.consistent is True


def test_no_rib_next_to_the_scan_edge_is_no_evidence():
    # L1 ends 3 mm above the last slice: a rib there could run out of the scan; only a find counts
    ct, cls, truth = make_spine(("T11", "T12", "L1"), spacing=(1.0, 1.0, 1.0), margin_mm=(3.0, 10.0))
    rc = check_rib_levels(ct, truth)
    assert dict(rc.rib_bearing) == {"T11": True, "T12": True}
    ct, cls, truth = make_spine(("T11", "T12", "L1"), spacing=(1.0, 1.0, 1.0), margin_mm=(10.0, 10.0))
    assert dict(check_rib_levels(ct, truth).rib_bearing) == {"T11": True, "T12": True, "L1": False}


def test_short_rib_below_a_body_without_ribs_is_a_transverse_process():
    # 11 rib pairs, and an L2 segmented 3.6 mm narrower on each side (as the model
    # does at times): the head zone beside L2 then holds its transverse-process roots,
    # which look like a short lumbar rib; with L1 rib-free it cannot be one
    from scipy import ndimage

    from bmdqct.synthetic import synthesize_ldct

    ct, truth = synthesize_ldct(7, cranial="T10", caudal="L2", shape=(200, 200), pixel_mm=1.8,
                                slice_mm=2.5, n_rib_pairs=11)
    lab = np.array(truth.levels.labels)
    l2 = lab == truth.levels.names["L2"]
    lab[l2 & ~ndimage.binary_erosion(l2, np.ones((1, 1, 5), bool))] = 0
    rc = check_rib_levels(ct, LabelVolume(lab, truth.levels.affine, truth.levels.names))
    assert 20.0 < max(rc.reach_mm["L2"]) < 32.0 and rc.head_mm3["L2"] > 650.0  # short-rib-like
    assert dict(rc.rib_bearing) == {"T10": True, "T11": True, "T12": False, "L1": False, "L2": False}
    assert rc.lowest_rib_level == "T11" and rc.consistent is False


def test_piece_of_a_body_with_the_wrong_class_joins_the_body():
    ct, cls, truth = make_spine(("T11", "T12", "L1", "L2"))
    lab = np.array(cls.labels)
    t12 = truth.mask("T12")
    top = np.nonzero(t12.any(axis=(1, 2)))[0][-4:]
    lab[top] = np.where(t12[top], 3, lab[top])      # T12's upper 8 mm painted L1-L2
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    _assert_named_like_truth(vl, truth, ("T11", "T12", "L1", "L2"))
    assert "class_merged" in [f.code for f in vl.flags]


def test_class_voxels_scattered_into_the_next_body_do_not_join_the_two():
    # a network that bridges the T12/L1 disc with a thin column of L1-L2 voxels running
    # up into the lower 60 % of T12 (seen on ts_abdomen_3mm): T12 and L1 stay two bodies
    ct, cls, truth = make_spine(("T11", "T12", "L1", "L2"))
    lab = np.array(cls.labels)
    t12_z = np.flatnonzero(truth.mask("T12").any(axis=(1, 2)))
    l1_top = np.flatnonzero(truth.mask("L1").any(axis=(1, 2)))[-1]
    y0, cx = 45, lab.shape[2] // 2                       # the body centre (1 mm pixels)
    column = (slice(l1_top + 1, t12_z[0] + int(0.6 * len(t12_z))), slice(y0 - 2, y0 + 2), slice(cx - 2, cx + 2))
    lab[column] = 3
    vl = label_vertebrae(ct, LabelVolume(lab, cls.affine, cls.names))
    _assert_bodies_in_named_vertebrae(vl, truth, ("T11", "T12", "L1", "L2"))


# --------------------------------------------------------------------------- the column guard


def test_guard_never_names_a_contrast_filled_chamber_off_the_column():
    # a 'heart': blood at 300 HU in a 40 HU wall, 60 mm in front of the spine, which the
    # network calls T7-T12 (as the shipped model does on real chest CT)
    names = ("T10", "T11", "T12", "L1")
    ct, cls, truth = make_spine(names, spacing=(2.0, 1.5, 1.5))
    hu = np.array(ct.hu)
    lab = np.array(cls.labels)
    k, j, i = np.mgrid[:hu.shape[0], :hu.shape[1], :hu.shape[2]]
    centre = (hu.shape[0] // 2, 3, hu.shape[2] // 2)        # in front of the bodies (rows run A -> P)
    r = np.sqrt(((k - centre[0]) * 2.0 / 30) ** 2 + ((j - centre[1]) * 1.5 / 12) ** 2
                + ((i - centre[2] - 40) * 1.5 / 25) ** 2)
    hu[r <= 1.0] = 40.0
    hu[r <= 0.8] = 300.0
    lab[r <= 1.0] = 2
    vl = label_vertebrae(CTVolume(hu, ct.affine), LabelVolume(lab, cls.affine, cls.names))
    _assert_named_like_truth(vl, truth, names)
    assert "non_vertebral" in [f.code for f in vl.flags]
    assert not np.any(np.asarray(vl.labels.labels)[r <= 1.0])


def test_external_map_names_checked_by_the_decoder_without_renaming():
    names = ("T11", "T12", "L1", "L2")
    ct, cls, truth = make_spine(names, spacing=(2.0, 1.5, 1.5))
    shifted = {"T12": level_id("T11"), "L1": level_id("T12"), "L2": level_id("L1"), "L3": level_id("L2")}
    wrong = LabelVolume(truth.labels, truth.affine, shifted)          # every name one level low
    vl = vertebra_labels_from_map(ct, wrong, isolate_bodies=False)
    assert set(vl.levels) == set(shifted)                             # the map's names are kept
    flagged = {f.level for f in vl.flags if f.code == "level_disagreement"}
    assert {"L2", "L3"} <= flagged          # the map's L2, L3 are the decoder's certain L1, L2
    right = vertebra_labels_from_map(ct, truth, isolate_bodies=False)
    assert "level_disagreement" not in [f.code for f in right.flags]


def test_rib_reaches_on_threads_equal_one_by_one():
    """The threaded reach of every body is the reach computed body by body."""
    from bmdqct.labeling._geometry import _crop_of, _level_boxes
    from bmdqct.labeling._ribs import _BONE_HU, _rib_reach, _rib_reaches

    lab = np.zeros((45, 70, 160), np.int16)
    lab[2:13, 10:40, 60:100] = 20
    lab[17:28, 10:40, 60:100] = 19
    lab[32:43, 10:40, 60:100] = 18
    hu = np.where(lab > 0, 250.0, 0.0)
    hu[23:26, 30:35, 5:60] = hu[23:26, 30:35, 100:155] = 700.0     # T12's ribs
    hu[38:41, 30:35, 20:60] = 700.0                                  # T11's right rib, shorter
    ct = CTVolume.from_spacing(hu, (2, 1, 1))
    boxes = _level_boxes(lab)
    crops = [_crop_of(lab, lid, boxes[lid]) for lid in (18, 19, 20)]
    extents = [(int(np.nonzero((lab == lid).any(axis=(1, 2)))[0][[0, -1]][0]),
                int(np.nonzero((lab == lid).any(axis=(1, 2)))[0][-1]), float(c.centroid()[0]))
               for lid, c in zip((18, 19, 20), crops)]
    one_by_one = [_rib_reach(ct, c, lab, ct.spacing, _BONE_HU, [e for j, e in enumerate(extents) if j != i])
                  for i, c in enumerate(crops)]
    assert _rib_reaches(ct, crops, lab, ct.spacing, _BONE_HU, extents) == one_by_one
    assert one_by_one[1][:2] == (56.0, 56.0) and one_by_one[0][0] > 30.0 and one_by_one[2][:2] == (0.0, 0.0)


def test_rib_running_out_of_the_scan_counts_as_a_rib_at_the_edge():
    """A rib of the lowest body that descends out of the scan is reported cut, and counts.

    Its head sits beside the body and its shaft runs down into the scan's first
    slice 26 mm beyond the wall: short by its reach (20-32 mm), but only because
    the scan ends (ricord_chest: a fine-tuned model's lowest body lost its ribs
    to this and was named L1).
    """
    from bmdqct.labeling._chain import _side_at_edge, _side_seen
    from bmdqct.labeling._geometry import _crop_of, _level_boxes
    from bmdqct.labeling._ribs import _BONE_HU, _rib_reach

    lab = np.zeros((40, 70, 160), np.int16)
    lab[0:11, 10:40, 60:100] = 19                                  # cut by the scan's first slice
    lab[15:26, 10:40, 60:100] = 18
    hu = np.where(lab > 0, 250.0, 0.0)
    hu[1:10, 30:35, 100:113] = 700.0                               # rib head beside the body (left)
    for x in range(113, 126):                                      # the shaft descends to slice 0
        z = max(0, 8 - (x - 113))
        hu[z:z + 2, 30:35, x] = 700.0
    hu[1:10, 30:35, 47:60] = 700.0                                 # right: the same head, its shaft
    hu[6:8, 30:35, 34:47] = 700.0                                  # level, ending inside the scan
    ct = CTVolume.from_spacing(hu, (2, 1, 1))
    boxes = _level_boxes(lab)
    crops = [_crop_of(lab, lid, boxes[lid]) for lid in (19, 18)]
    ext = [(0, 10, 5.0), (15, 25, 20.0)]
    right, left, head_mm3, cut = _rib_reach(ct, crops[0], lab, ct.spacing, _BONE_HU, [ext[1]])
    assert 20.0 < left < 32.0 and 20.0 < right < 32.0 and head_mm3 > 650.0
    assert cut == (False, True)
    sides = [_side_seen(r, head_mm3) for r in (right, left)]
    assert sides == ["short", "short"]
    assert [_side_at_edge(s, c) for s, c in zip(sides, cut)] == [None, "long"]
    assert _side_at_edge("none", True) is None and _side_at_edge("long", False) == "long"
    assert _rib_reach(ct, crops[1], lab, ct.spacing, _BONE_HU, [ext[0]])[3] == (False, False)
