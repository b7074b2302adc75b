"""DICOM SEG and SR outputs (bmdqct.export) on synthetic DICOM series with known truth.

The synthetic CT has three elliptic bodies (T12, L1, L2) of known, noisy HU,
written as a DICOM series with :func:`bmdqct.io.write_dicom_series`; the label
array that built it is the truth the SEG frames are compared with, source
slice by source slice.
"""

import shutil
import subprocess

import numpy as np
import pytest

from bmdqct.calibration import Calibration
from bmdqct.errors import InputError
from bmdqct.export import (DIAGNOSIS_TRACKING_ID, SCHEME, level_tracking_id, no_dicom_context_reason,
                           segment_label, segment_of_frame, write_dicom_outputs)
from bmdqct.io import load_ct, write_dicom_series, write_nifti
from bmdqct.measure import measure
from bmdqct.volume import CTVolume, LabelVolume

hd = pytest.importorskip("highdicom")

SPACING = (1.5, 1.0, 1.0)
IDS = {"T12": 19, "L1": 20, "L2": 21}
TRUE_HU = {"L2": 110.0, "L1": 130.0, "T12": 150.0}
CAL = Calibration(slope=0.8, intercept=-2.0)
PATIENT = dict(PatientID="SYN001", PatientName="Synthetic^Spine", PatientBirthDate="19600101",
               PatientSex="F", StudyDate="20200101", StudyTime="101500", StudyID="S1",
               AccessionNumber="A1", ReferringPhysicianName="", SeriesNumber=3)


