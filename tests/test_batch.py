"""Tests of bmdqct.batch without the CLI: cases, statuses, resume, failure records."""

import csv
import json

import pytest
from test_labeling import make_spine

from bmdqct.batch import Case, find_cases, run_cases
from bmdqct.calibration import Calibration
from bmdqct.errors import InputError
from bmdqct.io import write_nifti


def _touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_synth_layout_gives_the_reference_ids(tmp_path):
    """``measure X`` and ``measure X/*`` find the same cases, named as reference.csv names them."""
    _touch(tmp_path, "reference.csv", "truth.csv", "case_000/ct.nii.gz", "case_000/levels.nii.gz",
           "case_000/classes.nii.gz", "case_000/trabecular.nii.gz", "case_000/truth.json",
           "case_001/ct.nii.gz", "case_001/levels.nii.gz", "loose/SCAN_7.NII.GZ", "loose/SCAN_8.mha",
           "dicom/series/IM0001.dcm", ".hidden/ct.nii.gz")
    whole = find_cases([tmp_path])
    assert [c.case for c in whole] == ["case_000", "case_001", "dicom", "SCAN_7", "SCAN_8"]
    assert whole[0].input == tmp_path / "case_000" / "ct.nii.gz"
    assert whole[2].input == tmp_path / "dicom"
    star = find_cases(sorted(p for p in tmp_path.iterdir() if not p.name.startswith(".")))   # the shell's X/*
    # a folder named directly is a case only if it holds DICOM files or one volume itself
    assert [c.case for c in star] == ["case_000", "case_001", "series", "SCAN_7", "SCAN_8"]
    assert [c.case for c in find_cases(sorted(tmp_path.glob("case_*/ct.nii.gz")))] == ["case_000", "case_001"]
    assert [c.case for c in find_cases([tmp_path / "loose"])] == ["SCAN_7", "SCAN_8"]


