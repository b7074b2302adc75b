"""Phantomless (internal) calibration on synthetic subject scans — experimental."""

from __future__ import annotations

import numpy as np
import pytest

from bmdqct.calibration import (
    InternalReference,
    build_internal_reference,
    calibrate_phantom,
    find_reference_tissues,
    internal_calibration,
    read_internal_reference,
)
from bmdqct.errors import CalibrationError, CalibrationWarning
from bmdqct.synthetic import synthesize_ldct, synthesize_phantom_scan, tissue_hu
from bmdqct.volume import CTVolume

# a thoracic slab keeps the scans small (about 1.5 s each) and shows the descending aorta in lung
_GRID = {"shape": (192, 192), "slice_mm": 3.0, "cranial": "T5", "caudal": "T11", "noise_hu": 25.0}


@pytest.fixture(scope="module")
def scans():
    reference, _ = synthesize_ldct(3, **_GRID)
    patient, truth = synthesize_ldct(11, **_GRID)
    phantom, phantom_truth = synthesize_phantom_scan("mindways-model3-ct", 0)
    return reference, patient, truth, calibrate_phantom(phantom, phantom_truth.certificate)


def test_tissues_found_at_their_true_hu(scans):
    _, patient, _, _ = scans
    found = find_reference_tissues(patient)
    assert sorted(found) == ["air", "blood", "fat", "muscle"]
    for tissue, roi in found.items():
        # hundreds to thousands of voxels of 25 HU correlated noise: means within a few HU
        assert roi.mean_hu == pytest.approx(tissue_hu(tissue, 120), abs=4.0), tissue
        assert roi.in_window and roi.n_voxels >= 50
    aorta = found["blood"].center_mm
    assert aorta[0] > 0.0  # the descending aorta lies on the patient's left (+x in LPS)
    fat = found["fat"]
    assert fat.to_dict()["mean_hu"] == fat.mean_hu and "hu_mean" not in fat.to_dict()
    with pytest.warns(DeprecationWarning, match="TissueROI.hu_mean is deprecated, use TissueROI.mean_hu"):
        assert fat.hu_mean == fat.mean_hu
    with pytest.warns(DeprecationWarning, match="TissueROI.hu_sd is deprecated, use TissueROI.sd_hu"):
        assert fat.hu_sd == fat.sd_hu


def test_internal_calibration_close_to_phantom(scans):
    reference_scan, patient, _, phantom_cal = scans
    reference = build_internal_reference(find_reference_tissues(reference_scan), phantom_cal)
    assert reference.kvp == 120.0 and reference.device_serial == "SYN-0001"
    cal = internal_calibration(patient, reference)
    assert (cal.method, cal.experimental, cal.n) == ("internal", True, 4)
    assert {t["tissue"] for t in cal.details["tissues"]} == {"air", "fat", "muscle", "blood"}
    hu = np.array([50.0, 100.0, 200.0])
    # same scanner line for both subjects: only tissue-HU noise separates the two lines
    np.testing.assert_allclose(cal.apply(hu), phantom_cal.apply(hu), atol=3.0)


def test_internal_reference_round_trip_and_errors(tmp_path, scans):
    reference_scan, patient, _, phantom_cal = scans
    reference = build_internal_reference({"air": -1000.0, "fat": -100.0, "muscle": 50.0, "blood": 40.0},
                                         phantom_cal)
    path = reference.to_json(tmp_path / "ref.json")
    back = read_internal_reference(path)
    assert back == reference and dict(back.equivalent_mg_cm3) == dict(reference.equivalent_mg_cm3)
    other_kvp = InternalReference(dict(reference.equivalent_mg_cm3), **reference.scanner, kvp=100.0)
    with pytest.raises(CalibrationError, match=r"at 100\.0 kV but the scan .* at 120\.0 kV; equivalent densities "
                                               r"are scanner- and kVp-specific"):
        internal_calibration(patient, other_kvp)
    with pytest.warns(CalibrationWarning, match=r"fat ROI mean -\d+\.\d HU is outside the expected -90..-80 HU"):
        with pytest.raises(CalibrationError, match=r"at least 4 tissues within their HU windows, got "
                                                   r"\['air', 'muscle', 'blood'\]"):
            internal_calibration(patient, reference, windows={"fat": (-90.0, -80.0)}, min_tissues=4)
    (tmp_path / "bad.json").write_text('{"kvp": 120}')
    with pytest.raises(CalibrationError, match=r"bad\.json: missing field 'equivalent_mg_cm3'"):
        read_internal_reference(tmp_path / "bad.json")
    with pytest.raises(CalibrationError, match=r"needs at least two tissues"):
        InternalReference({"air": -700.0})
    with pytest.raises(ValueError, match=r"unknown tissue\(s\) \['bone'\]"):
        find_reference_tissues(patient, tissues=("bone",))


def test_tissues_found_in_any_array_orientation(scans):
    """A non-canonical volume (axes stored L, A, I) is searched in canonical orientation: same ROIs."""
    from bmdqct.volume import CTVolume

    _, patient, _, _ = scans
    hu = patient.hu[::-1, ::-1].transpose(2, 1, 0)           # S, P, L -> L, A, I
    affine = patient.affine.copy()
    affine[:3, 3] += (patient.shape[0] - 1) * affine[:3, 0] + (patient.shape[1] - 1) * affine[:3, 1]
    affine[:3, :2] *= -1
    stored = CTVolume(hu, affine[:, [2, 1, 0, 3]], metadata=patient.metadata)
    assert stored.orientation == ("L", "A", "I")
    expected, found = find_reference_tissues(patient), find_reference_tissues(stored)
    assert sorted(found) == sorted(expected)
    for tissue, roi in expected.items():
        assert found[tissue].mean_hu == pytest.approx(roi.mean_hu, rel=1e-12), tissue
        np.testing.assert_allclose(found[tissue].center_mm, roi.center_mm, atol=1e-9)


def test_internal_reference_file_errors_name_the_file(tmp_path):
    for text, match in (('{"equivalent_mg_cm3": {"air": -900, "fat": -80}, "mineral": "CaCO3"}',
                         r"bad\.json: mineral reference must be one of"),
                        ('{"equivalent_mg_cm3": {"air": -900, "fat": -80}, "kvp": "120"}',
                         r"bad\.json: kvp must be a number"),
                        ('{"equivalent_mg_cm3": {"air": -900, "fat": -80}, "kV": 120}',
                         r"bad\.json: unknown field\(s\) \['kV'\]"),
                        ('{"equivalent_mg_cm3": [-900, -80]}', r"bad\.json: 'equivalent_mg_cm3' must be an object"),
                        ('{"equivalent_mg_cm3": {"air": "x", "fat": -80}}',
                         r"bad\.json: equivalent density of 'air' must be a finite number")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(CalibrationError, match=match):
            read_internal_reference(tmp_path / "bad.json")
    with pytest.raises(CalibrationError, match=r"slices must be \(first, last\) axial slice indices"):
        find_reference_tissues(CTVolume.from_spacing(np.zeros((3, 4, 4)), (1, 1, 1)), slices=(1, 2, 3))
