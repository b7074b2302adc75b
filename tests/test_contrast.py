"""Tests of bmdqct.contrast and of the contrast hook of bmdqct.measure (labels given, no model)."""

import json

import numpy as np
import pytest
from test_labeling import make_spine

from bmdqct.calibration import Calibration
from bmdqct.classify import BMDCategory
from bmdqct.contrast import CONTRAST_OFFSET_HU, ContrastFinding, agent_means_contrast, detect_contrast
from bmdqct.measure import measure
from bmdqct.spine import find_spinal_canal
from bmdqct.synthetic import synthesize_ldct

#: Anterior-left of the body centre (LPS mm: +x left, -y anterior), in fat beside the
#: synthetic spine, clear of the vertebral bodies (half depth about 15 mm, half width 20-25 mm).
AORTA_OFFSET_MM = (24.0, -22.0)
AORTA_RADIUS_MM = 10.0


@pytest.fixture(scope="module")
def scan():
    """Synthetic LDCT (T10-L3) with its truth and the calibration of its bone line."""
    ct, truth = synthesize_ldct(11, cranial="T10", caudal="L3", shape=(240, 240), pixel_mm=1.5, slice_mm=2.0)
    cal = Calibration(slope=1 / truth.b_hu_per_mg_cm3, intercept=-truth.a_hu / truth.b_hu_per_mg_cm3)
    return ct, truth, cal


def paint_aorta(ct, truth, hu_value, *, noise_hu=20.0, seed=0):
    """A copy of `ct` with a tube of `hu_value` (plus white noise) anterior-left of the body line.

    The tube follows the body centres of the truth; bone (> 150 HU) and the vertebral bodies are
    left untouched, so the VOIs see exactly the same voxels as before.
    """
    names = sorted(truth.centers_mm, key=lambda n: truth.centers_mm[n][2])
    z = np.array([truth.centers_mm[n][2] for n in names])
    x = np.array([truth.centers_mm[n][0] for n in names])
    y = np.array([truth.centers_mm[n][1] for n in names])
    hu = np.array(ct.hu)
    n, ny, nx = hu.shape
    jj, ii = np.mgrid[:ny, :nx]
    rng = np.random.default_rng(seed)
    bodies = np.asarray(truth.levels.labels) > 0
    for k in range(n):
        zk = ct.index_to_world([k, 0, 0])[2]
        centre = np.array([np.interp(zk, z, x) + AORTA_OFFSET_MM[0], np.interp(zk, z, y) + AORTA_OFFSET_MM[1], zk])
        k_, j0, i0 = ct.world_to_index(centre)
        disc = ((jj - j0) * ct.spacing[1]) ** 2 + ((ii - i0) * ct.spacing[2]) ** 2 <= AORTA_RADIUS_MM ** 2
        disc &= (hu[k] < 150.0) & ~bodies[k]
        hu[k][disc] = hu_value + rng.normal(0.0, noise_hu, int(disc.sum()))
    return ct.with_hu(hu)


# --------------------------------------------------------------------------- the detector


def test_plain_synthetic_scan_is_unenhanced(scan):
    """The generator's aorta is unenhanced blood (40 HU at 120 kVp, bmdqct.synthetic._physics)."""
    ct, truth, _ = scan
    finding = detect_contrast(ct)
    assert finding.phase == "none" and not finding.contrast and finding.offset_hu is None
    # blood 40 HU, noise 20-45 HU: the median over >= 2 slices of disc medians is within 10 HU
    assert finding.aorta_hu == pytest.approx(40.0, abs=10.0)
    assert finding.aorta_band == "unenhanced" and finding.agent is None and finding.agent_says_contrast is None
    # found to the left of (and not behind) the body line
    x, y, _ = finding.aorta_centre_mm
    assert x > truth.centers_mm["L1"][0] + 5.0 and y < truth.centers_mm["L1"][1] + 5.0


@pytest.mark.parametrize("hu_value, phase", [(250.0, "arterial"), (160.0, "portal_venous"),
                                             (105.0, "unknown_contrast"), (40.0, "none")])
def test_painted_aorta_gives_the_phase(scan, hu_value, phase):
    ct, truth, _ = scan
    finding = detect_contrast(paint_aorta(ct, truth, hu_value))
    assert finding.phase == phase, finding.reason
    # white noise of 20 HU over a ~7 mm disc of >= 60 voxels: the median is within a few HU
    assert finding.aorta_hu == pytest.approx(hu_value, abs=8.0)
    assert finding.contrast is (phase != "none")
    assert finding.offset_hu == CONTRAST_OFFSET_HU.get(phase)
    assert finding.n_slices_found >= 0.3 * finding.n_slices_searched > 0


