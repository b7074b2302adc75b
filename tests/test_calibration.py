"""Calibration value, JSON files, mineral conversion and phantom fits (bmdqct.calibration)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from bmdqct.calibration import (
    Calibration,
    Certificate,
    convert_mineral,
    fit_phantom,
    get_phantom,
    read_calibration,
    read_certificate,
)
from bmdqct.errors import CalibrationError, CalibrationWarning

# qct-reference §1.2: Ogo example certificate (serials 4541A/4560) and rods generated with
# sigma_ref = 1.40, beta_ref = -1000 (HU_rod = W + 1.40 K - 1000).
K2HPO4 = [-51.83, -53.40, 58.88, 157.05, 375.83]
WATER = [1012.25, 1056.95, 1103.57, 1119.52, 923.20]
ROD_HU = [-60.312, -17.810, 186.002, 339.390, 449.362]


@pytest.fixture
def mindways_cert() -> Certificate:
    return Certificate.from_dict({
        "phantom": "mindways-model3-ct", "serial": "TEST", "mineral": "K2HPO4",
        "rods": [{"label": lab, "density_mg_cm3": k, "water_mg_cm3": w} for lab, k, w in zip("ABCDE", K2HPO4, WATER)]})


# --- the test vector and the pitfall ---------------------------------------------------------

def test_mindways_test_vector(mindways_cert):
    cal = fit_phantom(ROD_HU, mindways_cert)
    assert cal.apply(100.0) == pytest.approx(84.90, abs=0.01)
    assert cal.apply(50.0) == pytest.approx(42.62, abs=0.01)
    assert cal.apply(150.0) == pytest.approx(127.18, abs=0.01)
    # the rods were generated exactly, so the fit reproduces sigma_ref, beta_ref (rounding of the HU: 1e-3)
    assert cal.details["sigma_ref_hu_per_mg_cm3"] == pytest.approx(1.40, abs=1e-4)
    assert cal.details["beta_ref_hu"] == pytest.approx(-1000.0, abs=0.01)
    assert cal.details["sigma_ct_hu_per_mg_cm3"] == pytest.approx(1.1826, abs=1e-4)
    assert cal.details["beta_ct_hu"] == pytest.approx(-0.40, abs=0.01)
    assert cal.r_squared == pytest.approx(1.0, abs=1e-9)
    assert max(abs(v) for v in cal.residuals_mg_cm3.values()) < 0.01
    assert (cal.method, cal.mineral, cal.phantom_model, cal.n) == ("phantom", "K2HPO4", "mindways-model3-ct", 5)


def test_naive_fit_is_not_what_runs(mindways_cert):
    """The HU-vs-K2HPO4 fit that ignores the water column gives 29.8 mg/cm3 at 100 HU: wrong."""
    naive_slope, naive_intercept = np.polyfit(K2HPO4, ROD_HU, 1)
    assert (100.0 - naive_intercept) / naive_slope == pytest.approx(29.8, abs=0.05)  # the pitfall exists
    bmd = fit_phantom(ROD_HU, mindways_cert).apply(100.0)
    assert abs(bmd - 29.8) > 50.0


def test_linear_phantom_fit_recovers_line():
    cert = {"phantom": "qrm-bdc-6", "serial": "T6", "mineral": "HA",
            "rods": [{"label": str(i), "density_mg_cm3": d} for i, d in enumerate([0, 100, 200, 400, 600, 800])]}
    rod_hu = 12.0 + 0.95 * np.array([0, 100, 200, 400, 600, 800])
    cal = fit_phantom(rod_hu, cert, metadata={"kvp": 120, "study_date": "20240115", "device_serial": "X"})
    assert cal.slope == pytest.approx(1 / 0.95, rel=1e-9)
    assert cal.intercept == pytest.approx(-12.0 / 0.95, rel=1e-9)
    assert (cal.mineral, cal.kvp, cal.acquisition_date, cal.device_serial) == ("HA", 120.0, "2024-01-15", "X")


def test_poor_fit_warns(mindways_cert):
    # rod C 12 HU too high: R2 = 0.9995, residual +6.8 mg/cm3 (below the rejection limit). On this
    # phantom's 430 mg/cm3 range an R2 below the default 0.99 needs residuals beyond the 15 mg/cm3
    # rejection limit, so the R2 warning is exercised with a stricter warn_r_squared.
    hu = np.array(ROD_HU) + [0, 0, 12.0, 0, 0]
    with pytest.warns(CalibrationWarning, match=r"R2 = 0\.9995 is below 0\.99999; per rod: .*C: 198\.0 HU, "
                                                r"residual \+6\.8 mg/cm3"):
        cal = fit_phantom(hu, mindways_cert, warn_r_squared=0.99999)
    assert cal.r_squared < 0.99999


@pytest.mark.parametrize("hu, match", [
    (np.array(ROD_HU) + [0, 0, -150.0, 0, 0], r"fit rejected: R2 = .*rod C.*Per rod: A: .*residual"),
    (np.array(ROD_HU)[::-1], r"sigma_ref = -.*wrong phantom"),
    (ROD_HU[:4], r"got 4 rod HU values for a certificate with 5 rods"),
    ([np.nan, 0, 1, 2, 3], r"rod HU must be finite"),
])
def test_bad_fit_raises(mindways_cert, hu, match):
    with pytest.raises(CalibrationError, match=match):
        fit_phantom(hu, mindways_cert)


def test_residual_limit_raises_with_table(mindways_cert):
    hu = np.array(ROD_HU) + [0, 0, 0, 30.0, 0]  # R2 still 0.997: the residual limit catches it
    with pytest.raises(CalibrationError, match=r"R2 = 0\.9973 .* largest residual \+16\.4 mg/cm3 at rod D "
                                               r"\(limit 15\).*B: -17\.8 HU, residual -2\.7 mg/cm3"):
        fit_phantom(hu, mindways_cert)


def test_large_residual_warns(mindways_cert):
    hu = np.array(ROD_HU) + [0, 25.0, 0, 0, 0]  # rod B residual +11.3 mg/cm3, R2 0.998
    with pytest.warns(CalibrationWarning, match=r"largest residual \+11\.3 mg/cm3 at rod B"):
        fit_phantom(hu, mindways_cert)


# --- certificates ---------------------------------------------------------------------------

def test_certificate_json_round_trip(tmp_path, mindways_cert):
    path = mindways_cert.to_json(tmp_path / "cert.json")
    back = read_certificate(path)
    assert back == mindways_cert
    assert back.source == str(path)
    assert back.water_mg_cm3.tolist() == WATER


@pytest.mark.parametrize("change, match", [
    ({"phantom": "nope"}, r"unknown phantom 'nope'; known phantoms are \["),
    ({"mineral": "HA"}, r"mindways-model3-ct is K2HPO4-referenced but the certificate says HA; refusing to mix"),
    ({"rods": [{"label": c, "density_mg_cm3": i, "water_mg_cm3": 1e3} for i, c in enumerate("AB")]},
     r"has \(5,\) rods, the certificate lists 2"),
    ({"rods": [{"label": "A", "density_mg_cm3": 1.0, "water_mg_cm3": 1000.0}]}, r"needs at least two rods, got 1"),
    ({"rods": [{"label": c, "density_mg_cm3": 1.0} for c in "ABCDE"]}, r"needs a water_mg_cm3 value for every rod"),
    ({"rods": [{"label": c, "density_mg_cm3": "x", "water_mg_cm3": 1.0} for c in "ABCDE"]},
     r"rods\[0\] \(A\) field 'density_mg_cm3' must be a finite number, got 'x'"),
    ({"serial": None, "rods": None}, r"'rods' must be a list"),
])
def test_certificate_errors(tmp_path, mindways_cert, change, match):
    data = {**mindways_cert.to_dict(), **change}
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=match):
        read_certificate(path)


def test_certificate_file_errors(tmp_path):
    with pytest.raises(CalibrationError, match=r"certificate file .*missing\.json does not exist"):
        read_certificate(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{rods: }")
    with pytest.raises(CalibrationError, match=r"bad\.json: not valid JSON"):
        read_certificate(tmp_path / "bad.json")
    (tmp_path / "nophantom.json").write_text('{"serial": "1", "rods": []}')
    with pytest.raises(CalibrationError, match=r"nophantom\.json: missing field 'phantom'"):
        read_certificate(tmp_path / "nophantom.json")


def test_generic_phantom_needs_mineral():
    with pytest.raises(CalibrationError, match="missing field 'mineral'"):
        Certificate.from_dict({"phantom": "generic-rods", "serial": "g",
                               "rods": [{"density_mg_cm3": 0}, {"density_mg_cm3": 100}]})
    assert get_phantom("generic-rods").n_rods is None


# --- the Calibration value ------------------------------------------------------------------

def _full() -> Calibration:
    return Calibration(slope=0.81, intercept=-2.5, mineral="K2HPO4", method="phantom",
                       phantom_model="mindways-model3-ct", phantom_serial="4541A", manufacturer="ACME",
                       model="CT 1", device_serial="42", station="CT1", kvp=120, kernel="B30f",
                       acquisition_date="2024-01-15", r_squared=0.9999, residuals_mg_cm3={"A": 0.1, "B": -0.1},
                       n=2, details={"rods": [{"label": "A", "mean_hu": 10.0}], "note": "x"})


def test_json_round_trip(tmp_path):
    cal = _full()
    path = cal.to_json(tmp_path / "cal.json")
    back = read_calibration(path)
    assert back == cal and back.id == cal.id
    assert back.source == str(path)
    assert back.details["rods"][0]["mean_hu"] == 10.0
    data = json.loads(path.read_text())
    assert data["format"] == "bmdqct-calibration" and data["equation"] == "bmd_mg_cm3 = slope * hu + intercept"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_id_is_stable_and_content_derived():
    cal = Calibration(slope=0.8, intercept=-5.0, kvp=120)
    # pinned: the id must not change between versions or processes (it names stored files)
    assert cal.id == "cal-6d0f137da8b05b18"
    assert Calibration.from_dict(json.loads(cal.to_json_text())).id == cal.id
    assert dataclasses.replace(cal, slope=0.8000001, id="").id != cal.id
    assert dataclasses.replace(cal, source="elsewhere.json", selection={"rule": "x"}).id == cal.id
    assert hash(cal) == hash(Calibration(slope=0.8, intercept=-5.0, kvp=120.0))


def test_edited_file_is_refused(tmp_path):
    data = _full().to_dict()
    data["slope"] = 0.9
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"edited\.json: calibration id .* does not match its content"):
        read_calibration(path)


def test_calibration_is_immutable():
    cal = _full()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cal.slope = 1.0
    with pytest.raises(TypeError):
        cal.details["note"] = "y"
    with pytest.raises(TypeError):
        cal.residuals_mg_cm3["A"] = 0.0


def test_apply_does_not_mutate_and_returns_floats():
    cal = Calibration(slope=0.5, intercept=1.0)
    hu = np.array([0.0, 100.0], dtype=np.float32)
    hu.setflags(write=False)
    out = cal.apply(hu)
    assert out.tolist() == [1.0, 51.0] and out.dtype == np.float64
    assert isinstance(cal.apply(np.float32(2.0)), float)
    assert cal.hu_at(51.0) == pytest.approx(100.0)


def test_minimal_file(tmp_path):
    path = tmp_path / "min.json"
    path.write_text('{"slope": 0.85, "intercept": -2.5}')
    cal = read_calibration(path)
    assert (cal.slope, cal.intercept, cal.mineral, cal.method, cal.kvp) == (0.85, -2.5, "K2HPO4", "manual", None)


@pytest.mark.parametrize("text, match", [
    ('{"intercept": 1.0}', r"min\.json: missing field 'slope'"),
    ('{"slope": 1.0}', r"min\.json: missing field 'intercept'"),
    ('{"slope": "0.8", "intercept": 1.0}', r"min\.json: field 'slope' must be a finite number, got '0\.8'"),
    ('{"slope": 0.8, "intercept": null}', r"min\.json: field 'intercept' must be a finite number, got None"),
    ('{"slope": true, "intercept": 1.0}', r"min\.json: field 'slope' must be a finite number, got True"),
    ('{"slope": NaN, "intercept": 1.0}', r"min\.json: field 'slope' must be a finite number, got nan"),
    ('{"slope": -0.8, "intercept": 1.0}', r"min\.json: Calibration\.slope must be positive"),
    ('{"slope": 0.8, "intercept": 1.0, "slop": 2}', r"min\.json: unknown field\(s\) \['slop'\]"),
    ('{"slope": 0.8, "intercept": 1.0, "mineral": "CaCO3"}', r"min\.json: mineral reference must be one of"),
    ('{"slope": 0.8, "intercept": 1.0, "kvp": "120"}', r"min\.json: field 'kvp' must be a number or null"),
    ('{"slope": 0.8, "intercept": 1.0, "acquisition_date": "15/01/2024"}', r"min\.json: .*ISO date"),
    ('[0.8, 1.0]', r"min\.json: expected a JSON object"),
    ('{"slope": 0.8,', r"min\.json: not valid JSON"),
])
def test_read_calibration_errors(tmp_path, text, match):
    path = tmp_path / "min.json"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        read_calibration(path)


def test_read_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match=r"calibration file .*nothing\.json does not exist"):
        read_calibration(tmp_path / "nothing.json")


# --- mineral references ---------------------------------------------------------------------

def test_apply_refuses_to_mix_minerals():
    ha = Calibration(slope=1.0, intercept=0.0, mineral="ha")
    assert ha.mineral == "HA"
    assert ha.apply(10.0, mineral="HA") == 10.0
    with pytest.raises(CalibrationError, match=r"gives HA-equivalent BMD but K2HPO4 was expected.*to_mineral"):
        ha.apply(10.0, mineral="K2HPO4")


def test_convert_mineral():
    # Faulkner 1993: HA = 1.15 K - 7.32, and its inverse
    assert convert_mineral(100.0, source="K2HPO4", target="HA", method="faulkner1993") == pytest.approx(107.68)
    assert convert_mineral(107.68, source="HA", target="K2HPO4", method="faulkner1993") == pytest.approx(100.0)
    # Goodsitt 1992: K/HA = 0.86 at 80 kV, 0.81 at 140 kV, linear in between
    assert convert_mineral(100.0, source="HA", target="K2HPO4", kvp=80) == pytest.approx(86.0)
    assert convert_mineral(100.0, source="HA", target="K2HPO4", kvp=140) == pytest.approx(81.0)
    assert convert_mineral(100.0, source="HA", target="K2HPO4", kvp=120) == pytest.approx(82.6667, abs=1e-4)
    assert convert_mineral([81.0], source="K2HPO4", target="HA", kvp=140).tolist() == pytest.approx([100.0])
    assert convert_mineral(5.0, source="HA", target="HA") == 5.0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"kvp": 150}, CalibrationError, r"measured at 80-140 kV; got 150 kV\. Refusing to extrapolate"),
    ({}, ValueError, r"needs the tube voltage: pass kvp="),
    ({"kvp": 120, "method": "magic"}, ValueError, r"method must be one of"),
])
def test_convert_mineral_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        convert_mineral(100.0, source="K2HPO4", target="HA", **kwargs)


def test_calibration_to_mineral_round_trip():
    cal = Calibration(slope=0.8, intercept=2.0, kvp=120)
    ha = cal.to_mineral("HA")
    assert ha.mineral == "HA" and ha.id != cal.id
    assert ha.details["converted_from"]["id"] == cal.id
    hu = np.array([0.0, 100.0, 250.0])
    expected = convert_mineral(cal.apply(hu), source="K2HPO4", target="HA", kvp=120)
    np.testing.assert_allclose(ha.apply(hu), expected)
    back = ha.to_mineral("K2HPO4")
    np.testing.assert_allclose(back.apply(hu), cal.apply(hu))
    assert cal.to_mineral("K2HPO4") is cal


def test_rod_sd_must_match_the_rods(mindways_cert):
    with pytest.raises(CalibrationError, match=r"got 2 rod SD values for 5 rods"):
        fit_phantom(ROD_HU, mindways_cert, rod_sd_hu=[1.0, 2.0])
    cal = fit_phantom(ROD_HU, mindways_cert, rod_sd_hu=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert [r["sd_hu"] for r in cal.details["rods"]] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_unreadable_files_name_the_file(tmp_path):
    """A folder or a non-UTF-8 file in place of a JSON file: CalibrationError, not a raw OSError."""
    (tmp_path / "cert.json").mkdir()
    with pytest.raises(CalibrationError, match=r"certificate file .*cert\.json cannot be read"):
        read_certificate(tmp_path / "cert.json")
    (tmp_path / "cal.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(CalibrationError, match=r"calibration file .*cal\.json cannot be read"):
        read_calibration(tmp_path / "cal.json")
