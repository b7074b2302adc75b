"""The new user's path of issue 13, scripted: what a researcher types after reading README and --help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bmdqct.cli import main
from bmdqct.qc import FLAG_GLOSSARY

pytestmark = pytest.mark.subprocess   # run first (tests/conftest.py)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# what TensorFlow, absl and CUDA print at start-up (glog/absl prefixes, and the known sentences)
BMDQCT = (sys.executable, "-c", "import sys; from bmdqct.cli import main; sys.exit(main(sys.argv[1:]))")
TF_NOISE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit|cuda drivers|oneDNN|tensorflow/", re.M)


def _synth_case(tmp_path: Path) -> Path:
    out = tmp_path / "synth"
    assert main(["synth", "-n", "1", "--coarse", "--cranial", "T10", "--caudal", "L3", "-o", str(out)]) == 0
    return out


@pytest.mark.slow
def test_no_tensorflow_log_lines_at_default_verbosity(tmp_path):
    """A command that loads TensorFlow and runs the model prints none of its start-up logging."""
    case = _synth_case(tmp_path) / "case_000" / "ct.nii.gz"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    run = subprocess.run([*BMDQCT, "segment", str(case), "-o", str(tmp_path / "seg")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "seg").is_dir()
    assert not TF_NOISE.search(run.stderr), run.stderr
    # -vv shows them, as DEBUG messages of bmdqct.segment
    run = subprocess.run([*BMDQCT, "-vv", "segment", str(case), "-o",
                          str(tmp_path / "seg2")], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert "DEBUG bmdqct.segment._tf_quiet: tensorflow:" in run.stderr


def test_flags_explains_every_code(capsys):
    assert main(["flags"]) == 0
    out = capsys.readouterr().out
    for code, (meaning, action) in FLAG_GLOSSARY.items():
        assert f"\n{code}\n" in f"\n{out}", code
    assert out.count("to do:") == len(FLAG_GLOSSARY)


def test_phantom_scan_to_calibration_store(tmp_path, capsys):
    """synth --phantom -> calibrate -> a calibration in the store that recovers the synthetic bone line."""
    import json

    from bmdqct.calibration import read_store
    from bmdqct.synthetic import example_certificate

    out = tmp_path / "phantom"
    assert main(["synth", "--phantom", "mindways-model3-ct", "--seed", "3", "-o", str(out)]) == 0
    assert (out / "certificate.json").is_file() and (out / "phantom_scan").is_dir()
    store = tmp_path / "store"
    assert main(["calibrate", str(out / "phantom_scan"), "--phantom", "mindways-model3-ct", "--certificate",
                 str(out / "certificate.json"), "--store", str(store)]) == 0
    (cal,) = read_store(store)
    assert cal.kvp == 120.0 and str(cal.acquisition_date) == "2024-01-15"
    assert cal.r_squared > 0.999
    capsys.readouterr()
    # the template is the certificate format calibrate reads
    assert main(["certificate-template", "mindways-model3-ct"]) == 0
    template = json.loads(capsys.readouterr().out)
    assert template == example_certificate("mindways-model3-ct").to_dict()
    # no picture written unasked
    assert main(["calibration-history", "--store", str(store)]) == 0
    assert not list(Path.cwd().glob("calibration-history*.png"))


@pytest.mark.slow
def test_synth_measure_agreement_and_stored_calibration(tmp_path, capsys):
    """synth -> measure the synth folder -> agreement on its reference, no extra flags; then the
    phantom's calibration from the store turns the same cases into BMD that agrees with the truth."""
    import pandas as pd


    cases = tmp_path / "X"
    assert main(["synth", "-n", "3", "--coarse", "--cranial", "T10", "--caudal", "L3", "-o", str(cases)]) == 0
    ours = tmp_path / "Y"
    assert main(["measure", str(cases), "-o", str(ours), "--no-progress", "--no-qc-picture"]) == 0
    rows = pd.read_csv(ours / "results.csv")
    assert sorted(rows["case"]) == ["case_000", "case_001", "case_002"]        # ids that join the reference
    # a case whose level names the decoder cannot confirm is measured nowhere and says so
    status = dict(zip(rows["case"], rows["status"]))
    assert set(status.values()) <= {"ok", "no_measurement"} and status["case_000"] == "ok"
    measured = rows[rows["status"] == "ok"]
    assert measured["L1_mean_hu"].notna().all() and rows.loc[rows["status"] != "ok", "L1_mean_hu"].isna().all()
    capsys.readouterr()
    assert main(["agreement", "--ours", str(ours / "results.csv"), "--reference", str(cases / "reference.csv"),
                 "-o", str(tmp_path / "R")]) == 0
    assert f"3 matched cases ({3 - len(measured)} not ok" in capsys.readouterr().out
    assert (tmp_path / "R" / "report.md").is_file()

    # the calibration route: a QA scan of the phantom on case_000's scanner and kVp a month before
    # it -> calibrate -> store -> measure --calibration-store, matched through the case's ct.json
    import datetime as dt
    import json

    sidecar = json.loads((cases / "case_000" / "ct.json").read_text())
    qa_date = dt.date.fromisoformat(sidecar["study_date"]) - dt.timedelta(days=30)
    phantom = tmp_path / "phantom"
    assert main(["synth", "--phantom", "mindways-model3-ct", "--seed", "3", "--kvp", str(sidecar["kvp"]),
                 "--date", qa_date.isoformat(), "--scanner", sidecar["device_serial"], "-o", str(phantom)]) == 0
    store = tmp_path / "store"
    assert main(["calibrate", str(phantom / "phantom_scan"), "--phantom", "mindways-model3-ct",
                 "--certificate", str(phantom / "certificate.json"), "--store", str(store)]) == 0
    calibrated = tmp_path / "Z"
    assert main(["measure", str(cases / "case_000"), "-o", str(calibrated), "--calibration-store", str(store),
                 "--no-progress", "--no-qc-picture"]) == 0
    row = pd.read_csv(calibrated / "results.csv").iloc[0]
    assert row["status"] == "ok" and row["case"] == "case_000"
    truth = pd.read_csv(cases / "truth.csv").set_index("case").loc["case_000"]
    # 2-mm coarse voxels and SYN-0002's own bone line (the phantom's rods see it too): 5.7 mg/cm3 off
    assert row["L1_bmd_mg_cm3"] == pytest.approx(truth["L1_bmd_mg_cm3"], abs=8.0)
