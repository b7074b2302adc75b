"""Tests of the agreement plots (bmdqct.plotting.agreement) and the ``bmdqct agreement`` command."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from bmdqct import agreement as A
from bmdqct.cli import main
from bmdqct.plotting import plot_bland_altman, plot_regression, plot_roc

LEVELS = ("T12", "L1", "L2")


def _cohort(rng, n=80, *, offset=3.0):
    """Reference and 'ours' CSV tables with a known offset (ours = reference + offset + noise)."""
    true = rng.normal(105, 35, n).clip(20, 240)
    ids = [f"case{i:03d}" for i in range(n)]
    reference = pd.DataFrame({"case": ids, "sex": rng.choice(["F", "M"], n)})
    ours = pd.DataFrame({"case": ids, "status": "ok", "error": ""})
    for k, level in enumerate(LEVELS):
        ref = true * (1.04 - 0.02 * k) + rng.normal(0, 3, n)
        reference[f"{level}_bmd_mg_cm3"] = ref
        ours[f"{level}_bmd_mg_cm3"] = ref + offset + rng.normal(0, 6, n)
    for table in (reference, ours):
        table["bmd_l1_l2_mg_cm3"] = (table["L1_bmd_mg_cm3"] + table["L2_bmd_mg_cm3"]) / 2
    return reference, ours


# --------------------------------------------------------------------------- plots


def test_plots_draw_the_numbers_of_the_results(close_figures):
    x = np.array([85, 102, 64, 130, 118, 71, 95, 150, 58, 110], float)
    y = np.array([88, 99, 69, 127, 121, 75, 92, 155, 60, 114], float)
    ba = A.bland_altman(x, y)
    ax = plot_bland_altman(ba, ci="exact", proportional=True)
    heights = [line.get_ydata()[0] for line in ax.get_lines()[:3]]
    assert heights == pytest.approx([ba.bias, ba.lower, ba.upper])
    low, high = ax.get_ylim()
    assert low < ba.lower_ci_exact[0] and high > ba.upper_ci_exact[1]     # CI bands are visible
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([ba.means, ba.differences]))

    from matplotlib.figure import Figure

    fig = Figure()
    given = fig.add_subplot()
    reg = A.linear_regression(x, y)
    assert plot_regression(reg, ax=given) is given
    fit = given.get_lines()[1]
    assert fit.get_ydata() == pytest.approx(reg.predict(fit.get_xdata()))
    assert "r = 0.994" in given.get_legend().get_texts()[2].get_text()
    roc = A.roc_analysis([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0], -np.array([62, 75, 81, 70, 95, 110, 78, 130,
                                                                         88, 101, 66, 125.0]))
    ax = plot_roc({"osteoporosis": roc}, logit_ci=True)
    assert ax.get_lines()[0].get_xydata() == pytest.approx(np.column_stack([roc.fpr, roc.tpr]))
    assert "AUC 0.971 (0.662–0.998)" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="ci must be"):
        plot_bland_altman(ba, ci="bootstrap")


# --------------------------------------------------------------------------- command


def test_agreement_command_writes_report_tables_and_figures(tmp_path, rng, capsys):
    reference, ours = _cohort(rng)
    ours.loc[5, "status"] = "failed"                    # a failed case must be left out
    ours = ours.drop(index=7)                           # a case missing from our results
    reference.to_csv(tmp_path / "reference.csv", index=False)
    ours.to_csv(tmp_path / "results.csv", index=False)
    out = tmp_path / "REPORT"
    code = main(["agreement", "--ours", str(tmp_path / "results.csv"), "--reference",
                 str(tmp_path / "reference.csv"), "-o", str(out), "--levels", "L1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "79 matched cases (1 not ok" in printed and "AUC osteoporosis" in printed
    for name in ("report.md", "report.html", "population.csv", "table1_agreement.csv",
                 "table1b_method_comparison.csv", "table2_diagnostic.csv", "table3_categories.csv", "table3b_kappa.csv",
                 "table4_bland_altman_by_group.csv", "regression_L1.png", "bland_altman_L1.png",
                 "regression_L1-L2.png", "figure_agreement.png", "roc.png"):
        assert (out / name).is_file(), name
    # The tables hold what the library computes on the joined, filtered data.
    joined = reference.merge(ours, on="case", suffixes=("_ref", "_ours"))
    joined = joined[joined["status"] == "ok"]
    expected = A.bland_altman(joined["L1_bmd_mg_cm3_ref"], joined["L1_bmd_mg_cm3_ours"])
    table1 = pd.read_csv(out / "table1_agreement.csv", index_col="name")
    assert table1.loc["L1", "ba_n"] == 78
    assert table1.loc["L1", "ba_bias"] == pytest.approx(expected.bias, rel=1e-9)
    assert table1.loc["L1", "ba_upper"] == pytest.approx(expected.upper, rel=1e-9)
    assert table1.loc["L1", "ba_bias"] == pytest.approx(3.0, abs=2.0)    # offset 3, SE ~0.75
    table2 = pd.read_csv(out / "table2_diagnostic.csv", index_col="name")
    acc = A.threshold_accuracy(joined["bmd_l1_l2_mg_cm3_ref"], joined["bmd_l1_l2_mg_cm3_ours"],
                               task=A.LOW_BMD)
    row = table2.loc["low BMD | All"]
    assert (row["tp"], row["fn"], row["fp"], row["tn"]) == (acc.tp, acc.fn, acc.fp, acc.tn)
    assert {"osteoporosis | sex = F", "osteoporosis | sex = M"} <= set(table2.index)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Table 2. Diagnostic performance" in report and "![" in report
    assert f"{acc.sensitivity.count}/{acc.sensitivity.total}" in report
    assert "<table>" in (out / "report.html").read_text(encoding="utf-8")


def test_agreement_command_with_custom_columns_and_no_figures(tmp_path, rng, capsys):
    reference, ours = _cohort(rng, n=40)
    reference = reference.rename(columns={"case": "id", "L1_bmd_mg_cm3": "qct_L1",
                                          "bmd_l1_l2_mg_cm3": "qct_dx", "sex": "gender"})
    ours = ours.rename(columns={"case": "id"}).assign(T12_bmd_mg_cm3=np.nan)   # T12 never measured
    reference = reference.rename(columns={"T12_bmd_mg_cm3": "qct_T12"})
    reference.to_csv(tmp_path / "ref.csv", index=False)
    ours.to_csv(tmp_path / "ours.csv", index=False)
    code = main(["agreement", "--ours", str(tmp_path / "ours.csv"), "--reference", str(tmp_path / "ref.csv"),
                 "-o", str(tmp_path / "R"), "--id-column", "id", "--levels", "T12", "L1",
                 "--reference-column", "qct_{level}", "--reference-dx-column", "qct_dx", "--group", "gender",
                 "--no-figures", "--reference-name", "QCT Pro"])
    assert code == 0
    assert not list((tmp_path / "R").glob("*.png"))
    table4 = pd.read_csv(tmp_path / "R" / "table4_bland_altman_by_group.csv", index_col="name")
    assert set(table4.index) == {"gender = F", "gender = M"}
    report = (tmp_path / "R" / "report.md").read_text(encoding="utf-8")
    assert "QCT Pro mean ± SD" in report
    assert "T12: not analysed (bland_altman needs at least 3 complete pairs; got 0 after dropping 40" in report
    capsys.readouterr()


@pytest.mark.parametrize(
    "change, match",
    [(lambda ref, ours, tmp: ["--ours", str(tmp / "missing.csv")], "missing.csv not found"),
     (lambda ref, ours, tmp: ["--levels", "L4"], r"no column 'L4_bmd_mg_cm3' \(expected from --reference-column\)"),
     (lambda ref, ours, tmp: ["--id-column", "patient"], "no case id column 'patient'"),
     (lambda ref, ours, tmp: ["--thresholds", "120", "80"], "must be increasing"),
     (lambda ref, ours, tmp: ["--group", "scanner"], "--group 'scanner': no such column")],
)
def test_agreement_command_errors_name_the_problem(tmp_path, rng, capsys, change, match):
    reference, ours = _cohort(rng, n=20)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    ours.to_csv(tmp_path / "results.csv", index=False)
    args = {"--ours": str(tmp_path / "results.csv"), "--reference": str(tmp_path / "reference.csv"),
            "-o": str(tmp_path / "R")}
    extra = change(reference, ours, tmp_path)
    if extra[0] in args:
        args[extra[0]] = extra[1]
        extra = extra[2:]
    argv = ["agreement", *[v for pair in args.items() for v in pair], *extra, "--no-figures"]
    assert main(argv) == 1
    assert re.search(match, capsys.readouterr().err)


def test_agreement_command_refuses_disjoint_ids_and_duplicates(tmp_path, rng, capsys):
    reference, ours = _cohort(rng, n=20)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    ours.assign(case=lambda t: "x" + t["case"]).to_csv(tmp_path / "other.csv", index=False)
    pd.concat([ours, ours.iloc[:1]]).to_csv(tmp_path / "dup.csv", index=False)
    for name, match in (("other.csv", "no case id is in both"), ("dup.csv", "more than once")):
        code = main(["agreement", "--ours", str(tmp_path / name), "--reference", str(tmp_path / "reference.csv"),
                     "-o", str(tmp_path / "R"), "--no-figures"])
        assert code == 1 and match in capsys.readouterr().err


def test_agreement_command_accepts_a_reference_with_only_the_l1_l2_value(tmp_path, rng, capsys):
    reference, ours = _cohort(rng, n=40)
    reference = reference[["case", "bmd_l1_l2_mg_cm3"]]        # no per-level columns
    reference.to_csv(tmp_path / "reference.csv", index=False)
    ours.to_csv(tmp_path / "results.csv", index=False)
    out = tmp_path / "R"
    assert main(["agreement", "--ours", str(tmp_path / "results.csv"), "--reference",
                 str(tmp_path / "reference.csv"), "-o", str(out), "--no-figures"]) == 0
    assert "40 matched cases" in capsys.readouterr().out
    table2 = pd.read_csv(out / "table2_diagnostic.csv", index_col="name")
    acc = A.threshold_accuracy(reference["bmd_l1_l2_mg_cm3"], ours["bmd_l1_l2_mg_cm3"], task=A.LOW_BMD)
    row = table2.loc["low BMD | All"]
    assert (row["tp"], row["fn"], row["fp"], row["tn"]) == (acc.tp, acc.fn, acc.fp, acc.tn)
    # an explicitly requested level the reference lacks is still an error naming the column
    assert main(["agreement", "--ours", str(tmp_path / "results.csv"), "--reference",
                 str(tmp_path / "reference.csv"), "-o", str(out), "--no-figures", "--levels", "L1"]) == 1
    assert "no column 'L1_bmd_mg_cm3'" in capsys.readouterr().err


def test_roc_legend_says_when_the_auc_ci_cannot_be_trusted(close_figures):
    # 3 positives, perfectly separated: DeLong gives the zero-width 1.000-1.000
    roc = A.roc_analysis([1, 1, 1, 0, 0, 0, 0, 0], [0.9, 0.8, 0.7, 0.3, 0.2, 0.4, 0.1, 0.5])
    assert roc.auc == 1.0
    text = plot_roc(roc).get_legend().get_texts()[0].get_text()
    assert "AUC 1.000 (CI not reliable with 3 positive)" in text and "1.000–1.000" not in text
