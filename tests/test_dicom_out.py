"""``bmdqct measure --dicom-out`` (and ``--series``): DICOM SEG and SR written by the batch layer.

The synthetic DICOM series is the one of tests/test_export.py: three elliptic bodies (T12, L1, L2) of
known noisy HU with their VerSe label map given to ``--labels`` (no model, no network).
"""

import json
import shutil

import numpy as np
import pytest
from test_export import IDS, PATIENT, SPACING, _dciodvfy_errors, _spine

import bmdqct.export
from bmdqct.cli import main
from bmdqct.io import load_ct, write_dicom_series, write_nifti
from bmdqct.volume import CTVolume, LabelVolume

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A DICOM series folder ``spine/``, the same CT as ``spine_nifti.nii.gz``, the labels, a calibration."""
    tmp = tmp_path_factory.mktemp("dicom_out")
    hu, labels = _spine(np.random.default_rng(15))
    folder = write_dicom_series(CTVolume.from_spacing(hu, SPACING), tmp / "spine", **PATIENT)
    ct = load_ct(folder)
    lab = write_nifti(LabelVolume(labels, ct.affine, names=IDS), tmp / "labels" / "spine_levels.nii.gz")
    nifti = write_nifti(ct, tmp / "nifti" / "spine_nifti.nii.gz")
    cal = tmp / "cal.json"
    cal.write_text(json.dumps({"slope": 0.8, "intercept": -2.0}))
    return folder, nifti, lab, cal


def _measure(out, *cases, extra=()):
    """Run ``bmdqct measure`` on (input, labels) pairs; returns the exit code."""
    args = ["measure", *(str(i) for i, _ in cases), "-o", str(out), "--label-scheme", "verse",
            "--no-progress", "--no-qc-picture", *extra]
    for _, labels in cases:
        args += ["--labels", str(labels)]
    return main(args)


def _source(folder):
    return pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)


def test_dicom_out_writes_seg_and_sr_into_the_source_study(inputs, tmp_path, capsys):
    folder, nifti, lab, cal = inputs
    out = tmp_path / "out"
    # a DICOM case and a NIfTI case in one run: the NIfTI case is measured, and says why it has no SEG/SR
    rc = _measure(out, (folder, lab), (nifti, lab), extra=["--calibration", str(cal), "--dicom-out"])
    assert rc == 0
    printed = capsys.readouterr().out
    case = out / "spine"
    assert sorted(p.name for p in case.iterdir()) == ["labels.nii.gz", "result.json", "seg.dcm", "sr.dcm",
                                                      "voi.nii.gz"]
    source = _source(folder)
    seg = hd.seg.segread(case / "seg.dcm")
    sr = hd.sr.srread(case / "sr.dcm")
    for obj in (seg, sr):
        assert obj.StudyInstanceUID == source.StudyInstanceUID
        assert obj.SeriesInstanceUID != source.SeriesInstanceUID
        assert (obj.PatientID, str(obj.PatientName), obj.AccessionNumber) == ("SYN001", "Synthetic^Spine", "A1")
    assert seg.SeriesInstanceUID != sr.SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence][:3] == ["T12 vertebral body", "L1 vertebral body",
                                                                 "L2 vertebral body"]
    # the SR holds the values of result.json
    result = json.loads((case / "result.json").read_text())
    (diagnosis,) = sr.content.get_image_measurement_groups()
    values = {m.name.value: m.value for m in diagnosis.get_measurements()}
    assert values["BMD-L1L2"] == pytest.approx(result["bmd_l1_l2_mg_cm3"], rel=1e-12)
    # truth: L1 130 HU, L2 110 HU (+-2 HU from the noise) -> 0.8 * 120 - 2 = 94 mg/cm3
    assert result["bmd_l1_l2_mg_cm3"] == pytest.approx(94.0, abs=2.0)
    # the NIfTI case: measured, no DICOM objects, and the reason printed and recorded
    other = out / "spine_nifti"
    assert (other / "result.json").exists() and not list(other.glob("*.dcm"))
    assert "spine_nifti: ok" in printed
    assert "note: --dicom-out: no DICOM SEG/SR written: " in printed
    assert "spine_nifti.nii.gz is nifti, not DICOM: there is no DICOM context" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    notes = {c["case"]: c["notes"] for c in manifest["cases"]}
    assert notes["spine"] == []
    assert len(notes["spine_nifti"]) == 1 and "no DICOM context" in notes["spine_nifti"][0]
    assert manifest["options"]["dicom_out"] is True
    if shutil.which("dciodvfy"):
        for path in (case / "seg.dcm", case / "sr.dcm"):
            assert _dciodvfy_errors(path) == [], path
    # the review page links the DICOM objects
    assert main(["review", str(out)]) == 0
    page = (out / "review.html").read_text()
    assert 'href="spine/seg.dcm"' in page and 'href="spine/sr.dcm"' in page
    assert "no DICOM context" in page


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed (Debian package dicom3tools)")
def test_dciodvfy_finds_no_error_in_the_batch_outputs(inputs, tmp_path, capsys):
    folder, _, lab, cal = inputs
    out = tmp_path / "out"
    assert _measure(out, (folder, lab), extra=["--calibration", str(cal), "--dicom-out"]) == 0
    for name in ("seg.dcm", "sr.dcm"):
        assert _dciodvfy_errors(out / "spine" / name) == [], name


def test_a_failing_export_fails_the_case_and_keeps_the_earlier_result(inputs, tmp_path, capsys, monkeypatch):
    folder, _, lab, cal = inputs
    out = tmp_path / "out"
    assert _measure(out, (folder, lab), extra=["--calibration", str(cal)]) == 0
    before = (out / "spine" / "result.json").read_bytes()
    # a re-run with --dicom-out skips the finished case and says how to get the objects
    capsys.readouterr()
    assert _measure(out, (folder, lab), extra=["--calibration", str(cal), "--dicom-out"]) == 0
    assert "--overwrite measures again and writes them" in capsys.readouterr().out

    def broken(result, folder, **kwargs):
        (folder / "seg.dcm").write_bytes(b"half a SEG")
        raise OSError("disk full")

    monkeypatch.setattr(bmdqct.export, "write_dicom_outputs", broken)
    rc = _measure(out, (folder, lab), extra=["--calibration", str(cal), "--dicom-out", "--overwrite"])
    assert rc == 1
    text = capsys.readouterr().out
    assert "spine: FAILED - re-measurement failed, earlier result kept: OSError: disk full" in text
    assert (out / "spine" / "result.json").read_bytes() == before
    assert sorted(p.name for p in (out / "spine").iterdir()) == ["labels.nii.gz", "result.json", "voi.nii.gz"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "results.csv", "spine"]  # no staging left
    # a new case whose export fails: recorded like any failure, no partial case folder
    rc = _measure(tmp_path / "fresh", (folder, lab), extra=["--calibration", str(cal), "--dicom-out"])
    assert rc == 1
    assert sorted(p.name for p in (tmp_path / "fresh" / "spine").iterdir()) == ["error.json"]
    assert "disk full" in json.loads((tmp_path / "fresh" / "spine" / "error.json").read_text())["error"]


@pytest.fixture(scope="module")
def two_series(inputs, tmp_path_factory):
    """One case folder holding two series of one study: the full scan and a shorter copy (fewer slices)."""
    folder, _, lab, _ = inputs
    tmp = tmp_path_factory.mktemp("two_series")
    ct = load_ct(folder)
    study = str(_source(folder).StudyInstanceUID)
    case = tmp / "study"
    case.mkdir()
    uids = {"full": "1.2.826.0.1.3680043.8.498.101", "short": "1.2.826.0.1.3680043.8.498.102"}
    for name, hu in (("full", ct.hu), ("short", ct.hu)):
        part = CTVolume(np.rint(hu), ct.affine)
        written = write_dicom_series(part, tmp / name, series_uid=uids[name], StudyInstanceUID=study,
                                     **PATIENT)
        files = sorted(written.glob("*.dcm"))
        if name == "short":
            files = files[:-6]   # the 6 top slices missing: 52 slices against 58, not the default choice
        for path in files:
            shutil.move(path, case / f"{name}_{path.name}")
    return case, lab, uids


def test_series_picks_the_named_series(two_series, tmp_path, capsys):
    case, lab, uids = two_series
    out = tmp_path / "out"
    assert _measure(out, (case, lab)) == 0                        # default: the series with the most slices
    result = json.loads((out / "study" / "result.json").read_text())
    assert result["provenance"]["scan"]["series_uid"] == uids["full"]
    assert result["provenance"]["grid"]["shape"][0] == 58
    # --series reads the other one; its labels are resampled onto its (shorter) grid
    out = tmp_path / "out2"
    assert _measure(out, (case, lab), extra=["--series", uids["short"], "--dicom-out"]) == 0
    result = json.loads((out / "study" / "result.json").read_text())
    assert result["provenance"]["scan"]["series_uid"] == uids["short"]
    assert result["provenance"]["grid"]["shape"][0] == 52
    seg = hd.seg.segread(out / "study" / "seg.dcm")
    referenced = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert referenced == {uids["short"]}
    assert json.loads((out / "manifest.json").read_text())["options"]["series_uid"] == uids["short"]


def test_series_not_found_fails_the_case_with_the_loader_error(two_series, tmp_path, capsys):
    case, lab, _ = two_series
    out = tmp_path / "out"
    assert _measure(out, (case, lab), extra=["--series", "1.2.3.999"]) == 1
    text = capsys.readouterr().out
    assert "study: FAILED - DicomSeriesError: " in text and "no series with SeriesInstanceUID 1.2.3.999" in text
    assert "no series with SeriesInstanceUID 1.2.3.999" in json.loads(
        (out / "study" / "error.json").read_text())["error"]


def test_series_is_not_used_for_a_volume_file(inputs, tmp_path, capsys):
    _, nifti, lab, _ = inputs
    assert _measure(tmp_path / "out", (nifti, lab), extra=["--series", "1.2.3.999"]) == 0
    assert "note: --series 1.2.3.999 not used: " in capsys.readouterr().out
