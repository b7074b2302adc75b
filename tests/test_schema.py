"""Tests of bmdqct.schema: the JSON Schema of result.json, validate_result and read_result."""

import configparser
import copy
import fnmatch
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from bmdqct.calibration import Calibration
from bmdqct.measure import RESULT_FORMAT, measure
from bmdqct.schema import (
    CURRENT_FORMAT,
    RESULT_FORMATS,
    ResultSchemaError,
    read_result,
    result_example,
    result_schema,
    validate_result,
)
from bmdqct.volume import CTVolume, LabelVolume

PROJECT_ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def two_body_result(*, calibration=True, cut_l2=False):
    """measure() on two elliptic-cylinder bodies of 130 HU (L1 above L2; 1.5 mm slices)."""
    k, j, i = np.mgrid[:40, :40, :50]
    section = ((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1
    l1 = section & (k >= 22) & (k < 38)
    l2 = section & (k >= (0 if cut_l2 else 2)) & (k < 18)
    ct = CTVolume.from_spacing(np.where(l1 | l2, 130.0, 0.0), (1.5, 1, 1))
    labels = LabelVolume.from_spacing(l1 * 20 + l2 * 21, (1.5, 1, 1), names={"L1": 20, "L2": 21})
    cal = Calibration(slope=0.8, intercept=0.0, kvp=120) if calibration else None
    return measure(ct, labels=labels, calibration=cal, case="two_bodies")


@pytest.fixture(scope="module")
def document():
    return two_body_result().to_dict()


def test_current_format_is_the_one_measure_writes():
    assert RESULT_FORMAT == CURRENT_FORMAT == list(RESULT_FORMATS)[-1]


def test_schemas_are_valid_draft_2020_12():
    import jsonschema

    for fmt in RESULT_FORMATS:
        schema = result_schema(fmt)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["format"] == {"const": fmt}


def test_format_1_schema_is_format_2_without_probability():
    one, two = result_schema("bmdqct-result/1"), result_schema("bmdqct-result/2")
    info = two["$defs"]["level_info"]
    assert info["required"][-1] == "probability"
    del info["properties"]["probability"]
    info["required"].remove("probability")
    # format 2 also names the frame of the VOI and level centres and gives the VOI's voxel indices
    # (optional keys, so format-2 documents written before them stay valid)
    voi, level = two["$defs"]["voi"], two["$defs"]["level_measurement"]
    assert voi["properties"].pop("frame") == level["properties"].pop("frame")
    assert voi["properties"].pop("center_index")["maxItems"] == 3
    assert "frame" not in voi["required"] and "center_index" not in voi["required"]
    for key in ("$id", "title", "description", "properties"):
        one.pop(key), two.pop(key)
    assert one == two
    p1, p2 = result_schema("bmdqct-result/1")["properties"], result_schema("bmdqct-result/2")["properties"]
    assert {k: v for k, v in p1.items() if k != "format"} == {k: v for k, v in p2.items() if k != "format"}


def test_measured_results_validate(tmp_path, document):
    assert document["levels"]["L1"]["status"] == "measured" and document["calibration"]["kvp"] == 120.0
    assert validate_result(document) is document
    hu_only = two_body_result(calibration=False, cut_l2=True)
    assert hu_only.levels["L2"].status == "partial" and hu_only.levels["T12"].status == "missing"
    path = hu_only.to_json(tmp_path / "result.json")
    data = validate_result(path)
    assert data["calibration"] is None and data["category"] is None
    assert read_result(path) == data == json.loads(path.read_text())
    for fmt in RESULT_FORMATS:
        validate_result(result_example(fmt))


def test_vois_state_their_frame_and_voxel_indices(document):
    for name, voi in document["vois"].items():
        assert voi["frame"] == "LPS"
        # the two bodies' grid: 1.5 mm slices along +z from the origin, 1 mm along +y and +x
        i, j, k = voi["center_index"]
        assert voi["center_mm"] == pytest.approx([k * 1.0, j * 1.0, i * 1.5])
        assert voi["center_index"] == pytest.approx(voi["center_vox"])
        assert i == voi["middle_slice"]


def _broken(document, edit):
    data = copy.deepcopy(document)
    edit(data)
    return data


@pytest.mark.parametrize("edit, path, problem", [
    (lambda d: d["levels"]["L1"].update(mean_hu="130"), r"\$\.levels\.L1\.mean_hu", "'130' is not of type"),
    (lambda d: d["levels"]["T12"].update(status="unknown"), r"\$\.levels\.T12\.status",
     "'unknown' is not one of"),
    (lambda d: d.update(category="very low"), r"\$\.category", "'very low' is not one of"),
    (lambda d: d["qc"]["labelling"]["L1"].pop("probability"), r"\$\.qc\.labelling\.L1",
     "'probability' is a required property"),
    (lambda d: d.pop("diagnosis"), r"\$:", "'diagnosis' is a required property"),
    (lambda d: d.update(bmd_mg_cm3=100.0), r"\$:", r"\('bmd_mg_cm3' was unexpected\)"),
    (lambda d: d["vois"]["L1"].update(affine=[]), r"\$\.vois\.L1", "'affine' was unexpected"),
    (lambda d: d["vois"]["L1"].update(frame="RAS"), r"\$\.vois\.L1\.frame", "'LPS' was expected"),
    (lambda d: d["vois"]["L1"].update(center_index=[1.0, 2.0]), r"\$\.vois\.L1\.center_index",
     "is too short"),
    (lambda d: d["levels"].update(L7=d["levels"]["L1"]), r"\$\.levels", "'L7' does not match"),
    (lambda d: d["qc"]["flags"].append("Partial L1"), r"\$\.qc\.flags\[0\]", "does not match"),
    (lambda d: d["levels"]["L1"].update(mean_hu=None), r"\$\.levels\.L1\.mean_hu", "None is not of type"),
    (lambda d: d["levels"]["L1"].pop("frame"), r"\$\.levels\.L1", "'frame' is a required property"),
    (lambda d: d["levels"]["L1"].update(frame="RAS"), r"\$\.levels\.L1\.frame", "'LPS' was expected"),
    (lambda d: d["levels"]["L1"].update(mean_HU=130.0), r"\$\.levels\.L1", "'mean_HU' was unexpected"),
    (lambda d: d["levels"]["L1"].pop("hu_mean"), r"\$\.levels\.L1", "'hu_mean' is a required property"),
    (lambda d: d["levels"]["T12"].update(reason=""), r"\$\.levels\.T12\.reason", "should be non-empty"),
    (lambda d: d["calibration"].update(method="guess"), r"\$\.calibration", "'guess' is not one of"),
    (lambda d: d["qc"]["labelling"]["L1"].update(probability=1.5), r"\$\.qc\.labelling\.L1\.probability",
     "1.5 is greater than the maximum of 1"),
])
def test_a_broken_document_is_refused_with_its_json_path(tmp_path, document, edit, path, problem):
    data = _broken(document, edit)
    with pytest.raises(ResultSchemaError, match="result document: at " + path) as err:
        validate_result(data)
    assert err.match(problem)
    file = tmp_path / "broken.json"            # not result.json: the conftest check would fail the test
    file.write_text(json.dumps(data))
    with pytest.raises(ResultSchemaError, match=f"result file {file}: at {path}.*bmdqct-result/3"):
        validate_result(file)


def test_free_form_metadata_is_accepted(document):
    data = copy.deepcopy(document)
    data["provenance"]["scan"].update(kvp=120, manufacturer="ACME", extra_tag={"any": [1, "x"]})
    data["provenance"]["versions"]["tensorflow"] = None
    data["calibration"]["details"] = {"rods": [{"label": "A", "hu": 10.0}]}
    data["calibration"]["selection"] = {"rule": "latest-before", "days_before": 3}
    assert validate_result(data) is data


def test_the_contrast_flag_carries_the_phase_and_other_flags_a_level():
    """bmdqct.qc's glossary: the level of a 'contrast' flag is the contrast phase."""
    data = result_example()
    data["qc"]["flags"].append("contrast:arterial")
    data["qc"]["details"].append({"code": "contrast", "level": "arterial", "message": "enhanced"})
    data["provenance"]["contrast"] = {"phase": "arterial", "contrast": True, "offset_hu": 20.0,
                                      "correction_requested": True, "correction_hu": 20.0, "aorta_hu": 260.0}
    assert validate_result(data) is data
    for edit, path in (
            (lambda d: d["qc"]["flags"].append("partial:arterial"), r"\$\.qc\.flags\[2\]"),
            (lambda d: d["qc"]["details"][1].update(level="L1"), r"\$\.qc\.details\[1\]\.level"),
            (lambda d: d["qc"]["details"][0].update(level="arterial"), r"\$\.qc\.details\[0\]\.level"),
            (lambda d: d["provenance"]["contrast"].update(phase="venous"), r"\$\.provenance\.contrast\.phase"),
            (lambda d: d["provenance"]["contrast"].pop("correction_hu"), r"\$\.provenance\.contrast")):
        with pytest.raises(ResultSchemaError, match="at " + path):
            validate_result(_broken(data, edit))


def test_schema_contrast_phases_are_those_of_bmdqct_contrast():
    contrast = pytest.importorskip("bmdqct.contrast", reason="contrast detection not in this checkout")
    defs = result_schema()["$defs"]
    assert defs["contrast"]["properties"]["phase"]["enum"] == list(contrast.PHASES)
    assert defs["flag_detail"]["allOf"][0]["then"]["properties"]["level"]["enum"] == list(contrast.CONTRAST_PHASES)


#: A format-2 result.json as bmdqct wrote it before format 3 (written by hand, kept as it was): L1 measured,
#: T12 missing, a VOI without frame (written before VOIs stated it), contrast provenance with hu_offset.
FORMAT_2_RESULT = {
    "format": "bmdqct-result/2", "case": "old",
    "levels": {
        "T12": {"level": "T12", "status": "missing", "hu_mean": None, "hu_median": None, "hu_sd": None,
                "n_voxels": 0, "volume_mm3": 0.0, "center_mm": None, "semi_axis_ap_mm": None,
                "semi_axis_lr_mm": None, "covered_height_mm": None, "bmd_mg_cm3": None, "height_mm": None,
                "confidence": None, "reason": "T12 is not in the labels", "flags": []},
        "L1": {"level": "L1", "status": "measured", "hu_mean": 140.5, "hu_median": 141.0, "hu_sd": 12.25,
               "n_voxels": 2000, "volume_mm3": 2000.0, "center_mm": [1.0, 2.0, 3.0], "semi_axis_ap_mm": 7.0,
               "semi_axis_lr_mm": 10.0, "covered_height_mm": 9.0, "bmd_mg_cm3": 112.4, "height_mm": 24.0,
               "confidence": 0.9, "reason": "", "flags": []}},
    "bmd_l1_l2_mg_cm3": 112.4, "hu_l1_l2": 140.5, "category": "normal", "levels_used": ["L1"],
    "diagnosis": {"category": "normal", "bmd_mg_cm3": 112.4, "levels_used": ["L1"], "flags": ["single_level"],
                  "reason": "L1 only"},
    "qc": {"flags": ["single_level"], "details": [{"code": "single_level", "level": None, "message": "L1 only"}],
           "labelling": {}, "rib_check": None},
    "vois": {"L1": {"level": "L1", "center_mm": [1.0, 2.0, 3.0], "center_vox": [3.0, 2.0, 1.0],
                    "semi_axis_ap_mm": 7.0, "semi_axis_lr_mm": 10.0, "height_mm": 9.0, "covered_height_mm": 9.0,
                    "slice_range": [2, 4], "middle_slice": 3, "section_area_mm2": 700.0, "longest_row_mm": 36.0,
                    "scale": 1.0, "n_voxels": 2000, "volume_mm3": 2000.0, "flags": []}},
    "calibration": None,
    "provenance": {
        "bmdqct_version": "0.1.0", "created": "2024-05-02T10:00:00+00:00", "python": "3.11.7", "versions": {},
        "input": "old.nii.gz", "scan": {}, "grid": {"shape": [8, 40, 40], "spacing_mm": [1.0, 1.0, 1.0],
                                                   "orientation": "SPL"},
        "model_id": None, "labels": "LabelVolume", "calibration_id": None, "calibration_source": None,
        "voi_protocol": {"area_fraction": 0.3, "ap_fraction_of_row": 0.2, "height_mm": 9.0, "shrink_step": 0.95,
                         "min_scale": 0.5, "margin_mm": 0.0},
        "thresholds_mg_cm3": [80.0, 120.0], "convention": "acr",
        "contrast": {"phase": "none", "contrast": False, "hu_offset": None, "correction_requested": False,
                     "correction_hu": None},
        "timings_s": {"total_s": 0.1}},
}


def _write_old(tmp_path, document) -> tuple:
    """(path, bytes) of `document` written as tmp_path/old/result.json."""
    path = tmp_path / "old" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    return path, path.read_bytes()


def test_read_result_upgrades_a_format_2_file(tmp_path):
    path, before = _write_old(tmp_path, FORMAT_2_RESULT)
    new = read_result(path)
    assert new["format"] == "bmdqct-result/3"
    l1, t12 = new["levels"]["L1"], new["levels"]["T12"]
    assert (l1["mean_hu"], l1["median_hu"], l1["sd_hu"]) == (140.5, 141.0, 12.25)
    assert (t12["mean_hu"], t12["median_hu"], t12["sd_hu"]) == (None, None, None)
    # the format-2 names stay as deprecated copies, for readers of format 2
    assert (l1["hu_mean"], l1["hu_median"], l1["hu_sd"]) == (140.5, 141.0, 12.25)
    assert l1["frame"] == t12["frame"] == new["vois"]["L1"]["frame"] == "LPS"
    assert new["mean_hu_l1_l2"] == new["hu_l1_l2"] == 140.5
    assert new["provenance"]["contrast"]["offset_hu"] is None and "hu_offset" not in new["provenance"]["contrast"]
    # nothing else changes
    assert {k: v for k, v in new.items() if k not in ("format", "levels", "vois", "mean_hu_l1_l2", "hu_l1_l2",
                                                         "provenance")} \
        == {k: v for k, v in FORMAT_2_RESULT.items() if k not in ("format", "levels", "vois", "hu_l1_l2", "provenance")}
    assert path.read_bytes() == before           # the file is not rewritten
    assert validate_result(FORMAT_2_RESULT) is FORMAT_2_RESULT   # still a valid format-2 document
    with pytest.raises(ResultSchemaError, match=r"at \$: 'mean_hu_l1_l2' is a required property"):
        validate_result({**FORMAT_2_RESULT, "format": "bmdqct-result/3"})


def test_every_old_format_has_an_upgrade(tmp_path):
    for fmt in RESULT_FORMATS:
        path = tmp_path / f"{fmt.replace('/', '-')}.json"
        path.write_text(json.dumps(result_example(fmt)))
        assert read_result(path) == result_example(), fmt


def test_format_3_schema_is_format_2_with_the_unit_last_and_a_required_frame():
    two, three = result_schema("bmdqct-result/2"), result_schema("bmdqct-result/3")
    renamed = {"hu_mean": "mean_hu", "hu_median": "median_hu", "hu_sd": "sd_hu", "hu_l1_l2": "mean_hu_l1_l2",
               "hu_offset": "offset_hu"}
    text = json.dumps(two)
    for old, new in renamed.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    two = json.loads(text)
    level, voi = three["$defs"]["level_measurement"], three["$defs"]["voi"]
    assert "frame" in level["required"] and "frame" in voi["required"] and "center_index" not in voi["required"]
    assert "LPS" in level["properties"]["center_mm"]["description"]
    level["required"].remove("frame"), voi["required"].remove("frame")
    # the deprecated copies under the format-2 names: the same types, required too
    for old, new in (("hu_mean", "mean_hu"), ("hu_median", "median_hu"), ("hu_sd", "sd_hu")):
        copy_of = level["properties"].pop(old)
        assert "Deprecated copy of " + new in copy_of.pop("description")
        assert copy_of == {k: v for k, v in level["properties"][new].items() if k != "description"}
        level["required"].remove(old)
    assert "Deprecated copy" in three["properties"].pop("hu_l1_l2")["description"]
    three["required"].remove("hu_l1_l2")
    for schema in (two, three):
        for key in ("$id", "title", "description"):
            schema.pop(key)
        schema["properties"].pop("format")
        schema["properties"]["mean_hu_l1_l2"].pop("description", None)
        schema["$defs"]["contrast"]["properties"]["offset_hu"].pop("description", None)
        for key in ("mean_hu", "median_hu", "sd_hu", "frame", "center_mm"):
            schema["$defs"]["level_measurement"]["properties"][key].pop("description", None)
    assert two == three


def _renamed_to_format_2(document):
    """A format-3 document under its format-2 names (no frame on the level entries)."""
    old = copy.deepcopy(document)
    old["format"] = "bmdqct-result/2"
    old["hu_l1_l2"] = old.pop("mean_hu_l1_l2")
    for entry in old["levels"].values():
        for key in ("mean_hu", "median_hu", "sd_hu"):
            entry["hu_" + key.split("_")[0]] = entry.pop(key)
        entry.pop("frame")
    old["provenance"]["contrast"]["hu_offset"] = old["provenance"]["contrast"].pop("offset_hu")
    return old


def _drop_format_2_frame_keys(data):
    for entry in (*data["vois"].values(), *data["levels"].values()):
        entry.pop("frame", None)
    for voi in data["vois"].values():
        voi.pop("center_index", None)


def test_read_result_upgrades_format_1(tmp_path, document):
    old = _renamed_to_format_2(document)
    old["format"] = "bmdqct-result/1"
    for entry in old["qc"]["labelling"].values():
        del entry["probability"]
    _drop_format_2_frame_keys(old)        # format 1 had no frame and no center_index
    path, before = _write_old(tmp_path, old)
    new = read_result(path)
    assert new["format"] == "bmdqct-result/3"
    assert [e["probability"] for e in new["qc"]["labelling"].values()] == [None, None]
    expected = copy.deepcopy(document)
    for entry in expected["qc"]["labelling"].values():
        entry["probability"] = None
    for voi in expected["vois"].values():
        voi.pop("center_index")           # optional: the upgrade does not invent it (the frame it restores)
    assert new == expected
    assert path.read_bytes() == before           # the file is not rewritten
    # a format-1 file that already has probability breaks the format-1 schema
    wrong = path.with_name("wrong.json")
    wrong.write_text(json.dumps({**old, "qc": document["qc"]}))
    with pytest.raises(ResultSchemaError, match=r"at \$\.qc\.labelling\.L[12]: .*'probability' was unexpected"):
        read_result(wrong)


@pytest.mark.parametrize("fmt, match", [
    ("bmdqct-result/4", r"'format' is 'bmdqct-result/4', expected one of \['bmdqct-result/1', "
                        r"'bmdqct-result/2', 'bmdqct-result/3'\]; a result written by a newer bmdqct\?"),
    ("bmdqct-calibration", r"'format' is 'bmdqct-calibration', expected one of"),
    (None, r"'format' is None, expected one of"),
])
def test_unknown_formats_are_refused(tmp_path, document, fmt, match):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({**document, "format": fmt}))
    with pytest.raises(ResultSchemaError, match=f"result file {path}: " + match):
        read_result(path)
    with pytest.raises(ResultSchemaError, match=match):
        validate_result({**document, "format": fmt})


def test_unreadable_files_and_wrong_types_are_refused(tmp_path, document):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ResultSchemaError, match=f"result file {missing} cannot be read"):
        read_result(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultSchemaError, match=f"result file {bad} is not JSON"):
        validate_result(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ResultSchemaError, match="expected a JSON object with a 'format' key, got list"):
        read_result(bad)
    with pytest.raises(TypeError, match="use validate_result for a dictionary"):
        read_result(document)
    with pytest.raises(TypeError, match="expected a result dictionary or the path"):
        validate_result(42)
    with pytest.raises(ResultSchemaError, match="expected one of"):
        result_schema("bmdqct-result/0")
    # an explicit format: a format-3 document is not a format-1 one
    with pytest.raises(ResultSchemaError, match=r"at \$.*more problem.*expected the layout of bmdqct-result/1"):
        validate_result(document, format="bmdqct-result/1")
    with pytest.raises(ResultSchemaError, match=r"at \$\.format: 'bmdqct-result/2' was expected"):
        validate_result(FORMAT_2_RESULT | {"format": "bmdqct-result/3"}, format="bmdqct-result/2")


