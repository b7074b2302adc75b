"""Tests of bmdqct.classify: ACR categories, boundary conventions, level substitution."""

import json
import math

import pytest

from bmdqct.classify import (
    ACR_THRESHOLDS_MG_CM3,
    BMDCategory,
    classify_bmd,
    diagnose,
    select_levels,
)

OP, OPENIA, NORMAL = BMDCategory.OSTEOPOROSIS, BMDCategory.OSTEOPENIA, BMDCategory.NORMAL


def test_acr_thresholds_constant():
    assert ACR_THRESHOLDS_MG_CM3 == (80.0, 120.0)


@pytest.mark.parametrize("bmd, acr, virtuost", [
    (0.0, OP, OP),
    (79.999, OP, OP),
    (80.0, OPENIA, OP),            # ACR: exactly 80 is osteopenia; VirtuOst: osteoporosis
    (80.001, OPENIA, OPENIA),
    (100.0, OPENIA, OPENIA),
    (119.999, OPENIA, OPENIA),
    (120.0, OPENIA, NORMAL),       # ACR: exactly 120 is osteopenia; VirtuOst: normal
    (120.001, NORMAL, NORMAL),
    (250.0, NORMAL, NORMAL),
    (-20.0, OP, OP),
])
def test_classify_boundaries(bmd, acr, virtuost):
    assert classify_bmd(bmd) is acr
    assert classify_bmd(bmd, convention="acr") is acr
    assert classify_bmd(bmd, convention="virtuost") is virtuost


def test_classify_custom_thresholds():
    assert classify_bmd(95.0, thresholds=(100.0, 140.0)) is OP
    assert classify_bmd(140.0, thresholds=(100.0, 140.0)) is OPENIA


def test_category_is_a_json_string():
    assert json.dumps({"c": BMDCategory.NORMAL}) == '{"c": "normal"}'
    assert str(BMDCategory.OSTEOPENIA) == "osteopenia"
    assert BMDCategory("osteoporosis") is OP


@pytest.mark.parametrize("kwargs, match", [
    (dict(bmd_mg_cm3=float("nan")), "finite"),
    (dict(bmd_mg_cm3=float("inf")), "finite"),
    (dict(bmd_mg_cm3="a lot"), "must be a number"),
    (dict(bmd_mg_cm3=100.0, thresholds=(120.0, 80.0)), "increasing"),
    (dict(bmd_mg_cm3=100.0, thresholds=(80.0,)), "two numbers"),
    (dict(bmd_mg_cm3=100.0, convention="who"), "convention must be one of"),
])
def test_classify_rejects_bad_input(kwargs, match):
    bmd = kwargs.pop("bmd_mg_cm3")
    with pytest.raises(ValueError, match=match):
        classify_bmd(bmd, **kwargs)


def test_diagnose_uses_l1_l2_mean():
    d = diagnose({"T12": 60.0, "L1": 110.0, "L2": 131.0})
    assert d.levels_used == ("L1", "L2")
    assert d.bmd_mg_cm3 == pytest.approx(120.5)
    assert d.category is NORMAL
    assert d.flags == ()
    assert d.reason == "mean of L1, L2"


def test_diagnose_never_rounds_before_classifying():
    # 120.04 would round to 120.0 (osteopenia); the unrounded value is normal
    assert diagnose({"L1": 120.03, "L2": 120.05}).category is NORMAL


def test_l1_excluded_is_replaced_by_t12():
    d = diagnose({"T12": 70.0, "L1": 200.0, "L2": 80.0}, excluded={"L1": "fracture-like height loss"})
    assert d.levels_used == ("T12", "L2")
    assert d.bmd_mg_cm3 == pytest.approx(75.0)
    assert d.category is OP
    assert [str(f) for f in d.flags] == ["substituted:T12", "thoracic_substitute:T12"]
    assert "L1 excluded (fracture-like height loss), T12 substituted" in d.reason


def test_l2_excluded_prefers_l3_then_t12():
    values = {"T12": 70.0, "L1": 100.0, "L2": 300.0, "L3": 104.0}
    d = diagnose(values, excluded={"L2": "focal sclerosis"})
    assert d.levels_used == ("L1", "L3")
    assert [str(f) for f in d.flags] == ["substituted:L3"]
    values.pop("L3")
    d = diagnose(values, excluded={"L2": "focal sclerosis"})
    assert d.levels_used == ("T12", "L1")


def test_both_excluded_uses_t12_and_l3():
    d = diagnose({"T12": 90.0, "L1": 10.0, "L2": 10.0, "L3": 110.0},
                 excluded={"L1": "partial", "L2": "failed QC"})
    assert d.levels_used == ("T12", "L3")
    assert d.bmd_mg_cm3 == pytest.approx(100.0)
    assert {str(f) for f in d.flags} == {"substituted:T12", "substituted:L3", "thoracic_substitute:T12"}


def test_one_usable_level_is_a_flagged_single_level_result():
    d = diagnose({"T12": None, "L1": 130.0, "L2": float("nan")})
    assert d.levels_used == ("L1",)
    assert d.category is NORMAL
    assert "single_level:L1" in [str(f) for f in d.flags]
    assert "L2 not measured" in d.reason


def test_no_usable_level_gives_no_category_and_the_reason():
    d = diagnose({"T12": None, "L1": 100.0, "L2": None}, excluded={"L1": "fracture-like height loss"})
    assert d.category is None and d.bmd_mg_cm3 is None and d.levels_used == ()
    assert [str(f) for f in d.flags] == ["no_usable_level"]
    assert d.reason == ("no usable level: L1 excluded (fracture-like height loss); L2 not measured")
    assert d.to_dict()["category"] is None


def test_select_levels_with_other_primary_levels():
    sel = select_levels({"L1": 1.0, "L2": 2.0, "L3": 3.0, "L4": None}, primary=("L1", "L2", "L3"))
    assert sel.levels_used == ("L1", "L2", "L3")
    assert sel.flags == ()


def test_diagnose_passes_thresholds_and_convention():
    d = diagnose({"L1": 80.0, "L2": 80.0}, convention="virtuost")
    assert d.category is OP
    d = diagnose({"L1": 80.0, "L2": 80.0}, thresholds=(70.0, 90.0))
    assert d.category is OPENIA
    assert math.isclose(d.bmd_mg_cm3, 80.0)
