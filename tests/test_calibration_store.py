"""Asynchronous calibration store: adding, selection by scanner/kVp/date, drift review, CLI."""

from __future__ import annotations

import dataclasses
import os

import pytest

from bmdqct.calibration import (
    Calibration,
    add_to_store,
    calibration_history,
    read_store,
    scanner_matches,
    select_calibration,
)
from bmdqct.cli import main
from bmdqct.errors import CalibrationError

SCANNER = {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 64", "device_serial": "SYN-0001", "station": "SYNTH1"}


def _cal(date, *, kvp=120.0, slope=0.70, intercept=0.2, **changes) -> Calibration:
    fields = {**SCANNER, **changes}
    return Calibration(slope=slope, intercept=intercept, method="phantom", kvp=kvp, acquisition_date=date,
                       phantom_model="mindways-model3-ct", phantom_serial="EX", **fields)


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "store"
    for cal in (_cal("2024-01-15"), _cal("2024-02-14", slope=0.701), _cal("2024-03-15", slope=0.69, intercept=-3.0),
                _cal("2024-02-20", kvp=100.0, slope=0.58), _cal("2024-02-10", device_serial="OTHER", station="S2")):
        add_to_store(cal, folder)
    return folder


def _scan(date, kvp=120.0, **changes):
    return {**SCANNER, "kvp": kvp, "study_date": date, **changes}


# --- writing --------------------------------------------------------------------------------

def test_add_to_store_layout(tmp_path):
    cal = _cal("2024-01-15")
    path = add_to_store(cal, tmp_path / "s")
    assert path.relative_to(tmp_path / "s").as_posix() == \
        f"bmdqct-synthetic_SynthCT-64_SYN-0001_120kV/2024-01-15_{cal.id}.json"
    assert read_store(tmp_path / "s") == (cal,)
    assert '"slope": 0.7' in path.read_text()  # human-readable JSON


def test_store_refuses_duplicates_and_keeps_files(store):
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    with pytest.raises(CalibrationError, match=r"calibration cal-\w+ is already in the store as .*2024-01-15_cal-"):
        add_to_store(_cal("2024-01-15"), store)
    with pytest.raises(CalibrationError, match=r"already holds a calibration of this scanner at 120 kV dated "
                                               r"2024-01-15 .*move the old file out of the store first"):
        add_to_store(_cal("2024-01-15", slope=0.75), store)
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == files  # nothing changed, no temp files


def test_failed_write_leaves_no_trace(store, monkeypatch):
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}

    def broken_link(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(OSError, match="disk full"):
        add_to_store(_cal("2024-04-15"), store)
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("changes, match", [
    ({"kvp": None}, r"it has no kvp; a store is keyed by scanner, kVp and date"),
    ({"acquisition_date": None}, r"it has no acquisition_date"),
    ({"device_serial": None, "station": None}, r"it has no device_serial or station"),
])
def test_store_needs_keys(tmp_path, changes, match):
    cal = dataclasses.replace(_cal("2024-01-15"), id="", **changes)
    with pytest.raises(CalibrationError, match=match):
        add_to_store(cal, tmp_path)


def test_corrupt_store_file_is_named(store):
    bad = next(store.glob("*/*.json"))
    bad.write_text("{ not json")
    with pytest.raises(CalibrationError, match=rf"{bad.name}: not valid JSON"):
        read_store(store)


# --- selection ------------------------------------------------------------------------------

def test_select_closest_before_within_window(store):
    cal = select_calibration(store, _scan("2024-03-01"))
    assert cal.acquisition_date == "2024-02-14" and cal.kvp == 120.0
    sel = dict(cal.selection)
    assert (sel["rule"], sel["scan_date"], sel["calibration_date"], sel["age_days"], sel["window_days"]) == \
        ("closest-before", "2024-03-01", "2024-02-14", 16, 60)
    assert sel["file"].endswith(f"2024-02-14_{cal.id}.json") and cal.source == sel["file"]
    assert select_calibration(store, _scan("2024-03-15")).acquisition_date == "2024-03-15"  # same day counts
    assert select_calibration(store, _scan("2024-03-01", kvp=100.0)).slope == 0.58
    other = select_calibration(store, _scan("2024-03-01", device_serial="OTHER", station="S2"))
    assert other.acquisition_date == "2024-02-10"


def test_select_accepts_a_volume(store):
    import numpy as np

    from bmdqct.volume import CTVolume

    vol = CTVolume.from_spacing(np.zeros((1, 2, 2)), (1, 1, 1), metadata=_scan("20240301"))
    assert select_calibration(store, vol).acquisition_date == "2024-02-14"


@pytest.mark.parametrize("scan, match", [
    (_scan("2024-01-10"), r"no calibration in store .* at 120 kV acquired within 60 days before the scan of "
                          r"2024-01-10\. The store holds for this scanner: 100 kV on 2024-02-20, 120 kV on 2024-01-15"),
    (_scan("2024-03-01", kvp=80.0), r"at 80 kV .*The store holds for this scanner: .*100 kV on 2024-02-20"),
    (_scan("2024-03-01", device_serial="NEW", station="NEW"), r"holds no calibration of this scanner"),
    (_scan("2024-07-01"), r"within 60 days before the scan of 2024-07-01.*fallback='nearest-after'"),
])
def test_select_no_match(store, scan, match):
    with pytest.raises(CalibrationError, match=match):
        select_calibration(store, scan)


def test_select_fallbacks(store, tmp_path):
    early = _scan("2024-01-10")
    cal = select_calibration(store, early, fallback="nearest-after")
    assert (cal.acquisition_date, cal.selection["rule"], cal.selection["age_days"]) == \
        ("2024-01-15", "fallback:nearest-after", -5)
    assert select_calibration(store, _scan("2024-01-10"), fallback="nearest").acquisition_date == "2024-01-15"
    late = _scan("2024-07-01")
    cal = select_calibration(store, late, fallback="latest-before")
    assert (cal.acquisition_date, cal.selection["age_days"]) == ("2024-03-15", 108)
    with pytest.raises(CalibrationError, match=r"The fallback 'nearest-after' found none either"):
        select_calibration(store, late, fallback="nearest-after")
    # another kVp is used only when given explicitly
    with pytest.raises(CalibrationError, match=r"at 80 kV"):
        select_calibration(store, _scan("2024-03-01", kvp=80.0), fallback="nearest")
    manual = Calibration(slope=0.5, intercept=0.0, kvp=80.0)
    cal = select_calibration(store, _scan("2024-03-01", kvp=80.0), fallback=manual)
    assert cal == manual and cal.selection["rule"] == "fallback:explicit"
    path = manual.to_json(tmp_path / "manual.json")
    assert select_calibration(store, _scan("2024-03-01", kvp=80.0), fallback=str(path)).id == manual.id


@pytest.mark.parametrize("scan, fallback, error, match", [
    ({**SCANNER, "study_date": "2024-03-01"}, None, CalibrationError, r"metadata has no kvp"),
    ({**SCANNER, "kvp": 120.0}, None, CalibrationError, r"metadata has no study_date"),
    (_scan("2024-03-01"), "closest", ValueError, r"fallback must be None, one of"),
    (_scan("2024-03-01"), 3, TypeError, r"fallback must be None"),
    (_scan("2024-03-01"), "missing.json", CalibrationError, r"calibration file missing\.json does not exist"),
])
def test_select_argument_errors(store, scan, fallback, error, match):
    with pytest.raises(error, match=match):
        select_calibration(store, scan, fallback=fallback)


def test_scanner_matching_rule():
    cal = _cal("2024-01-01")
    assert scanner_matches(cal, {"manufacturer": "BMDQCT-synthetic", "model": "synthct  64",
                                 "device_serial": "SYN-0001"})
    assert not scanner_matches(cal, {**SCANNER, "model": "Other"})
    assert scanner_matches(cal, {"station": "SYNTH1"})  # no serial in the scan: the station decides
    assert not scanner_matches(cal, {"manufacturer": "bmdqct-synthetic"})  # unit unknown: never matches


# --- drift ----------------------------------------------------------------------------------

def test_history_flags_drift(store):
    table = calibration_history(store)
    assert list(table["group"].unique()) == ["bmdqct-synthetic_SynthCT-64_OTHER_120kV_K2HPO4",
                                             "bmdqct-synthetic_SynthCT-64_SYN-0001_100kV_K2HPO4",
                                             "bmdqct-synthetic_SynthCT-64_SYN-0001_120kV_K2HPO4"]
    main_scanner = table[table["group"].str.endswith("SYN-0001_120kV_K2HPO4")]
    assert main_scanner["acquisition_date"].tolist() == ["2024-01-15", "2024-02-14", "2024-03-15"]
    # 0.700 -> 0.701 moves BMD by 0.2 mg/cm3 at 200 HU; 0.701/0.2 -> 0.69/-3.0 by 5.4 mg/cm3
    assert main_scanner["drift"].tolist() == [False, False, True]
    assert main_scanner["change_mg_cm3"].iloc[2] == pytest.approx(0.011 * 200 + 3.2)
    assert not table[~table["group"].str.endswith("SYN-0001_120kV_K2HPO4")]["drift"].any()
    assert not calibration_history(store, tolerance_mg_cm3=10.0)["drift"].any()


def test_history_never_compares_minerals(tmp_path):
    add_to_store(_cal("2024-01-15"), tmp_path)
    add_to_store(_cal("2024-01-15").to_mineral("HA"), tmp_path)  # same day, other mineral: separate series
    table = calibration_history(tmp_path)
    assert sorted(table["mineral"]) == ["HA", "K2HPO4"] and table["group"].nunique() == 2
    assert not table["drift"].any()


def test_history_plot(store, close_figures):
    from bmdqct.plotting import plot_calibration_history

    fig = plot_calibration_history(calibration_history(store))
    assert len(fig.axes) == 3
    assert len(fig.axes[0].lines) == 3  # one line per scanner/kVp group


# --- command line ---------------------------------------------------------------------------

def test_cli_calibrate_history_select(tmp_path, capsys):
    from bmdqct.io import write_dicom_series
    from bmdqct.synthetic import example_certificate, synthesize_phantom_scan

    cert = example_certificate().to_json(tmp_path / "cert.json")
    store = tmp_path / "store"
    for seed, (date, a_hu, b) in enumerate((("2024-01-15", -0.4, 1.424), ("2024-03-15", 6.0, 1.47))):
        vol, _ = synthesize_phantom_scan("mindways-model3-ct", seed, a_hu, b, study_date=date,
                                         shape=(192, 192), pixel_mm=1.2, n_slices=12)
        scan = write_dicom_series(vol, tmp_path / f"qa{seed}")
        args = ["calibrate", str(scan), "--phantom", "mindways-model3-ct", "--certificate", str(cert),
                "--store", str(store)]
        extra = ["-o", str(tmp_path / "cal.json"), "--plot", str(tmp_path / "qa.png")] if seed else []
        assert main(args + extra) == 0
    out = capsys.readouterr().out
    assert "fit two-component" in out and "added to store:" in out and (tmp_path / "qa.png").is_file()
    assert main(args) == 1  # the same scan again: refused, store unchanged
    assert "already in the store" in capsys.readouterr().err
    assert len(read_store(store)) == 2

    assert main(["calibration-history", "--store", str(store), "--plot", str(tmp_path / "trend.png"),
                 "--csv", str(tmp_path / "h.csv")]) == 0
    out = capsys.readouterr().out
    assert "2024-03-15" in out and "DRIFT" in out and (tmp_path / "trend.png").is_file()

    assert main(["calibration-select", str(tmp_path / "qa1"), "--store", str(store)]) == 0
    assert "selected by closest-before: calibration of 2024-03-15" in capsys.readouterr().out
    assert main(["calibration-select", str(tmp_path / "qa1"), "--store", str(store), "--mineral", "HA"]) == 1
    assert "no calibration in HA in store" in capsys.readouterr().err
    assert main(["calibration-history", "--store", str(tmp_path / "empty")]) == 1
    assert "holds no calibrations" in capsys.readouterr().err


def test_select_never_picks_a_mineral_by_chance(tmp_path):
    """K2HPO4 and HA calibrations of the same day: which one is 'closest' is a tie that the file
    order would decide; it is refused unless the caller names the mineral reference."""
    k2hpo4 = _cal("2024-01-15")
    ha = _cal("2024-01-15", slope=0.80, intercept=-5.0, mineral="HA")
    for cal in (k2hpo4, ha):
        add_to_store(cal, tmp_path)
    with pytest.raises(CalibrationError, match=r"calibrations of HA and K2HPO4 .* acquired on 2024-01-15 .*"
                                               r"pass mineral='K2HPO4' or mineral='HA'"):
        select_calibration(tmp_path, _scan("2024-02-01"))
    assert select_calibration(tmp_path, _scan("2024-02-01"), mineral="HA").id == ha.id
    assert select_calibration(tmp_path, _scan("2024-02-01"), mineral="k2hpo4").id == k2hpo4.id
    with pytest.raises(CalibrationError, match=r"pass mineral="):
        select_calibration(tmp_path, _scan("2024-01-10"), fallback="nearest-after")
    # a mineral filter leaves the other reference out entirely, even when it is closer
    add_to_store(_cal("2024-01-25"), tmp_path)
    assert select_calibration(tmp_path, _scan("2024-02-01"), mineral="HA").acquisition_date == "2024-01-15"
    assert select_calibration(tmp_path, _scan("2024-02-01")).acquisition_date == "2024-01-25"
    with pytest.raises(CalibrationError, match=r"no calibration in HA in store"):
        select_calibration(tmp_path, _scan("2024-01-10"), mineral="HA")
    with pytest.raises(ValueError, match=r"mineral reference must be one of"):
        select_calibration(tmp_path, _scan("2024-02-01"), mineral="CaCO3")