def test_schema_files_ship_with_the_package():
    shipped = sorted(p.name for p in resources.files("bmdqct").joinpath("schemas").iterdir()
                     if p.name.endswith(".json"))
    assert shipped == sorted(RESULT_FORMATS.values())
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / "setup.cfg")
    patterns = config["options.package_data"]["bmdqct"].split()
    for name in shipped:
        assert any(fnmatch.fnmatch(f"schemas/{name}", p) for p in patterns), (name, patterns)


def test_conftest_validates_result_json_under_tmp_path(pytester):
    """The autouse fixture of tests/conftest.py fails a test whose tmp_path holds a broken result.json."""
    pytester.makeconftest((PROJECT_ROOT / "tests" / "conftest.py").read_text())
    good = json.dumps(result_example())
    bad = json.dumps({**result_example(), "category": "weak"})
    pytester.makepyfile(f"""
        def test_good(tmp_path):
            (tmp_path / "case").mkdir()
            (tmp_path / "case" / "result.json").write_text({good!r})

        def test_bad(tmp_path):
            (tmp_path / "case").mkdir()
            (tmp_path / "case" / "result.json").write_text({bad!r})

        def test_no_tmp_path():
            pass
    """)
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    run.assert_outcomes(passed=3, errors=1)
    run.stdout.fnmatch_lines(["*breaks the result schema*", "*case/result.json: at $.category: 'weak' is not one of*"])