def test_enhanced_aorta_found_where_painted(scan):
    ct, truth, _ = scan
    finding = detect_contrast(paint_aorta(ct, truth, 250.0))
    x, y, z = finding.aorta_centre_mm
    z_names = sorted(truth.centers_mm, key=lambda n: truth.centers_mm[n][2])
    zs = [truth.centers_mm[n][2] for n in z_names]
    body_x = np.interp(z, zs, [truth.centers_mm[n][0] for n in z_names])
    body_y = np.interp(z, zs, [truth.centers_mm[n][1] for n in z_names])
    # the inscribed disc of a tube clipped by bone may sit off its centre by a few mm
    assert x - body_x == pytest.approx(AORTA_OFFSET_MM[0], abs=5.0)
    assert y - body_y == pytest.approx(AORTA_OFFSET_MM[1], abs=5.0)


def test_canal_given_is_used(scan):
    ct, truth, _ = scan
    enhanced = paint_aorta(ct, truth, 250.0)
    finding = detect_contrast(enhanced, canal=find_spinal_canal(enhanced))
    assert finding.phase == "arterial" and finding.aorta_hu == pytest.approx(250.0, abs=8.0)
    other = find_spinal_canal(make_spine(("L1", "L2"))[0])
    with pytest.raises(ValueError, match="canal covers .* slices"):
        detect_contrast(enhanced, canal=other)


@pytest.mark.parametrize("agent, verdict", [("APPLIED", True), ("Omnipaque 350", True), ("IV", True),
                                            ("NONE", False), (" no ", False), ("", None), (None, None)])
def test_agent_tag_verdict(agent, verdict):
    assert agent_means_contrast(agent) is verdict


@pytest.mark.parametrize("agent, phase", [("APPLIED", "unknown_contrast"), ("NONE", "unknown"), (None, "unknown")])
def test_tag_alone_when_no_aorta_is_seen(agent, phase):
    ct, _, _ = make_spine(("T12", "L1", "L2"))      # an analytic spine in 30 HU: no vessel anywhere
    finding = detect_contrast(ct.with_metadata(contrast_agent=agent))
    assert finding.phase == phase
    assert finding.aorta_hu is None and finding.confidence == "low"
    assert finding.agent == agent and finding.contrast is (phase == "unknown_contrast")
    assert finding.offset_hu is None


def test_tag_and_image_disagree_the_image_wins(scan):
    ct, truth, _ = scan
    tagged_none = paint_aorta(ct, truth, 250.0).with_metadata(contrast_agent="NONE")
    finding = detect_contrast(tagged_none)
    assert finding.phase == "arterial" and finding.confidence == "medium"
    assert "disagrees" in finding.reason
    tagged = ct.with_metadata(contrast_agent="APPLIED")     # unenhanced aorta, tag says contrast
    finding = detect_contrast(tagged)
    assert finding.phase == "unknown_contrast" and finding.aorta_hu == pytest.approx(40.0, abs=10.0)


def test_bad_inputs():
    with pytest.raises(TypeError, match="must be a CTVolume"):
        detect_contrast(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="phase must be one of"):
        ContrastFinding(phase="venous")


# --------------------------------------------------------------------------- measure()


def test_measure_withholds_the_category_of_an_enhanced_scan(scan):
    ct, truth, cal = scan
    plain = measure(ct, labels=truth.classes, calibration=cal)
    enhanced = measure(paint_aorta(ct, truth, 250.0), labels=truth.classes, calibration=cal)
    codes = [str(f) for f in enhanced.flags]
    assert "contrast:arterial" in codes and "contrast_corrected" not in codes
    assert enhanced.category is None and plain.category is not None
    # values reported unchanged: the painted tube lies outside every VOI
    assert enhanced.bmd_l1_l2_mg_cm3 == pytest.approx(plain.bmd_l1_l2_mg_cm3, abs=1e-9)
    for name in ("T12", "L1", "L2"):
        assert enhanced.levels[name].mean_hu == pytest.approx(plain.levels[name].mean_hu, abs=1e-9)
    assert "contrast-enhanced scan: non-contrast cut-offs not applied" in enhanced.diagnosis.reason
    assert "contrast_correction=True" in enhanced.diagnosis.reason
    d = json.loads(json.dumps(enhanced.to_dict(), allow_nan=False))
    assert d["category"] is None
    assert d["provenance"]["contrast"]["phase"] == "arterial"
    assert d["provenance"]["contrast"]["correction_hu"] is None
    # the unenhanced scan: no contrast flag, the finding recorded
    assert not any(f.code.startswith("contrast") for f in plain.flags)
    assert plain.provenance["contrast"]["phase"] == "none"


