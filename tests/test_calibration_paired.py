"""Paired (reference-device) calibration: OLS of reference BMD on HU (Pan et al. 2020)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from bmdqct.calibration import fit_paired_calibration, fit_paired_table, read_calibration
from bmdqct.cli import main
from bmdqct.errors import CalibrationError


def _pairs(rng, n=60, slope=0.78, intercept=3.0, sd=4.0):
    hu = rng.uniform(40.0, 220.0, n)
    return hu, slope * hu + intercept + rng.normal(0.0, sd, n)


def test_paired_fit_equals_statsmodels(rng):
    hu, bmd = _pairs(rng)
    fit = fit_paired_calibration(hu, bmd, level="L1", metadata={"kvp": 120, "device_serial": "X"})
    ref = sm.OLS(bmd, sm.add_constant(hu)).fit()
    assert (fit.intercept, fit.slope) == pytest.approx(tuple(ref.params), rel=1e-12)
    ci = ref.conf_int(alpha=0.05)
    assert fit.intercept_ci == pytest.approx(tuple(ci[0]), rel=1e-12)
    assert fit.slope_ci == pytest.approx(tuple(ci[1]), rel=1e-12)
    assert fit.residual_sd_mg_cm3 == pytest.approx(np.sqrt(ref.scale), rel=1e-12)
    assert fit.r_squared == pytest.approx(ref.rsquared) and fit.r == pytest.approx(np.sqrt(ref.rsquared))
    assert (fit.n, fit.level, fit.cov_type) == (60, "L1", "nonrobust")
    # 60 pairs with 4 mg/cm3 scatter pin the slope to about +-0.02 (its CI)
    assert fit.slope_ci[0] < 0.78 < fit.slope_ci[1]
    cal = fit.calibration
    assert (cal.method, cal.slope, cal.kvp, cal.device_serial, cal.n) == ("paired-reference", fit.slope, 120.0, "X", 60)
    assert tuple(cal.details["slope_ci"]) == fit.slope_ci  # frozen: lists become tuples
    assert len(cal.residuals_mg_cm3) == 60


def test_pooled_fit_uses_cluster_robust_ci(rng):
    hu, bmd = _pairs(rng, n=45)
    groups = np.repeat(np.arange(15), 3)
    fit = fit_paired_calibration(hu, bmd, groups=groups, confidence=0.9)
    ref = sm.OLS(bmd, sm.add_constant(hu)).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert fit.slope_ci == pytest.approx(tuple(ref.conf_int(alpha=0.1)[1]), rel=1e-12)
    assert fit.cov_type == "cluster"


@pytest.mark.parametrize("hu, bmd, kwargs, error, match", [
    ([1.0, 2.0], [1.0, 2.0], {}, CalibrationError, r"at least 3 pairs, got 2"),
    ([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], {}, CalibrationError, r"1 NaN or infinite value\(s\) at positions \[2\]"),
    ([5.0, 5.0, 5.0], [1.0, 2.0, 3.0], {}, CalibrationError, r"all HU values are equal"),
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], {}, CalibrationError, r"slope of -1 mg/cm3 per HU; BMD must rise"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], {}, ValueError, r"same length, got 3 and 2"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"confidence": 95}, ValueError, r"confidence must be in \(0, 1\)"),
])
def test_paired_errors(hu, bmd, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_paired_calibration(hu, bmd, **kwargs)


def _tables(rng, n=30):
    cases = [f"case{i:03d}" for i in range(n)]
    measured = {"case": cases, "status": ["ok"] * n}
    reference = {"case": cases}
    for level, offset in (("T12", 10.0), ("L1", 0.0), ("L2", -5.0)):
        hu = rng.uniform(50.0, 200.0, n)
        measured[f"{level}_mean_hu"] = hu
        reference[f"{level}_bmd_mg_cm3"] = 0.8 * hu + offset + rng.normal(0.0, 3.0, n)
    measured = pd.DataFrame(measured)
    measured.loc[0, "status"] = "failed"
    measured.loc[1, "L2_mean_hu"] = np.nan
    return measured, pd.DataFrame(reference)


def test_paired_table_per_level_and_pooled(rng):
    measured, reference = _tables(rng)
    fits = fit_paired_table(measured, reference)
    assert list(fits) == ["T12", "L1", "L2", "pooled"]
    assert (fits["T12"].n, fits["L2"].n, fits["pooled"].n) == (29, 28, 86)  # failed case and NaN dropped
    assert fits["T12"].intercept == pytest.approx(10.0, abs=4.0)  # 3 mg/cm3 noise, 29 pairs
    assert fits["pooled"].cov_type == "cluster"
    assert "case002:L1" in fits["pooled"].calibration.residuals_mg_cm3


def test_paired_table_errors(rng, tmp_path):
    measured, reference = _tables(rng)
    with pytest.raises(CalibrationError, match=r"column\(s\) \['L3_mean_hu', 'L3_bmd_mg_cm3'\] missing for level L3"):
        fit_paired_table(measured, reference, levels=("L3",))
    with pytest.raises(CalibrationError, match=r"share no 'case' value"):
        fit_paired_table(measured, reference.assign(case="other"))
    with pytest.raises(CalibrationError, match=r"reference table has no 'subject' column"):
        fit_paired_table(measured.rename(columns={"case": "subject"}), reference, on="subject")
    with pytest.raises(CalibrationError, match=r"measured table .*nope\.csv does not exist"):
        fit_paired_table(tmp_path / "nope.csv", reference)


def test_cli_calibrate_paired(rng, tmp_path, capsys):
    measured, reference = _tables(rng)
    measured.to_csv(tmp_path / "results.csv", index=False)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    out = tmp_path / "paired.json"
    assert main(["calibrate-paired", str(tmp_path / "results.csv"), str(tmp_path / "reference.csv"),
                 "-o", str(out), "--level", "L1", "--kvp", "120", "--device-serial", "X"]) == 0
    text = capsys.readouterr().out
    assert "pooled" in text and "resid SD" in text
    cal = read_calibration(out)
    assert (cal.method, cal.details["level"], cal.kvp, cal.device_serial) == ("paired-reference", "L1", 120.0, "X")
    assert main(["calibrate-paired", str(tmp_path / "results.csv"), str(tmp_path / "reference.csv"),
                 "-o", str(out), "--level", "L5"]) == 1
    assert "no fit for level 'L5'" in capsys.readouterr().err


def test_paired_table_takes_bmd_from_the_reference_even_when_measured_has_bmd_columns(rng, tmp_path):
    """results.csv of `bmdqct measure` carries its own {level}_bmd_mg_cm3 columns; a join that let
    them shadow the reference columns of the same name would fit bmdqct against itself."""
    measured, reference = _tables(rng)
    expected = fit_paired_table(measured, reference)
    with_bmd = measured.assign(**{f"{lv}_bmd_mg_cm3": 0.5 * measured[f"{lv}_mean_hu"] for lv in ("T12", "L1", "L2")})
    fits = fit_paired_table(with_bmd, reference)
    for level in ("T12", "L1", "L2", "pooled"):
        assert fits[level].slope == pytest.approx(expected[level].slope, rel=1e-12), level
        assert fits[level].n == expected[level].n
    # the same through CSV files, as `bmdqct calibrate-paired` reads them
    with_bmd.to_csv(tmp_path / "results.csv", index=False)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    from_files = fit_paired_table(tmp_path / "results.csv", tmp_path / "reference.csv")
    assert from_files["L1"].slope == pytest.approx(expected["L1"].slope, rel=1e-12)
    # identical column templates on both sides still pair HU with the reference values
    same_names = fit_paired_table(measured.rename(columns=lambda c: c.replace("_mean_hu", "_value")),
                                  reference.rename(columns=lambda c: c.replace("_bmd_mg_cm3", "_value")),
                                  hu_column="{level}_value", reference_column="{level}_value")
    assert same_names["L2"].slope == pytest.approx(expected["L2"].slope, rel=1e-12)


def test_paired_table_reads_the_hu_mean_columns_of_an_old_results_csv(rng, tmp_path):
    """results.csv written before result format 3 names the HU columns L1_hu_mean; they are read as L1_mean_hu."""
    measured, reference = _tables(rng)
    expected = fit_paired_table(measured, reference)
    old = measured.rename(columns=lambda c: c.replace("_mean_hu", "_hu_mean"))
    old.to_csv(tmp_path / "results.csv", index=False)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    for table in (old, tmp_path / "results.csv"):
        fits = fit_paired_table(table, tmp_path / "reference.csv")
        assert fits["L1"].slope == pytest.approx(expected["L1"].slope, rel=1e-12)
        assert fits["pooled"].n == expected["pooled"].n
    # a new column wins over an old one of the same level
    both = measured.assign(L1_hu_mean=measured["L1_mean_hu"] * 2.0)
    assert fit_paired_table(both, reference)["L1"].slope == pytest.approx(expected["L1"].slope, rel=1e-12)


def test_paired_labels_must_name_each_pair():
    with pytest.raises(ValueError, match=r"labels must name each of the 3 pairs once; got 2 labels"):
        fit_paired_calibration([1.0, 2.0, 3.0], [1.0, 2.1, 2.9], labels=["a", "b"])
    with pytest.raises(ValueError, match=r"1 repeated"):
        fit_paired_calibration([1.0, 2.0, 3.0], [1.0, 2.1, 2.9], labels=["a", "b", "a"])


def test_unreadable_csv_is_a_calibration_error(rng, tmp_path, capsys):
    measured, reference = _tables(rng)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    (tmp_path / "results.csv").write_bytes(b"case,L1_mean_hu\n\xff\xfe,\x00\n")
    with pytest.raises(CalibrationError, match=r"measured table .*results\.csv cannot be read as CSV"):
        fit_paired_table(tmp_path / "results.csv", tmp_path / "reference.csv")
    (tmp_path / "results.csv").write_text('case,L1_mean_hu\n"a,1\n')       # unterminated quote
    assert main(["calibrate-paired", str(tmp_path / "results.csv"), str(tmp_path / "reference.csv")]) == 1
    assert "cannot be read as CSV" in capsys.readouterr().err
