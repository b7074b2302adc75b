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
