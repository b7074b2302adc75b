"""Tests of ``bmdqct measure`` (external labels; no model needed) and its bad inputs."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from test_labeling import make_spine

from bmdqct.cli import main
from bmdqct.io import write_nifti
from bmdqct.volume import LabelVolume

CONTRACT_COLUMNS = ["case", "status", "error", "category", "bmd_l1_l2_mg_cm3", "levels_used",
                    "T12_mean_hu", "T12_bmd_mg_cm3", "L1_mean_hu", "L1_bmd_mg_cm3", "L2_mean_hu",
                    "L2_bmd_mg_cm3", "flags"]


def _ras_copy(path, target):
    """Store a NIfTI file in RAS order (not bmdqct's canonical order): a reader's trap."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    nib.save(img, str(target))
    return target


@pytest.fixture
def case_files(tmp_path):
    ct, _, truth = make_spine(("T11", "T12", "L1", "L2"), spacing=(2.0, 1.5, 1.5))
    folder = tmp_path / "inputs"
    folder.mkdir()
    ct_path = _ras_copy(write_nifti(ct, folder / "tmp_ct.nii.gz"), folder / "spine.nii.gz")
    lab_path = _ras_copy(write_nifti(truth, folder / "tmp_lab.nii.gz"), folder / "spine_levels.nii.gz")
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"slope": 0.8, "intercept": -2.0}))
    return ct_path, lab_path, cal


