"""The QC flag glossary covers every code the package can emit, and ``bmdqct flags`` prints it."""

import json
import re
from pathlib import Path

import pytest

import bmdqct
from bmdqct.cli import main
from bmdqct.qc import FLAG_GLOSSARY, explain

PACKAGE = Path(bmdqct.__file__).parent
# QCFlag("code", ...) literals, and the (code, text) exclusion reasons measure.py turns into flags
_PATTERNS = (re.compile(r'QCFlag\(\s*"([a-z0-9_]+)"'), re.compile(r'reasons\.append\(\(\s*"([a-z0-9_]+)"'))


def emitted_codes() -> set[str]:
    codes = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "qc.py":
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in _PATTERNS:
            codes.update(pattern.findall(text))
    return codes


def test_scan_finds_known_codes():
    # guards the scan itself: a broken pattern would make the next test pass vacuously
    assert {"partial", "split", "level_uncertain", "class_merged", "height_loss"} <= emitted_codes()


def test_every_emitted_code_is_in_the_glossary():
    missing = emitted_codes() - set(FLAG_GLOSSARY)
    assert not missing, f"add these codes to FLAG_GLOSSARY in bmdqct/qc.py: {sorted(missing)}"


def test_glossary_entries_are_sentences():
    for code, (meaning, action) in FLAG_GLOSSARY.items():
        assert re.fullmatch(r"[a-z0-9_]+", code)
        assert len(meaning) > 15 and len(action) > 15, code


def test_explain_unknown_code():
    with pytest.raises(KeyError, match="bmdqct flags"):
        explain("not_a_code")


def test_cli_flags_lists_every_code(capsys):
    assert main(["flags"]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert listed == sorted(FLAG_GLOSSARY)
    assert out.count("meaning:") == out.count("to do:") == len(FLAG_GLOSSARY)


def test_cli_flags_explains_report_codes(capsys):
    # the flags column of results.csv writes code:level
    assert main(["flags", "partial:T12", "split", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["partial", "split"]
    assert data["partial"]["meaning"] == FLAG_GLOSSARY["partial"][0]
    assert data["split"]["action"] == FLAG_GLOSSARY["split"][1]


def test_cli_flags_unknown_code(capsys):
    assert main(["flags", "nonsense"]) == 1
    assert "unknown QC flag code(s) nonsense" in capsys.readouterr().err
