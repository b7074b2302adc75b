"""Calibration JSON files as users write them (issue 12): extra metadata kept, absurd slopes refused."""

from __future__ import annotations

import json

import pytest

from bmdqct.calibration import read_calibration
from bmdqct.errors import CalibrationError


def test_extra_metadata_fields_are_kept(tmp_path):
    path = tmp_path / "cal.json"
    extra = {"date": "2024-05-01", "scanner": "room 3", "note": "after tube change"}
    path.write_text(json.dumps({"slope": 0.85, "intercept": -2.5, **extra}))
    cal = read_calibration(path)
    assert (cal.slope, cal.intercept) == (0.85, -2.5)
    assert cal.to_dict()["selection"]["file_metadata"] == extra
    # user metadata is not content: the id equals that of the bare line
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"slope": 0.85, "intercept": -2.5}))
    assert read_calibration(bare).id == cal.id


def test_misspelt_known_field_is_refused(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"slope": 0.85, "intercept": -2.5, "kVp": 120}))
    with pytest.raises(CalibrationError, match=r"cal\.json: unknown field\(s\) \['kVp'\]; did you mean \['kvp'\]"):
        read_calibration(path)


@pytest.mark.parametrize("slope", [50.0, 0.01])
def test_absurd_slope_is_refused(tmp_path, slope):
    path = tmp_path / "absurd.json"
    path.write_text(json.dumps({"slope": slope, "intercept": 0.0}))
    with pytest.raises(CalibrationError, match=r"absurd\.json: slope .* far outside any CT scanner"):
        read_calibration(path)