@pytest.mark.parametrize("hu_value, phase", [(250.0, "arterial"), (160.0, "portal_venous")])
def test_measure_applies_the_published_offset(scan, hu_value, phase):
    ct, truth, cal = scan
    enhanced = paint_aorta(ct, truth, hu_value)
    raw = measure(enhanced, labels=truth.classes, calibration=cal)
    corrected = measure(enhanced, labels=truth.classes, calibration=cal, contrast_correction=True)
    offset = {"arterial": 20.0, "portal_venous": 14.75}[phase]      # TotalSegmentator spine report
    for name in ("T12", "L1", "L2"):
        a, b = raw.levels[name], corrected.levels[name]
        assert b.mean_hu == pytest.approx(a.mean_hu - offset, abs=1e-9)
        assert b.median_hu == pytest.approx(a.median_hu - offset, abs=1e-9)
        assert b.sd_hu == a.sd_hu
        assert b.bmd_mg_cm3 == pytest.approx(cal.apply(a.mean_hu - offset), abs=1e-9)
    assert corrected.mean_hu_l1_l2 == pytest.approx(raw.mean_hu_l1_l2 - offset, abs=1e-9)
    assert corrected.category is not None and isinstance(corrected.category, BMDCategory)
    codes = [str(f) for f in corrected.flags]
    assert f"contrast:{phase}" in codes and "contrast_corrected" in codes
    assert corrected.provenance["contrast"]["correction_hu"] == offset
    assert corrected.provenance["contrast"]["correction_requested"] is True


def test_measure_with_tag_only_and_no_phase_keeps_the_category_withheld():
    ct, cls, _ = make_spine(("T11", "T12", "L1", "L2", "L3"), spacing=(2.0, 1.5, 1.5))
    cal = Calibration(slope=0.8, intercept=-2.0)
    tagged = ct.with_metadata(contrast_agent="APPLIED")
    for correction in (False, True):
        res = measure(tagged, labels=cls, calibration=cal, contrast_correction=correction)
        assert res.category is None and res.bmd_l1_l2_mg_cm3 == pytest.approx(118.0)
        assert "contrast:unknown_contrast" in [str(f) for f in res.flags]
        assert "contrast_corrected" not in [str(f) for f in res.flags]
        assert res.levels["L1"].mean_hu == pytest.approx(150.0)
    assert "no published correction" in res.diagnosis.reason
    # the same scan without the tag: exactly as before, no contrast flag
    plain = measure(ct, labels=cls, calibration=cal, contrast_correction=True)
    assert plain.flags == () and plain.category is BMDCategory.OSTEOPENIA


def test_hu_offset_is_a_deprecated_alias_of_offset_hu():
    finding = ContrastFinding("arterial")
    assert finding.offset_hu == 20.0 and finding.to_dict()["offset_hu"] == 20.0
    assert "hu_offset" not in finding.to_dict()
    with pytest.warns(DeprecationWarning, match="ContrastFinding.hu_offset is deprecated, use ContrastFinding.offset_hu"):
        assert finding.hu_offset == 20.0


def _ray_hits_reference(bone, max_steps):
    """The ray count written out pixel by pixel and step by step."""
    from bmdqct.spine import _RAYS

    count = np.zeros(bone.shape, int)
    for (r, c), _ in np.ndenumerate(bone):
        for dy, dx in _RAYS:
            for step in range(1, max_steps + 1):
                rr, cc = r + int(round(dy * step)), c + int(round(dx * step))
                if 0 <= rr < bone.shape[0] and 0 <= cc < bone.shape[1] and bone[rr, cc]:
                    count[r, c] += 1
                    break
    return count


def test_ray_hits_match_the_pixel_by_pixel_count():
    from bmdqct.spine import _ray_hits, _ray_offsets

    assert _ray_offsets(3)[0] == ((1, 0), (2, 0), (3, 0))       # the first ray runs down the rows
    assert len(_ray_offsets(3)) == 16
    bone = np.zeros((15, 17), bool)
    bone[2, 3:14] = bone[12, 3:14] = bone[2:13, 3] = True     # a ring open on one side
    bone[7, 9] = True
    np.testing.assert_array_equal(_ray_hits(bone, 5), _ray_hits_reference(bone, 5))
    assert _ray_hits(bone, 5)[7, 6] > _ray_hits(bone, 5)[7, 15]  # inside the ring more rays meet bone
