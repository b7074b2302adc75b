"""A batch mixing good cases with the awkward inputs of issue 12 (bmdqct.batch, no network).

Each bad case must end as ``failed`` with a reason that names its file and what was
expected; every good case (including the upper-case ``.NII.GZ`` and the DICOM copy of
the same scan) must be measured exactly as alone, and its finished result must stay
intact when the batch is run again; the command line's exit code says that some failed.
"""

import csv

import numpy as np
import pydicom
import pytest
from test_labeling import make_spine

from bmdqct.batch import Case, run_cases
from bmdqct.calibration import Calibration
from bmdqct.io import write_dicom_series, write_nifti

CAL = Calibration(slope=0.8, intercept=-2.0)      # 150 HU -> 118 mg/cm3


@pytest.fixture
def mixed(tmp_path):
    ct, _, truth = make_spine(("T11", "T12", "L1", "L2"), spacing=(2.0, 1.5, 1.5))
    src = tmp_path / "in"
    good = write_nifti(ct, src / "good.nii.gz")
    labels = write_nifti(truth, src / "good_levels.nii.gz")
    upper = src / "UPPER.NII.GZ"
    write_nifti(ct, src / "upper_tmp.nii.gz").rename(upper)
    dicom = write_dicom_series(ct, src / "dicom_good")
    shifted = write_nifti(ct.with_hu(np.asarray(ct.hu) + 1024.0), src / "shifted.nii.gz")
    slope0 = write_dicom_series(ct, src / "slope0")
    ds = pydicom.dcmread(slope0 / "00003.dcm")
    ds.RescaleSlope = 0
    ds.save_as(slope0 / "00003.dcm")
    patients = src / "two_patients"
    write_dicom_series(ct, patients / "a", PatientID="P1")
    write_dicom_series(ct, patients / "b", PatientID="P2")
    cases = [Case("good", good, labels), Case("upper", upper, labels), Case("dicom_good", dicom, labels),
             Case("shifted", shifted, labels), Case("slope0", slope0, labels),
             Case("two_patients", patients, labels)]
    return cases, tmp_path / "out"


def test_mixed_batch_keeps_good_results_and_records_each_bad_one(mixed):
    cases, out = mixed
    summary = run_cases(cases, out, calibration=CAL, label_scheme="verse")
    records = {r.case: r for r in summary.records}
    for name in ("good", "upper", "dicom_good"):
        r = records[name]
        assert r.status == "ok", (name, r.reason)
        assert r.bmd_l1_l2_mg_cm3 == pytest.approx(118.0)
        assert (out / name / "result.json").is_file()
    reasons = {
        "shifted": r"shifted\.nii\.gz: the values look like HU \+ 1024",
        "slope0": r"00003\.dcm: RescaleSlope is .*0",
        "two_patients": r"2 different patients",
    }
    import re

    for name, pattern in reasons.items():
        r = records[name]
        assert r.status == "failed" and r.result is None, name
        assert re.search(pattern, r.reason), (name, r.reason)
        assert not (out / name / "result.json").exists()
    assert summary.failed == 3 and dict(summary.counts)["ok"] == 3
    with (out / "results.csv").open(newline="") as fh:
        rows = {row["case"]: row for row in csv.DictReader(fh)}
    assert {n: rows[n]["status"] for n in rows} == {
        "good": "ok", "upper": "ok", "dicom_good": "ok", "shifted": "failed", "slope0": "failed",
        "two_patients": "failed"}
    # a second run retries only the failures and leaves every finished result as it was
    stamps = {n: (out / n / "result.json").stat().st_mtime_ns for n in ("good", "upper", "dicom_good")}
    again = run_cases(cases, out, calibration=CAL, label_scheme="verse")
    assert {r.case: r.status for r in again.records if r.skipped} == {"good": "ok", "upper": "ok",
                                                                      "dicom_good": "ok"}
    assert again.failed == 3
    assert all((out / n / "result.json").stat().st_mtime_ns == t for n, t in stamps.items())


def test_mixed_batch_exit_code_says_some_failed(mixed, capsys):
    from bmdqct.cli import main

    cases, out = mixed
    good, shifted = cases[0], cases[3]
    code = main(["measure", str(good.input), str(shifted.input), "-o", str(out),
                 "--labels", str(good.labels), "--labels", str(shifted.labels), "--label-scheme", "verse",
                 "--no-qc-picture", "--no-progress"])
    assert code != 0
    text = capsys.readouterr()
    assert "shifted.nii.gz" in text.out + text.err
    assert (out / "good" / "result.json").is_file()