def _spine(rng, *, top_body_cut=False):
    """(hu, labels): bodies stacked along axis 0 (superior = higher index)."""
    k, j, i = np.mgrid[:58, :40, :50]
    ellipse = ((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1
    labels = np.zeros(k.shape, np.int16)
    hu = np.zeros(k.shape, np.float64)
    bodies = [(2, "L2"), (20, "L1"), (38, "T12")] if not top_body_cut else [(40, "L1")]
    for start, level in bodies:
        stop = 58 if top_body_cut else start + 16
        body = ellipse & (k >= start) & (k < stop)
        labels[body] = IDS[level]
        hu[body] = TRUE_HU[level]
    hu = np.rint(hu + rng.normal(0.0, 20.0, hu.shape))  # integer HU: exact through int16 DICOM
    return hu, labels


def _case(tmp, rng, *, top_body_cut=False, calibration=CAL):
    hu, labels = _spine(rng, top_body_cut=top_body_cut)
    folder = write_dicom_series(CTVolume.from_spacing(hu, SPACING), tmp / "dicom", **PATIENT)
    ct = load_ct(folder)
    names = {n: IDS[n] for n in (("L1",) if top_body_cut else IDS)}
    result = measure(ct, labels=LabelVolume(labels, ct.affine, names=names), calibration=calibration)
    return folder, labels, result


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    folder, labels, result = _case(tmp, np.random.default_rng(15))
    outputs = write_dicom_outputs(result, tmp / "out")
    return folder, labels, result, outputs


def _source_index(folder):
    import pydicom

    out = {}
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = (int(ds.InstanceNumber) - 1, ds)
    return out


def test_result_of_the_synthetic_series_is_measured(measured):
    _, _, result, _ = measured
    assert [result.levels[n].status for n in ("T12", "L1", "L2")] == ["measured"] * 3
    for level, hu in TRUE_HU.items():
        # ~2,000 voxels, SD 20 HU -> the VOI mean is within 2 HU of the truth
        assert result.levels[level].mean_hu == pytest.approx(hu, abs=2.0)


def test_seg_is_in_the_source_study_with_the_patient_module_copied(measured):
    folder, _, _, outputs = measured
    seg = hd.seg.segread(outputs.seg_path)
    _, source = next(iter(_source_index(folder).values()))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == source.StudyInstanceUID == outputs.study_uid
    assert seg.SeriesInstanceUID not in (source.SeriesInstanceUID, outputs.sr_series_uid)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyID",
                    "AccessionNumber"):
        assert seg.get(keyword) == source.get(keyword), keyword
    # nothing about the patient beyond the source: no patient attribute the source lacks
    patient_keywords = {e.keyword for e in seg if e.tag.group == 0x0010}
    assert patient_keywords <= {e.keyword for e in source if e.tag.group == 0x0010}


def test_seg_segments_are_coded_with_snomed_vertebrae(measured):
    _, _, _, outputs = measured
    seg = hd.seg.segread(outputs.seg_path)
    found = {s.SegmentLabel: s for s in seg.SegmentSequence}
    assert list(found) == ["T12 vertebral body", "L1 vertebral body", "L2 vertebral body",
                           "T12 trabecular VOI", "L1 trabecular VOI", "L2 trabecular VOI"]
    # SNOMED CT: T12 vertebra 23215003, L1 vertebra 66794005, L2 vertebra 14293000 (DICOM PS3.16)
    snomed = {"T12": "23215003", "L1": "66794005", "L2": "14293000"}
    for level, code in snomed.items():
        body = found[segment_label("body", level)].SegmentedPropertyTypeCodeSequence[0]
        assert (body.CodeValue, body.CodingSchemeDesignator) == (code, "SCT")
        voi = found[segment_label("voi", level)]
        assert voi.AnatomicRegionSequence[0].CodeValue == code
        assert voi.SegmentedPropertyTypeCodeSequence[0].CodeValue == "272673000"  # SCT Bone
        assert voi.SegmentAlgorithmType == "AUTOMATIC"
        assert voi.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "bmdqct"


def test_seg_frames_map_to_the_right_source_instances(measured):
    folder, labels, result, outputs = measured
    seg = hd.seg.segread(outputs.seg_path)
    index = _source_index(folder)
    pixels = seg.pixel_array
    numbers = {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence}
    seen = set()
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k, source = index[uid]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx([float(v) for v in source.ImagePositionPatient], abs=1e-4)
        level, kind = numbers[segment_of_frame(seg, frame)].split(" ", 1)
        if kind == "vertebral body":
            truth = labels[k] == IDS[level]
        else:
            truth = result.vois[level].mask[k]
        np.testing.assert_array_equal(pixels[frame].astype(bool), truth)
        seen.add((k, level, kind))
    # every non-empty (slice, segment) pair is a frame: 16 slices per body, every VOI slice
    voi_slices = sum(len(range(*v.box[0])) for v in result.vois.values())
    assert len(seen) == len(pixels) == 3 * 16 + voi_slices


def _texts(group):
    return [(i.ConceptNameCodeSequence[0].CodeValue, i.TextValue) for i in group[0].ContentSequence
            if i.ValueType == "TEXT"]


def test_sr_round_trips_every_value(measured):
    folder, _, result, outputs = measured
    sr = hd.sr.srread(outputs.sr_path)
    seg = hd.seg.segread(outputs.seg_path)
    _, source = next(iter(_source_index(folder).values()))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.PatientID == source.PatientID and sr.SeriesInstanceUID == outputs.sr_series_uid
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME
    labels_by_number = {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence}
    groups = {g.tracking_identifier: g for g in sr.content.get_volumetric_roi_measurement_groups()}
    assert set(groups) == {level_tracking_id(n) for n in ("T12", "L1", "L2")}
    for level in ("T12", "L1", "L2"):
        m = result.levels[level]
        group = groups[level_tracking_id(level)]
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert labels_by_number[ref.referenced_segment_numbers[0]] == f"{level} trabecular VOI"
        assert group.finding_sites[0].value.value == {"T12": "23215003", "L1": "66794005",
                                                      "L2": "14293000"}[level]
        values = {(x.name.value, None if x.derivation is None else x.derivation.value): (x.value, x.unit.value)
                  for x in group.get_measurements()}
        assert values[("112031", "373098007")] == (pytest.approx(m.mean_hu, rel=1e-12), "[hnsf'U]")
        assert values[("112031", "373099004")] == (pytest.approx(m.median_hu, rel=1e-12), "[hnsf'U]")
        assert values[("112031", "386136009")] == (pytest.approx(m.sd_hu, rel=1e-12), "[hnsf'U]")
        assert values[("BMD-TRAB", "373098007")] == (pytest.approx(m.bmd_mg_cm3, rel=1e-12), "mg/cm3")
        assert values[("118565006", None)] == (pytest.approx(m.volume_mm3, rel=1e-12), "mm3")
        assert [(q.name.value, q.value.value) for q in group.get_qualitative_evaluations()] == [
            ("LEVEL-STATUS", "MEASURED")]
        assert ("111001", "bmdqct") in _texts(group)  # algorithm name
    (diagnosis,) = sr.content.get_image_measurement_groups()
    assert diagnosis.tracking_identifier == DIAGNOSIS_TRACKING_ID
    values = {x.name.value: (x.value, x.unit.value) for x in diagnosis.get_measurements()}
    assert values["BMD-L1L2"] == (pytest.approx(result.bmd_l1_l2_mg_cm3, rel=1e-12), "mg/cm3")
    assert values["HU-L1L2"] == (pytest.approx(result.mean_hu_l1_l2, rel=1e-12), "[hnsf'U]")
    assert values["CAL-SLOPE"] == (0.8, "mg/cm3/[hnsf'U]") and values["CAL-INTERCEPT"] == (-2.0, "mg/cm3")
    # the truth: L1, L2 HU ~130, ~110 -> BMD 0.8 * 120 - 2 = 94 mg/cm3 -> osteopenia (80-120)
    assert result.bmd_l1_l2_mg_cm3 == pytest.approx(94.0, abs=2.0)
    assert [(q.name.value, q.value.value) for q in diagnosis.get_qualitative_evaluations()] == [
        ("ACR-CAT", "ACR-OSTEOPENIA")]
    texts = _texts(diagnosis)
    assert ("LEVELS-USED", "L1+L2") in texts
    assert ("111003", result.provenance["bmdqct_version"]) in texts  # algorithm version
    assert ("MODEL-ID", str(result.provenance["model_id"])) in texts
    assert any(code == "CAL" and CAL.id in text for code, text in texts)
    assert result.flags, "the synthetic case raises at least one QC flag"
    assert [text for code, text in texts if code == "QC-FLAG"] == [f"{f}: {f.message}" for f in result.flags]
    device = sr.content.get_observer_contexts()
    assert device, "the SR names its observer"


def test_result_without_a_measured_level_still_gives_valid_outputs(tmp_path):
    folder, _, result = _case(tmp_path, np.random.default_rng(3), top_body_cut=True)
    assert result.levels["L1"].status == "partial" and not result.vois
    outputs = write_dicom_outputs(result, tmp_path / "out")
    assert outputs.segments == ("L1 vertebral body",)
    sr = hd.sr.srread(outputs.sr_path)
    (group,) = [g for g in sr.content.get_volumetric_roi_measurement_groups()]
    assert group.tracking_identifier == level_tracking_id("L1")
    assert group.get_measurements() == []
    assert [q.value.value for q in group.get_qualitative_evaluations()] == ["PARTIAL"]
    assert ("REASON", "body cut by the edge of the scan") in _texts(group)
    others = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    assert set(others) == {DIAGNOSIS_TRACKING_ID, level_tracking_id("T12"), level_tracking_id("L2")}
    for level in ("T12", "L2"):  # not in the labels: a group without a segment, with its status
        assert [q.value.value for q in others[level_tracking_id(level)].get_qualitative_evaluations()] == [
            "MISSING"]
    diagnosis = others[DIAGNOSIS_TRACKING_ID]
    assert [q.value.value for q in diagnosis.get_qualitative_evaluations()] == ["ACR-NONE"]
    assert diagnosis.get_measurements() == [m for m in diagnosis.get_measurements()
                                            if m.name.value.startswith("CAL-")]
    reason = dict(_texts(diagnosis))["DIAGNOSIS"]
    assert reason == result.diagnosis.reason and reason
    if shutil.which("dciodvfy"):
        for path in (outputs.seg_path, outputs.sr_path):
            assert _dciodvfy_errors(path) == []


def test_non_dicom_input_is_refused_with_the_reason(tmp_path):
    hu, labels = _spine(np.random.default_rng(1))
    ct = CTVolume.from_spacing(hu, SPACING)
    lab = LabelVolume.from_spacing(labels, SPACING, names=IDS)
    in_memory = measure(ct, labels=lab)
    assert "no input path" in no_dicom_context_reason(in_memory)
    with pytest.raises(InputError, match="no DICOM context"):
        write_dicom_outputs(in_memory, tmp_path / "a")
    nifti = write_nifti(ct, tmp_path / "ct.nii.gz")
    from_file = measure(nifti, labels=LabelVolume(labels, load_ct(nifti).affine, names=IDS))
    with pytest.raises(InputError, match=r"ct\.nii\.gz is nifti, not DICOM: there is no DICOM context"):
        write_dicom_outputs(from_file, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_moved_source_is_reported(measured, tmp_path):
    _, _, result, _ = measured
    with pytest.raises(InputError, match="no longer exists"):
        write_dicom_outputs(result, tmp_path, source=tmp_path / "gone")


def _dciodvfy_errors(path):
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy not installed (Debian package dicom3tools)")
@pytest.mark.parametrize("name", ["seg_path", "sr_path"])
def test_dciodvfy_reports_no_error(measured, name):
    _, _, _, outputs = measured
    assert _dciodvfy_errors(getattr(outputs, name)) == []