def _rows(out):
    with (out / "results.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, {row["case"]: row for row in reader}


def test_measure_writes_every_output_on_the_input_grid(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    out = tmp_path / "out"
    rc = main(["measure", str(ct_path), "-o", str(out), "--labels", str(lab_path), "--label-scheme", "verse",
               "--calibration", str(cal), "--no-progress"])
    assert rc == 0
    assert "spine: ok  L1-L2 118.0 mg/cm3 osteopenia" in capsys.readouterr().out
    case = out / "spine"
    for name in ("result.json", "labels.nii.gz", "voi.nii.gz", "qc.png"):
        assert (case / name).stat().st_size > 0, name
    result = json.loads((case / "result.json").read_text())
    assert result["levels"]["L1"]["mean_hu"] == pytest.approx(150.0)
    assert result["levels"]["L2"]["bmd_mg_cm3"] == pytest.approx(118.0)
    assert result["bmd_l1_l2_mg_cm3"] == pytest.approx(118.0)
    assert result["category"] == "osteopenia" and result["qc"]["flags"] == []
    # label map and VOI mask on the input's own (RAS) grid
    source = nib.load(str(ct_path))
    for name in ("labels.nii.gz", "voi.nii.gz"):
        img = nib.load(str(case / name))
        assert img.shape == source.shape and np.allclose(img.affine, source.affine)
    truth = np.asarray(nib.load(str(lab_path)).dataobj)
    labels = np.asarray(nib.load(str(case / "labels.nii.gz")).dataobj)
    assert np.array_equal(labels, truth)
    voi = np.asarray(nib.load(str(case / "voi.nii.gz")).dataobj)
    assert set(np.unique(voi)) == {0, 19, 20, 21}
    assert np.all(truth[voi > 0] == voi[voi > 0])
    columns, rows = _rows(out)
    assert columns == CONTRACT_COLUMNS
    row = rows["spine"]
    assert row["status"] == "ok" and row["category"] == "osteopenia" and row["levels_used"] == "L1+L2"
    assert float(row["L1_mean_hu"]) == pytest.approx(150.0) and float(row["T12_bmd_mg_cm3"]) == 118.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 1, "no_measurement": 0, "failed": 0, "skipped": 0}
    assert manifest["cases"][0]["calibration_id"].startswith("cal-")
    assert manifest["versions"]["numpy"] == np.__version__


def test_rerun_skips_finished_cases_and_a_failed_case_does_not_stop_the_run(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    out = tmp_path / "out"
    args = ["-o", str(out), "--calibration", str(cal), "--label-scheme", "verse", "--no-progress"]
    assert main(["measure", str(ct_path), "--labels", str(lab_path), *args]) == 0
    stamp = (out / "spine" / "result.json").stat().st_mtime_ns
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file")
    capsys.readouterr()
    rc = main(["measure", str(broken), str(ct_path), "--labels", str(lab_path), "--labels", str(lab_path),
               *args])
    assert rc == 1                                   # a case failed ...
    text = capsys.readouterr().out
    assert "broken: FAILED" in text and "spine: skipped" in text
    assert (out / "spine" / "result.json").stat().st_mtime_ns == stamp
    _, rows = _rows(out)
    assert rows["spine"]["status"] == "ok" and rows["spine"]["category"] == "osteopenia"   # finished status kept
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"]
    assert "error" in json.loads((out / "broken" / "error.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 0, "no_measurement": 0, "failed": 1, "skipped": 1}
    assert [r["skipped"] for r in manifest["cases"]] == [False, True]
    assert len(manifest["history"]) == 1
    # ... and --overwrite measures again
    assert main(["measure", str(ct_path), "--labels", str(lab_path), "--overwrite", *args]) == 0
    assert (out / "spine" / "result.json").stat().st_mtime_ns != stamp
    _, rows = _rows(out)
    assert set(rows) == {"spine", "broken"}          # earlier rows are kept


def test_an_interrupted_write_leaves_no_partial_file(case_files, tmp_path, capsys, monkeypatch):
    """The QC picture fails half-way: the case folder holds only error.json (no partial output); a re-run
    measures."""
    import bmdqct.plotting.qc

    class Broken:
        def savefig(self, path, **kwargs):
            with open(path, "wb") as fh:
                fh.write(b"half a PNG")
            raise OSError("disk full")

    ct_path, lab_path, cal = case_files
    out = tmp_path / "out"
    args = ["measure", str(ct_path), "-o", str(out), "--labels", str(lab_path), "--label-scheme", "verse",
            "--calibration", str(cal), "--no-progress"]
    monkeypatch.setattr(bmdqct.plotting.qc, "plot_qc", lambda result, volume: Broken())
    assert main(args) == 1
    case = out / "spine"
    assert sorted(p.name for p in case.iterdir()) == ["error.json"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "results.csv", "spine"]   # no staging left
    assert "disk full" in json.loads((case / "error.json").read_text())["error"]
    _, rows = _rows(out)
    assert rows["spine"]["status"] == "failed" and "disk full" in rows["spine"]["error"]
    monkeypatch.undo()
    assert main(args) == 0
    assert sorted(p.name for p in case.iterdir()) == ["labels.nii.gz", "qc.png", "result.json", "voi.nii.gz"]
    _, rows = _rows(out)
    assert rows["spine"]["status"] == "ok"


def test_hu_only_without_calibration(case_files, tmp_path, capsys):
    ct_path, lab_path, _ = case_files
    out = tmp_path / "out"
    assert main(["measure", str(ct_path), "-o", str(out), "--labels", str(lab_path), "--label-scheme",
                 "verse", "--no-progress", "--no-qc-picture"]) == 0
    assert "150.0 HU (no calibration)" in capsys.readouterr().out
    _, rows = _rows(out)
    assert rows["spine"]["category"] == "" and rows["spine"]["bmd_l1_l2_mg_cm3"] == ""
    assert rows["spine"]["flags"] == "no_calibration"
    assert not (out / "spine" / "qc.png").exists()


def test_calibration_file_with_a_missing_field(case_files, tmp_path, capsys):
    ct_path, lab_path, _ = case_files
    bad = tmp_path / "bad.json"
    bad.write_text('{"intercept": -2.0}')
    rc = main(["measure", str(ct_path), "-o", str(tmp_path / "out"), "--labels", str(lab_path),
               "--calibration", str(bad), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "slope" in err and "bad.json" in err


def test_output_folder_not_writable(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = main(["measure", str(ct_path), "-o", str(blocker / "out"), "--labels", str(lab_path),
               "--calibration", str(cal), "--no-progress"])
    assert rc == 1
    assert "is not writable" in capsys.readouterr().err


def test_label_map_with_no_vertebra_fails_the_case(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    img = nib.load(str(lab_path))
    organs = np.where(np.asarray(img.dataobj) > 0, 100, 0).astype(np.int16)   # id 100: no vertebra in VerSe
    path = tmp_path / "organs.nii.gz"
    nib.save(nib.Nifti1Image(organs, img.affine), str(path))
    out = tmp_path / "out"
    rc = main(["measure", str(ct_path), "-o", str(out), "--labels", str(path), "--label-scheme", "verse",
               "--calibration", str(cal), "--no-progress"])
    assert rc == 1
    _, rows = _rows(out)
    assert rows["spine"]["status"] == "failed"
    assert "no vertebra" in rows["spine"]["error"] and str(path) in rows["spine"]["error"]


def test_label_map_read_with_the_wrong_scheme_names_the_file(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    out = tmp_path / "out"
    rc = main(["measure", str(ct_path), "-o", str(out), "--labels", str(lab_path), "--label-scheme", "classes",
               "--calibration", str(cal), "--no-progress"])
    assert rc == 1
    _, rows = _rows(out)
    error = rows["spine"]["error"]
    assert error.startswith(f"LabelingError: label map {lab_path} (read with label_scheme='classes'): ")
    assert "segmentation classes must be 0-3" in error and "got ids [18, 19, 20, 21]" in error


def test_four_class_map_from_bmdqct_segment(tmp_path, capsys):
    ct, cls, _ = make_spine(("T11", "T12", "L1", "L2"), spacing=(2.0, 1.5, 1.5))
    ct_path = write_nifti(ct, tmp_path / "scan.nii.gz")
    cls_path = write_nifti(LabelVolume(cls.labels, cls.affine), tmp_path / "classes.nii.gz")
    out = tmp_path / "out"
    assert main(["measure", str(ct_path), "-o", str(out), "--labels", str(cls_path), "--label-scheme", "classes",
                 "--no-progress", "--no-qc-picture"]) == 0
    _, rows = _rows(out)
    assert rows["scan"]["levels_used"] == "L1+L2" and float(rows["scan"]["L2_mean_hu"]) == pytest.approx(150.0)


def test_calibration_store_must_be_a_folder(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    rc = main(["measure", str(ct_path), "-o", str(tmp_path / "out"), "--labels", str(lab_path),
               "--calibration-store", str(cal), "--no-progress"])
    assert rc == 1
    assert f"calibration store {cal} is not a folder" in capsys.readouterr().err


def test_label_count_must_match_inputs(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    rc = main(["measure", str(ct_path), str(ct_path), "-o", str(tmp_path / "out"), "--labels", str(lab_path)])
    assert rc == 1
    assert "one label map per INPUT" in capsys.readouterr().err


def test_missing_input_creates_no_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["measure", str(tmp_path / "nothing.nii.gz"), "-o", str(out), "--no-progress"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_fallback_needs_a_store(case_files, tmp_path, capsys):
    ct_path, lab_path, cal = case_files
    assert main(["measure", str(ct_path), "-o", str(tmp_path / "out"), "--labels", str(lab_path),
                 "--calibration", str(cal), "--fallback", "nearest"]) == 1
    assert "--fallback applies to --calibration-store only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- with the shipped model


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    """The demo (shipped weights, phantom calibration) measures the synthetic subject's true BMD.

    The truth is the generator's own: the demo's subject re-rendered with the demo's settings
    (seed 2020, the default of ``bmdqct demo --seed``). Tolerances: the phantom calibration fits
    five rods of ~1,600 voxels each (rod means to ~0.3 HU), so its line is the scan's true HU line
    to 0.5 % in slope and 1 mg/cm3 in intercept; the BMD of a level is within 6 mg/cm3 of the truth
    for the reasons of test_measure.py::test_synthetic_scan_bmd_and_exclusions (VOI noise of ~1.4
    mg/cm3, the basivertebral vein up to 4 mg/cm3), which holds here because the calibration adds
    well under 1 mg/cm3 at 140 mg/cm3 (the demo run measured T12, L1, L2 at -2.8, -2.0, -1.5).
    """
    from bmdqct.classify import classify_bmd
    from bmdqct.synthetic import synthesize_ldct

    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "bmdqct report" in text and "synthetic truth" in text
    result = json.loads((out / "demo_subject" / "result.json").read_text())
    assert result["provenance"]["model_id"] and result["provenance"]["calibration_id"].startswith("cal-")
    for name in ("labels.nii.gz", "voi.nii.gz", "qc.png"):
        assert (out / "demo_subject" / name).exists()
    _, rows = _rows(out)
    assert rows["demo_subject"]["status"] == "ok"
    assert len(list((out / "calibrations").rglob("*.json"))) >= 1

    scanner = {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 64", "device_serial": "SYN-0001",
               "station": "SYNTH1"}
    _, truth = synthesize_ldct(2020, kvp=120.0, scanner=scanner, study_date="2024-03-15", cranial="T6",
                               caudal="L3", pixel_mm=1.25, slice_mm=2.0, shape=(288, 288))
    true_slope, true_intercept = 1.0 / truth.b_hu_per_mg_cm3, -truth.a_hu / truth.b_hu_per_mg_cm3
    assert result["calibration"]["slope"] == pytest.approx(true_slope, rel=0.005)
    assert result["calibration"]["intercept"] == pytest.approx(true_intercept, abs=1.0)
    measured = {name: level["bmd_mg_cm3"] for name, level in result["levels"].items()
                if level["status"] == "measured"}
    assert len(measured) >= 2, result["levels"]
    for name, bmd in measured.items():
        assert bmd == pytest.approx(truth.density_mg_cm3[name], abs=6.0), name
    used = result["levels_used"]
    assert len(used) == 2 and set(used) <= set(measured)
    true_mean = float(np.mean([truth.density_mg_cm3[name] for name in used]))
    assert result["bmd_l1_l2_mg_cm3"] == pytest.approx(np.mean([measured[n] for n in used]), abs=1e-6)
    assert result["bmd_l1_l2_mg_cm3"] == pytest.approx(true_mean, abs=6.0)
    # the true mean (139 mg/cm3 over T12 and L1, 146.5 over L1 and L2) lies more than the 6 mg/cm3
    # tolerance above the ACR limit of 120, so the category is the true one
    assert result["category"] == classify_bmd(true_mean).value


@pytest.mark.slow
def test_no_spine_in_view_fails_the_case(tmp_path):
    """A phantom scan holds no spine: the case fails with the model's or the labelling's error."""
    from bmdqct.synthetic import synthesize_phantom_scan

    scan, _ = synthesize_phantom_scan("mindways-model3-ct", 1, shape=(128, 128), pixel_mm=2.0, n_slices=24)
    path = write_nifti(scan, tmp_path / "phantom.nii.gz")
    out = tmp_path / "out"
    assert main(["measure", str(path), "-o", str(out), "--no-progress"]) == 1
    _, rows = _rows(out)
    assert rows["phantom"]["status"] == "failed"
    assert "no vertebral body" in rows["phantom"]["error"]


def test_contrast_correction_flag_reaches_measure(case_files, tmp_path, capsys, monkeypatch):
    """``--contrast-correction`` passes ``contrast_correction=True`` to measure(); without it the keyword is
    not passed at all (so measure's own default applies)."""
    import inspect
    import sys

    module = sys.modules["bmdqct.measure"]
    real = module.measure
    accepts = "contrast_correction" in inspect.signature(real).parameters
    seen = []

    def spy(ct, **kwargs):
        seen.append(dict(kwargs))
        if not accepts:    # measure() without the keyword yet: measure as before
            kwargs.pop("contrast_correction", None)
        return real(ct, **kwargs)

    monkeypatch.setattr(module, "measure", spy)
    ct_path, lab_path, cal = case_files
    args = ["measure", str(ct_path), "--labels", str(lab_path), "--label-scheme", "verse", "--calibration",
            str(cal), "--no-progress", "--no-qc-picture"]
    assert main([*args, "-o", str(tmp_path / "plain")]) == 0
    assert main([*args, "-o", str(tmp_path / "corrected"), "--contrast-correction"]) == 0
    assert ["contrast_correction" in k for k in seen] == [False, True]
    assert seen[1]["contrast_correction"] is True
    options = [json.loads((tmp_path / n / "manifest.json").read_text())["options"] for n in ("plain", "corrected")]
    assert [o["contrast_correction"] for o in options] == [False, True]
    # a non-contrast scan: the same BMD either way
    bmd = [json.loads((tmp_path / n / "spine" / "result.json").read_text())["bmd_l1_l2_mg_cm3"]
           for n in ("plain", "corrected")]
    assert bmd == [pytest.approx(118.0)] * 2
