"""Tests of the synthetic screening cohort and the ``bmdqct synth`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bmdqct.cli import main
from bmdqct.synthetic import default_hu_line, synthesize_cohort
from bmdqct.synthetic.cohort import REFERENCE_LEVELS


@pytest.fixture(scope="module")
def big():
    return synthesize_cohort(2000, seed=4)


def test_population_is_a_realistic_screening_cohort(big):
    truth = big.table(truth=True)
    assert truth.age.between(40, 80).all() and 60 < truth.age.mean() < 68
    assert 0.4 < (truth.sex == "F").mean() < 0.6
    # osteoporosis (ACR: L1-L2 mean < 80 mg/cm³) in 15-30 %; more in women; BMD falls with age
    prevalence = big.prevalence()
    assert 0.15 <= prevalence["osteoporosis"] <= 0.30
    women = truth[truth.sex == "F"]
    men = truth[truth.sex == "M"]
    assert (women.bmd_l1_l2_mg_cm3 < 80).mean() > (men.bmd_l1_l2_mg_cm3 < 80).mean()
    assert np.corrcoef(truth.age, truth.bmd_l1_l2_mg_cm3)[0, 1] < -0.4
    # T12, L1, L2 correlate strongly, with T12 slightly higher and L2 slightly lower
    r = np.corrcoef([truth.T12_bmd_mg_cm3, truth.L1_bmd_mg_cm3, truth.L2_bmd_mg_cm3])
    assert r[np.triu_indices(3, 1)].min() > 0.9
    assert truth.T12_bmd_mg_cm3.mean() > truth.L1_bmd_mg_cm3.mean() > truth.L2_bmd_mg_cm3.mean()
    assert truth.kvp.value_counts(normalize=True)[120.0] > 0.6
    assert truth.noise_hu.between(15, 60).all()


def test_reference_error_follows_the_documented_model(big):
    """``ref = true * (1 + c) + e``: c one draw per scanner and kVp, e ~ N(0, sqrt(1.5² + (0.02 true)²)).

    The SD of all 2,000 differences cannot be pinned tightly: the bias part comes from only the
    nine (scanner, kVp) draws of c, so its share of the spread is itself uncertain by ~25 %
    (1/sqrt(2 x 9)). So c is fitted per group and the per-measurement error is tested on its own.
    """
    truth, ref = big.table(truth=True), big.table()
    diff = (ref.L1_bmd_mg_cm3 - truth.L1_bmd_mg_cm3).to_numpy()
    true = truth.L1_bmd_mg_cm3.to_numpy()
    assert not np.isnan(diff).any()
    z = np.empty_like(diff)
    biases = []
    for _, index in truth.groupby(["device_serial", "kvp"]).indices.items():
        t, d = true[index], diff[index]
        c = float(np.sum(t * d) / np.sum(t * t))  # least squares through the origin: d = c * t + e
        biases.append(c)
        z[index] = (d - c * t) / np.sqrt(1.5**2 + (0.02 * t) ** 2)
    assert len(biases) == 9
    # each c ~ N(0, 1.5 %): all nine within 4 SD (P(any beyond) ~ 9 x 6e-5)
    assert max(abs(c) for c in biases) < 4 * 0.015
    # the standardized errors have SD 1; an SD estimated from n draws has a standard error of
    # about 1 / sqrt(2n) (0.016 for n = 2,000), so 5 of them allow 0.08. The nine fitted c take
    # 9 of the 2,000 degrees of freedom (< 0.5 %) and rounding to 0.01 mg/cm3 adds < 1e-5.
    assert np.std(z) == pytest.approx(1.0, abs=5 / math.sqrt(2 * len(z)))
    assert abs(np.mean(diff)) < 3.0
    assert np.corrcoef(ref.bmd_l1_l2_mg_cm3, truth.bmd_l1_l2_mg_cm3)[0, 1] > 0.98


def test_table_layout_and_csv(tmp_path):
    cohort = synthesize_cohort(5, seed=1)
    table = cohort.table()
    assert list(table.columns) == ["case", "T12_bmd_mg_cm3", "L1_bmd_mg_cm3", "L2_bmd_mg_cm3",
                                   "bmd_l1_l2_mg_cm3", "sex", "age"]
    assert list(table.case) == [f"case_{i:03d}" for i in range(5)]
    row = cohort[2]
    assert table.loc[2, "bmd_l1_l2_mg_cm3"] == pytest.approx(row.reference_l1_l2_mg_cm3, abs=0.01)
    path = cohort.to_csv(tmp_path / "sub" / "reference.csv")
    assert pd.read_csv(path).equals(table)
    assert cohort["case_003"] is cohort[3]
    with pytest.raises(KeyError, match="no case 'case_999'"):
        cohort["case_999"]


def test_same_seed_same_cohort_and_scanner_lines():
    a, b = synthesize_cohort(20, seed=9), synthesize_cohort(20, seed=9)
    assert a.table(truth=True).equals(b.table(truth=True))
    assert not a.table().equals(synthesize_cohort(20, seed=10).table())
    for kvp in (80.0, 100.0, 120.0):
        assert a.scanner_lines[("SYN-0001", kvp)] == default_hu_line(kvp)
        assert a.scanner_lines[("SYN-0002", kvp)] != default_hu_line(kvp)
    for s in a:
        assert (s.a_hu, s.b_hu_per_mg_cm3) == a.scanner_lines[(s.scanner["device_serial"], s.kvp)]


def test_fractured_level_has_no_reference_and_t12_substitutes():
    cohort = synthesize_cohort(300, seed=2, fracture_rate=0.5, sclerotic_rate=0.2)
    fractured = [s for s in cohort if "fracture" in s.options]
    assert fractured and any("sclerotic" in s.options for s in cohort)
    for s in fractured:
        level = s.options["fracture"]
        if level in REFERENCE_LEVELS:
            assert math.isnan(s.reference_mg_cm3[level])
        if level in ("L1", "L2"):
            other = "L2" if level == "L1" else "L1"
            expected = 0.5 * (s.reference_mg_cm3["T12"] + s.reference_mg_cm3[other])
            assert s.reference_l1_l2_mg_cm3 == pytest.approx(expected)
    assert set(REFERENCE_LEVELS) == {"T12", "L1", "L2"}


def test_subject_scan_realizes_the_cohort_values():
    cohort = synthesize_cohort(2, seed=5)
    s = cohort[1]
    vol, truth = cohort.synthesize(1, shape=64, pixel_mm=6.0, slice_mm=6.0, cranial="T11", caudal="L2")
    assert truth.density_mg_cm3["L1"] == pytest.approx(s.density_mg_cm3["L1"])
    assert (truth.a_hu, truth.b_hu_per_mg_cm3, truth.kvp, truth.noise_hu) == (s.a_hu, s.b_hu_per_mg_cm3,
                                                                              s.kvp, s.noise_hu)
    assert vol.metadata["device_serial"] == s.scanner["device_serial"]
    assert vol.metadata["study_date"] == s.study_date and vol.metadata["patient_sex"] == s.sex


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": 3, "seed": -2}, "seed must be a non-negative integer"),
    ({"n": 3, "fracture_rate": 1.5}, r"fracture_rate must lie in \[0, 1\]"),
    ({"n": 3, "age_range": (80, 40)}, "age_range must be"),
    ({"n": 3, "scanners": ()}, "at least one scanner"),
])
def test_cohort_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthesize_cohort(**kwargs)


def test_cli_synth_writes_scans_labels_truth_and_reference(tmp_path, capsys):
    from bmdqct.io import load_ct, load_labels

    out = tmp_path / "cohort"
    rc = main(["synth", "-n", "1", "-o", str(out), "--seed", "3", "--shape", "64", "--pixel-mm", "6",
               "--slice-mm", "6", "--cranial", "T11", "--caudal", "L2"])
    assert rc == 0
    assert "case_000" in capsys.readouterr().out
    ref = pd.read_csv(out / "reference.csv")
    assert list(ref.columns[:5]) == ["case", "T12_bmd_mg_cm3", "L1_bmd_mg_cm3", "L2_bmd_mg_cm3",
                                     "bmd_l1_l2_mg_cm3"]
    truth_csv = pd.read_csv(out / "truth.csv")
    assert truth_csv.loc[0, "case"] == "case_000"
    case = out / "case_000"
    truth = json.loads((case / "truth.json").read_text())
    assert truth["case"] == "case_000" and truth["levels"]["L1"] == 20
    ct = load_ct(case / "ct.nii.gz")
    assert ct.shape[1:] == (64, 64) and ct.spacing == pytest.approx((6.0, 6.0, 6.0))
    levels = load_labels(case / "levels.nii.gz", like=ct)
    assert {20, 21} <= set(np.unique(levels.labels))
    classes = load_labels(case / "classes.nii.gz", like=ct)
    assert set(np.unique(classes.labels)) <= {0, 1, 2, 3}
    assert (case / "trabecular.nii.gz").exists()


def test_cli_synth_tables_only_and_usage_error(tmp_path, capsys):
    assert main(["synth", "-n", "4", "-o", str(tmp_path), "--no-scans"]) == 0
    assert len(pd.read_csv(tmp_path / "reference.csv")) == 4
    assert not (tmp_path / "case_000").exists()
    with pytest.raises(SystemExit) as err:
        main(["synth", "-n", "0", "-o", str(tmp_path)])
    assert err.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