def test_find_cases_refuses_missing_inputs_and_label_count(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        find_cases([tmp_path / "nope"])
    _touch(tmp_path, "notes.txt")
    with pytest.raises(InputError, match="no case found"):
        find_cases([tmp_path])
    _touch(tmp_path, "a.nii.gz", "b.nii.gz")
    with pytest.raises(InputError, match="one label map per INPUT"):
        find_cases([tmp_path], labels=[tmp_path / "a.nii.gz"])


@pytest.fixture
def spine_cases(tmp_path):
    ct, _, truth = make_spine(("T11", "T12", "L1", "L2"), spacing=(2.0, 1.5, 1.5))
    ct_path = write_nifti(ct, tmp_path / "in" / "spine.nii.gz")
    lab_path = write_nifti(truth, tmp_path / "in" / "spine_levels.nii.gz")
    # a scan whose labels hold only T11: read and labelled, but no requested level
    high = truth.labels.copy()
    high[high != truth.names["T11"]] = 0
    from bmdqct.volume import LabelVolume

    t11_path = write_nifti(LabelVolume(high, truth.affine, {"T11": truth.names["T11"]}),
                           tmp_path / "in" / "t11_levels.nii.gz")
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    return [Case("spine", ct_path, lab_path), Case("high", ct_path, t11_path), Case("broken", broken, lab_path)]


def _rows(path):
    with path.open(newline="") as fh:
        return {row["case"]: row for row in csv.DictReader(fh)}


def test_statuses_resume_and_failure_records(spine_cases, tmp_path):
    out = tmp_path / "out"
    seen = []
    cal = Calibration(slope=0.8, intercept=-2.0)
    summary = run_cases(spine_cases, out, calibration=cal, label_scheme="verse", on_record=seen.append)
    assert [r.case for r in seen] == ["spine", "high", "broken"]
    spine, high, broken = summary.records
    assert (spine.status, spine.levels_used, spine.category) == ("ok", ("L1", "L2"), "osteopenia")
    assert spine.bmd_l1_l2_mg_cm3 == pytest.approx(118.0)          # 0.8 * 150 - 2
    assert high.status == "no_measurement" and high.reason.startswith("no level measured: T12 missing")
    assert broken.status == "failed" and broken.reason and broken.result is None
    assert dict(summary.counts) == {"ok": 1, "no_measurement": 1, "failed": 1, "skipped": 0}
    assert summary.failed == 1
    rows = _rows(summary.results_csv)
    assert [rows[c]["status"] for c in ("spine", "high", "broken")] == ["ok", "no_measurement", "failed"]
    assert rows["high"]["error"] == high.reason
    assert "error" in json.loads((out / "broken" / "error.json").read_text())
    stamp = (out / "spine" / "result.json").stat().st_mtime_ns
    # a re-run keeps finished statuses and retries the failed case
    again = run_cases(spine_cases, out, calibration=cal, label_scheme="verse")
    assert [(r.status, r.skipped) for r in again.records] == [("ok", True), ("no_measurement", True),
                                                               ("failed", False)]
    assert dict(again.counts) == {"ok": 0, "no_measurement": 0, "failed": 1, "skipped": 2}
    assert [_rows(again.results_csv)[c]["status"] for c in ("spine", "high")] == ["ok", "no_measurement"]
    assert (out / "spine" / "result.json").stat().st_mtime_ns == stamp
    manifest = json.loads(again.manifest.read_text())
    assert len(manifest["history"]) == 1 and manifest["cases"][0]["calibration_id"] == cal.id


def test_a_failing_remeasurement_keeps_the_finished_result(spine_cases, tmp_path):
    out = tmp_path / "out"
    spine = spine_cases[0]
    run_cases([spine], out, label_scheme="verse")
    before = (out / "spine" / "result.json").read_bytes()

    def broken_picture(result, ct, path):
        path.write_bytes(b"half a PNG")
        raise OSError("disk full")

    summary = run_cases([spine], out, label_scheme="verse", overwrite=True, picture=broken_picture)
    (record,) = summary.records
    assert record.status == "failed" and "earlier result kept" in record.reason and "disk full" in record.reason
    assert (out / "spine" / "result.json").read_bytes() == before
    assert sorted(p.name for p in (out / "spine").iterdir()) == ["labels.nii.gz", "result.json", "voi.nii.gz"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "results.csv", "spine"]


def test_resume_reads_an_output_folder_of_result_format_2(spine_cases, tmp_path):
    """A results.csv with the old ``L1_hu_mean`` columns and a format-2 result.json (``hu_mean``,
    ``hu_l1_l2``) from an earlier bmdqct: a re-run keeps their HU values under the new names."""
    out = tmp_path / "out"
    spine = spine_cases[0]
    run_cases([spine], out, label_scheme="verse")
    path = out / "spine" / "result.json"
    result = json.loads(path.read_text())
    old = {**result, "format": "bmdqct-result/2"}
    old["hu_l1_l2"] = old.pop("mean_hu_l1_l2")
    for entry in old["levels"].values():
        entry.pop("frame")
        for new_key, old_key in (("mean_hu", "hu_mean"), ("median_hu", "hu_median"), ("sd_hu", "hu_sd")):
            entry[old_key] = entry.pop(new_key)
    old["provenance"]["contrast"]["hu_offset"] = old["provenance"]["contrast"].pop("offset_hu")
    path.write_text(json.dumps(old))
    table = out / "results.csv"
    header, row = table.read_text().splitlines()
    assert "L1_mean_hu" in header.split(",")
    gone = "gone,ok,,normal,130.00,L1+L2,,,140.00,130.00,141.00,131.00,"   # a case not in this run
    table.write_text(header.replace("_mean_hu", "_hu_mean") + "\n" + row + "\n" + gone + "\n")
    again = run_cases([spine], out, label_scheme="verse")
    (record,) = again.records
    assert record.skipped and record.mean_hu_l1_l2 == pytest.approx(150.0)
    with pytest.warns(DeprecationWarning, match="CaseRecord.hu_l1_l2 is deprecated"):
        assert record.hu_l1_l2 == record.mean_hu_l1_l2
    rows = _rows(again.results_csv)
    assert "L1_hu_mean" not in rows["spine"]
    assert float(rows["spine"]["L1_mean_hu"]) == pytest.approx(150.0)           # from the format-2 result.json
    assert (rows["gone"]["L1_mean_hu"], rows["gone"]["L2_mean_hu"]) == ("140.00", "141.00")   # old csv row
    assert json.loads(again.manifest.read_text())["cases"][0]["mean_hu_l1_l2"] == pytest.approx(150.0)
