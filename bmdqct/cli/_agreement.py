"""``bmdqct agreement``: method-comparison report of bmdqct against a reference (see :mod:`bmdqct.cli`).

``bmdqct agreement --ours results.csv --reference reference.csv -o REPORT/`` joins the two
CSVs on the case id and writes ``REPORT/report.md``, ``REPORT/report.html``, one CSV per
table and PNG figures in the layout of Pan et al. (Eur Radiol 2020): agreement per level
(regression and Bland–Altman), diagnostic performance (ROC/AUC, sensitivity, specificity,
PPV, NPV with n/N) overall and by group, and the three-class ACR confusion matrix.
"""

from __future__ import annotations

import argparse
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["register"]

_DEFAULT_LEVELS = ("T12", "L1", "L2")
_DX_COLUMN = "bmd_l1_l2_mg_cm3"
_DX_NAME = "L1–L2"


def register(commands, common) -> None:
    """Add this topic's subcommands to `commands` (an argparse subparsers action)."""
    parser = commands.add_parser(
        "agreement", parents=[common],
        help="compare bmdqct results with reference BMD (tables, figures, report)",
        description="Join bmdqct results with a reference (e.g. QCT) on the case id and write a "
                    "Markdown/HTML report with regression, Bland-Altman, ROC/AUC and "
                    "sensitivity/specificity tables, CSVs of every table and PNG figures.")
    parser.add_argument("--ours", required=True, metavar="CSV",
                        help="results.csv of `bmdqct measure` (or any CSV with the same columns)")
    parser.add_argument("--reference", required=True, metavar="CSV",
                        help="reference BMD per case (default columns: case, T12_bmd_mg_cm3, "
                             "L1_bmd_mg_cm3, L2_bmd_mg_cm3, bmd_l1_l2_mg_cm3, optional sex, age)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder (created)")
    parser.add_argument("--id-column", default="case", help="case id column in both files (default: case)")
    parser.add_argument("--levels", nargs="+", default=None, metavar="LEVEL",
                        help="levels to compare (default: those of T12 L1 L2 that the reference has; a "
                             "reference with only the L1-L2 value gives the diagnostic comparison only)")
    parser.add_argument("--ours-column", default="{level}_bmd_mg_cm3", metavar="TEMPLATE",
                        help="column of a level's BMD in --ours; {level} is replaced (default: %(default)s)")
    parser.add_argument("--reference-column", default="{level}_bmd_mg_cm3", metavar="TEMPLATE",
                        help="column of a level's BMD in --reference (default: %(default)s)")
    parser.add_argument("--ours-dx-column", default=_DX_COLUMN, metavar="COLUMN",
                        help="diagnostic BMD (mean of L1 and L2) in --ours (default: %(default)s)")
    parser.add_argument("--reference-dx-column", default=_DX_COLUMN, metavar="COLUMN",
                        help="diagnostic BMD in --reference (default: %(default)s)")
    parser.add_argument("--group", action="append", metavar="COLUMN",
                        help="stratify by this column (repeatable; default: sex if present)")
    parser.add_argument("--thresholds", nargs=2, type=float, default=[80.0, 120.0], metavar=("LOW", "HIGH"),
                        help="ACR thresholds in mg/cm3: osteoporosis < LOW, low BMD <= HIGH (default: 80 120)")
    parser.add_argument("--reference-name", default="QCT", help="name of the reference method (default: QCT)")
    parser.add_argument("--ours-name", default="bmdqct", help="name of the tested method (default: bmdqct)")
    parser.add_argument("--no-figures", action="store_true", help="write tables only (no PNG figures)")
    parser.add_argument("--title", default="Agreement of bmdqct with the reference BMD", help="report title")
    parser.set_defaults(func=_run_agreement)


# --------------------------------------------------------------------------- data


@dataclass
class _Table:
    """One report table: display strings for Markdown/HTML, numbers for the CSV."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str]]
    numbers: object = None          # pandas.DataFrame written as <name>.csv
    note: str = ""


@dataclass
class _Report:
    title: str
    summary: list[str] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)    # (file name, caption)
    headline: list[str] = field(default_factory=list)


def _read_csv(path: str, id_column: str, role: str):
    import pandas as pd

    from ..errors import InputError

    file = Path(path)
    if not file.is_file():
        raise InputError(f"--{role}: file {file} not found; expected a CSV with one row per case")
    try:
        table = pd.read_csv(file, dtype={id_column: str})
    except (ValueError, OSError) as err:
        raise InputError(f"--{role}: cannot read {file} as CSV: {err}") from err
    if id_column not in table.columns:
        raise InputError(f"--{role}: {file} has no case id column {id_column!r}; columns are "
                         f"{list(table.columns)}; pass --id-column")
    duplicated = table[id_column][table[id_column].duplicated()].unique().tolist()
    if duplicated:
        raise InputError(f"--{role}: {file} lists case id(s) {duplicated[:5]} more than once; "
                         "expected one row per case")
    return table


def _column(table, name: str, file: str, option: str):
    import pandas as pd

    from ..errors import InputError

    if name not in table.columns:
        raise InputError(f"{file} has no column {name!r} (expected from {option}); columns are "
                         f"{list(table.columns)}; pass {option} to name the right column")
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)


# --------------------------------------------------------------------------- formatting


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _ci(interval, digits: int = 1) -> str:
    return f"[{_f(interval[0], digits)}, {_f(interval[1], digits)}]"


def _mean_sd(values) -> str:
    """``mean ± SD`` (ddof = 1) of the finite values, ``n/a`` with fewer than two."""
    import numpy as np

    known = np.asarray(values, dtype=float)
    known = known[np.isfinite(known)]
    return "n/a" if known.size < 2 else f"{_f(known.mean())} ± {_f(known.std(ddof=1))}"


def _pct(p) -> str:
    """A Proportion as ``n/N (xx.x %) [lo, hi]``, Wilson CI in %."""
    if p.total == 0:
        return "0/0 (n/a)"
    return f"{p.count}/{p.total} ({100 * p.estimate:.1f} %) [{100 * p.ci[0]:.1f}, {100 * p.ci[1]:.1f}]"


def _markdown_table(table: _Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    lines += ["", f"CSV: [{table.name}.csv]({table.name}.csv)", ""]
    return "\n".join(lines)


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    note = f"<p class='note'>{html.escape(table.note)}</p>" if table.note else ""
    return (f"<h3>{html.escape(table.title)}</h3><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{note}"
            f"<p class='csv'>CSV: <a href='{table.name}.csv'>{table.name}.csv</a></p>")


def _inline_code(text: str) -> str:
    """Markdown `code` spans as HTML <code> elements."""
    pieces = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


_CSS = ("body{font-family:sans-serif;max-width:75em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
        "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:right}"
        "th{background:#eee}td:first-child,th:first-child{text-align:left}"
        ".note{font-size:0.85em;color:#555}img{max-width:32em;margin:0.5em}figure{display:inline-block}")


def _write_report(report: _Report, folder: Path) -> tuple[Path, Path]:
    md = [f"# {report.title}", ""] + report.summary + [""]
    parts = [f"<h1>{html.escape(report.title)}</h1>"]
    parts += [f"<p>{_inline_code(html.escape(line.lstrip('- ')))}</p>" for line in report.summary]
    md.append("## Tables\n")
    parts.append("<h2>Tables</h2>")
    for table in report.tables:
        md.append(_markdown_table(table))
        parts.append(_html_table(table))
        if table.numbers is not None:
            table.numbers.to_csv(folder / f"{table.name}.csv")
    md.append("## Figures\n")
    parts.append("<h2>Figures</h2>")
    for name, caption in report.figures:
        md += [f"![{caption}]({name})", "", f"*{caption}*", ""]
        parts.append(f"<figure><img src='{name}' alt='{html.escape(caption)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    md_path, html_path = folder / "report.md", folder / "report.html"
    md_path.write_text("\n".join(md), encoding="utf-8")
    html_path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                         f"{html.escape(report.title)}</title><style>{_CSS}</style></head><body>"
                         + "\n".join(parts) + "</body></html>\n", encoding="utf-8")
    return md_path, html_path


# --------------------------------------------------------------------------- analysis


def _try(function, *args, **kwargs):
    """(result, None) or (None, reason) when the statistic refuses the data."""
    try:
        return function(*args, **kwargs), None
    except ValueError as err:
        return None, str(err)


def _subsets(groups, n: int):
    """[("All", mask), ("sex = F", mask), ...]: every case, then each value of each group column."""
    import numpy as np

    subsets = [("All", np.ones(n, dtype=bool))]
    for column, values in groups.items():
        text = np.array(["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                         for v in values], dtype=object)
        subsets += [(f"{column} = {g}", text == g) for g in sorted(set(text) - {""})]
    return subsets


def _population_table(merged, ref_dx, groups, thresholds, names, report: _Report):
    """Study population: size, age, sex and reference ACR categories, overall and by group."""
    import numpy as np
    import pandas as pd

    from ..classify import BMDCategory, classify_bmd

    subsets = _subsets(groups, len(merged))
    age = next((merged[c] for c in ("age", "age__ref", "age__ours") if c in merged.columns), None)
    categories = np.array([classify_bmd(v, thresholds=thresholds).value if math.isfinite(v) else ""
                           for v in ref_dx], dtype=object)
    header = ["", *[label for label, _ in subsets]]
    rows = [["cases", *[str(int(keep.sum())) for _, keep in subsets]]]
    numbers = {label: {"n": int(keep.sum())} for label, keep in subsets}
    if age is not None:
        values = pd.to_numeric(age, errors="coerce").to_numpy(dtype=float)
        rows.append(["age, years (mean ± SD)", *[_mean_sd(values[k]) for _, k in subsets]])
        for label, keep in subsets:
            known = values[keep][np.isfinite(values[keep])]
            numbers[label]["age_mean"] = float(known.mean()) if known.size else math.nan
    rows.append([f"{names[0]} BMD {_DX_NAME}, mg/cm³ (mean ± SD)", *[_mean_sd(ref_dx[k]) for _, k in subsets]])
    for category in BMDCategory:
        counts = [(int((categories[k] == category.value).sum()), int((categories[k] != "").sum()))
                  for _, k in subsets]
        rows.append([f"{category.value} by {names[0]}, n (%)",
                     *[f"{c} ({100 * c / t:.1f} %)" if t else "0" for c, t in counts]])
        for (label, _), (c, _t) in zip(subsets, counts):
            numbers[label][f"n_{category.value}"] = c
    report.tables.append(_Table("population", "Study population", header, rows,
                                pd.DataFrame.from_dict(numbers, orient="index").rename_axis("name"),
                                note=f"Categories from the {names[0]} {_DX_NAME} mean (ACR: osteoporosis < "
                                     f"{thresholds[0]:g}, osteopenia {thresholds[0]:g}–{thresholds[1]:g}, "
                                     f"normal > {thresholds[1]:g} mg/cm³)."))


def _agreement_tables(pairs, names, report: _Report):
    """Table 1 (per-level agreement) and Table 1b (regression methods); returns the results."""
    import pandas as pd

    from .. import agreement as A

    rows, extra_rows, numbers, extra_numbers, results = [], [], [], [], {}
    for label, (ref, ours) in pairs.items():
        ba, why = _try(A.bland_altman, ref, ours)
        ols, why_ols = _try(A.linear_regression, ref, ours)
        ccc, why_ccc = _try(A.concordance_correlation, ref, ours)
        icc, why_icc = _try(A.icc, list(zip(ref, ours)), kind="2,1")
        if None in (ba, ols, ccc, icc):
            rows.append([label, "—"] + ["n/a"] * 8)
            report.summary.append(f"- {label}: not analysed ({why or why_ols or why_ccc or why_icc})")
            continue
        pb, _ = _try(A.passing_bablok, ref, ours)
        dem, _ = _try(A.deming_regression, ref, ours)
        results[label] = (ols, ba, ccc)
        x, y = ols.reference, ols.test
        rows.append([
            label, str(ba.n), _mean_sd(x), _mean_sd(y),
            f"y = {ols.slope:.3f}x {'−' if ols.intercept < 0 else '+'} {abs(ols.intercept):.1f}",
            f"{ols.r:.3f} {_ci(ols.r_ci, 3)}", f"{_f(ba.bias)} {_ci(ba.bias_ci)}", _f(ba.sd),
            f"{_f(ba.lower)} to {_f(ba.upper)}", f"{ccc.ccc:.3f} {_ci(ccc.ci, 3)}"])
        extra_rows.append([
            label, f"{ols.slope:.3f} {_ci(ols.slope_ci, 3)}", f"{_f(ols.intercept)} {_ci(ols.intercept_ci)}",
            "n/a" if dem is None else f"{dem.slope:.3f} {_ci(dem.slope_ci, 3)}",
            "n/a" if pb is None else f"{pb.slope:.3f} {_ci(pb.slope_ci, 3)}",
            "n/a" if pb is None else f"{_f(pb.intercept)} {_ci(pb.intercept_ci)}",
            "n/a" if pb is None else _f(pb.cusum_p, 3),
            f"{ba.slope:.3f} (p = {ba.slope_p:.3f})", f"{_ci(ba.lower_ci)} / {_ci(ba.upper_ci)}",
            f"{icc.value:.3f} {_ci(icc.ci, 3)}"])
        numbers.append(pd.concat([A.results_table({label: r}).add_prefix(p) for p, r in
                                  (("ols_", ols), ("ba_", ba), ("ccc_", ccc), ("icc_", icc))], axis=1))
        extra_numbers.append(pd.concat([A.results_table({label: r}).add_prefix(p) for p, r in
                                        (("deming_", dem), ("passing_bablok_", pb)) if r is not None],
                                       axis=1))
    report.tables.append(_Table(
        "table1_agreement", "Table 1. Agreement of BMD (mg/cm³) per level: linear regression and Bland–Altman",
        ["Level", "n", f"{names[0]} mean ± SD", f"{names[1]} mean ± SD", "Regression",
         "r [95 % CI]", "Mean error [95 % CI]", "SD of error", "95 % limits of agreement", "CCC [95 % CI]"],
        rows, pd.concat(numbers) if numbers else None,
        note=f"Error = {names[1]} − {names[0]}; SD with ddof = 1; limits = mean error ± 1.96 SD. "
             "Regression: ordinary least squares of "
             f"{names[1]} on {names[0]}; r with Fisher-z CI; CCC: Lin's concordance correlation."))
    report.tables.append(_Table(
        "table1b_method_comparison", "Table 1b. Method-comparison regression, proportional bias and ICC",
        ["Level", "OLS slope", "OLS intercept", "Deming slope", "Passing–Bablok slope",
         "Passing–Bablok intercept", "CUSUM p", "Proportional bias (d ~ mean)", "CI of limits (approx.)",
         "ICC(2,1)"],
        extra_rows, pd.concat(extra_numbers) if extra_numbers else None,
        note="Deming with equal error variances and jackknife CI; Passing–Bablok with rank CIs and the "
             "CUSUM linearity test (p < 0.05: not linear); proportional bias: OLS slope of the "
             "differences on the means."))
    return results


def _diagnostic_tables(ref_dx, ours_dx, groups, tasks, names, report: _Report):
    """Table 2 (AUC, sensitivity, specificity, PPV, NPV by task and group); returns ROC results."""
    import pandas as pd

    from .. import agreement as A

    subsets = _subsets(groups, ref_dx.size)
    rows, numbers, rocs = [], [], {}
    for task in tasks:
        for label, keep in subsets:
            acc, why_acc = _try(A.threshold_accuracy, ref_dx[keep], ours_dx[keep], task=task)
            roc, why_roc = _try(A.threshold_roc, ref_dx[keep], ours_dx[keep], task=task)
            if label == "All" and roc is not None:
                rocs[f"{task.name} ({task.rule})"] = roc
            auc = "n/a" if roc is None else f"{roc.auc:.3f} {_ci(roc.auc_ci, 3)}"
            if acc is None:
                rows.append([task.name, label, "0", "n/a", auc, "n/a", "n/a", "n/a", "n/a"])
                continue
            rows.append([task.name, label, str(acc.n), str(acc.tp + acc.fn), auc, _pct(acc.sensitivity),
                         _pct(acc.specificity), _pct(acc.ppv), _pct(acc.npv)])
            row = A.results_table({f"{task.name} | {label}": acc})
            row.insert(0, "group", label)
            row.insert(0, "task_rule", task.rule)
            if roc is not None:
                row = pd.concat([row, A.results_table({f"{task.name} | {label}": roc}).add_prefix("roc_")],
                                axis=1)
            else:
                row["roc_not_computed"] = why_roc
            numbers.append(row)
    report.tables.append(_Table(
        "table2_diagnostic", "Table 2. Diagnostic performance of bmdqct for osteoporosis and low BMD",
        ["Task", "Group", "n", "Positive (reference)", "AUC [95 % CI]", "Sensitivity n/N (%) [95 % CI]",
         "Specificity", "PPV", "NPV"],
        rows, pd.concat(numbers) if numbers else None,
        note=f"Truth from {names[0]}: " + "; ".join(f"{t.name} = {t.rule}" for t in tasks)
             + f". The same rule applied to {names[1]} gives the test result; AUC uses −BMD as the score "
               "with DeLong CI (clipped to [0, 1]); proportions with Wilson score CIs."))
    return rocs


def _category_tables(ref_dx, ours_dx, thresholds, names, report: _Report):
    """Table 3 (ACR categories, reference x test) and Table 3b (Cohen's kappa)."""
    from .. import agreement as A
    from ..classify import BMDCategory, classify_bmd

    labels = tuple(c.value for c in BMDCategory)

    def categories(values):
        return [classify_bmd(v, thresholds=thresholds).value if math.isfinite(v) else None for v in values]

    ref_cat, ours_cat = categories(ref_dx), categories(ours_dx)
    cm, why = _try(A.confusion_matrix, ref_cat, ours_cat, labels=labels)
    if cm is None:
        report.summary.append(f"- three-class agreement not computed ({why})")
        return
    rows = [[f"{names[0]}: {label}"] + [str(v) for v in cm.counts[i]] + [str(cm.counts[i].sum())]
            for i, label in enumerate(labels)]
    rows.append(["total"] + [str(v) for v in cm.counts.sum(axis=0)] + [str(cm.n)])
    kappas = {w or "unweighted": _try(A.cohens_kappa, ref_cat, ours_cat, weights=w, labels=labels)[0]
              for w in (None, "linear", "quadratic")}
    note = (f"Overall agreement {_pct(cm.accuracy)}; Cohen's kappa "
            + ", ".join(f"{k} {v.kappa:.3f} {_ci(v.ci, 3)}" for k, v in kappas.items() if v is not None)
            + f". ACR categories of the L1–L2 mean: osteoporosis < {thresholds[0]:g}, "
              f"osteopenia {thresholds[0]:g}–{thresholds[1]:g}, normal > {thresholds[1]:g} mg/cm³.")
    report.tables.append(_Table(
        "table3_categories", f"Table 3. ACR categories: {names[0]} (rows) × {names[1]} (columns)",
        ["", *labels, "total"], rows, cm.to_frame(), note=note))
    report.tables.append(_Table(
        "table3b_kappa", "Table 3b. Cohen's kappa of the three ACR categories",
        ["Weights", "kappa [95 % CI]", "p", "n"],
        [[k, f"{v.kappa:.3f} {_ci(v.ci, 3)}", f"{v.p_value:.2g}", str(v.n)] for k, v in kappas.items()
         if v is not None],
        A.results_table({k: v for k, v in kappas.items() if v is not None})))
    report.headline.append(f"  ACR categories: agreement {_pct(cm.accuracy)}, linear-weighted kappa "
                           f"{kappas['linear'].kappa:.3f}" if kappas["linear"] is not None else "")


def _group_table(ref_dx, ours_dx, groups, names, report: _Report):
    import pandas as pd

    from .. import agreement as A

    rows, numbers = [], []
    for column, values in groups.items():
        frame = pd.DataFrame({"g": values, "ref": ref_dx, "ours": ours_dx})
        res = A.stratify(frame, "g", A.bland_altman, columns={"reference": "ref", "test": "ours"},
                         overall=False)
        for group, ba in res.results.items():
            rows.append([f"{column} = {group}", str(ba.n), f"{_f(ba.bias)} {_ci(ba.bias_ci)}", _f(ba.sd),
                         f"{_f(ba.lower)} to {_f(ba.upper)}"])
        for group, reason in res.skipped.items():
            rows.append([f"{column} = {group}", str(res.sizes[group]), "n/a", "n/a", reason])
        if res.results:
            numbers.append(A.results_table(res.results).rename(index=lambda g, c=column: f"{c} = {g}"))
    if rows:
        report.tables.append(_Table(
            "table4_bland_altman_by_group", f"Table 4. Bland–Altman of the {_DX_NAME} mean by group",
            ["Group", "n", "Mean error [95 % CI]", "SD", "95 % limits of agreement"], rows,
            pd.concat(numbers) if numbers else None))


def _figures(results, rocs, names, folder: Path, report: _Report) -> None:
    from matplotlib.figure import Figure

    from ..plotting.agreement import plot_bland_altman, plot_regression, plot_roc

    for label, (ols, ba, _) in results.items():
        slug = label.replace("–", "-")
        ax = plot_regression(ols, reference_name=names[0], test_name=names[1], title=f"{label}")
        ax.figure.savefig(folder / f"regression_{slug}.png", dpi=120)
        report.figures.append((f"regression_{slug}.png", f"Regression of {names[1]} on {names[0]}, {label}"))
        ax = plot_bland_altman(ba, reference_name=names[0], test_name=names[1], title=f"{label}")
        ax.figure.savefig(folder / f"bland_altman_{slug}.png", dpi=120)
        report.figures.append((f"bland_altman_{slug}.png", f"Bland–Altman plot, {label} (shaded: 95 % CIs)"))
    if results:
        fig = Figure(figsize=(4.2 * len(results), 8.4), layout="constrained")
        axes = fig.subplots(2, len(results), squeeze=False)
        for column, (label, (ols, ba, _)) in enumerate(results.items()):
            plot_regression(ols, ax=axes[0, column], reference_name=names[0], test_name=names[1], title=label)
            plot_bland_altman(ba, ax=axes[1, column], reference_name=names[0], test_name=names[1])
        fig.savefig(folder / "figure_agreement.png", dpi=100)
        report.figures.append(("figure_agreement.png", "Regression (top) and Bland–Altman (bottom) per level"))
    if rocs:
        ax = plot_roc(rocs, title=f"ROC of {names[1]} BMD ({_DX_NAME})")
        ax.figure.savefig(folder / "roc.png", dpi=120)
        report.figures.append(("roc.png", "ROC curves with AUC (DeLong 95 % CI)"))


# --------------------------------------------------------------------------- command


def _run_agreement(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import agreement as A
    from ..errors import InputError

    ours = _read_csv(args.ours, args.id_column, "ours")
    reference = _read_csv(args.reference, args.id_column, "reference")
    low, high = args.thresholds
    if not low < high:
        raise InputError(f"--thresholds must be increasing (LOW HIGH); got {low:g} {high:g}")
    names = (args.reference_name, args.ours_name)
    merged = reference.merge(ours, on=args.id_column, how="inner", suffixes=("__ref", "__ours"))
    if merged.empty:
        raise InputError(f"no case id is in both {args.ours} and {args.reference} (column "
                         f"{args.id_column!r}); check --id-column and the ids")
    status_column = next((c for c in ("status__ours", "status") if c in merged.columns and "status" in ours.columns),
                         None)
    not_ok = (merged[status_column].astype(str).str.lower().ne("ok").to_numpy() if status_column
              else np.zeros(len(merged), dtype=bool))
    n_failed = int(not_ok.sum())

    def columns(template_ours, template_ref, level):
        col_ref, col_ours = template_ref.format(level=level), template_ours.format(level=level)
        ref = _side(merged, col_ref, reference, "__ref", args.reference, "--reference-column")
        tst = _side(merged, col_ours, ours, "__ours", args.ours, "--ours-column")
        return ref, tst

    levels = list(args.levels) if args.levels is not None else [
        level for level in _DEFAULT_LEVELS if args.reference_column.format(level=level) in reference.columns]
    pairs = {level: columns(args.ours_column, args.reference_column, level) for level in levels}
    ref_dx = _side(merged, args.reference_dx_column, reference, "__ref", args.reference, "--reference-dx-column")
    ours_dx = _side(merged, args.ours_dx_column, ours, "__ours", args.ours, "--ours-dx-column")
    for level in pairs:                       # a failed or skipped case has no usable value
        pairs[level][1][not_ok] = np.nan
    ours_dx[not_ok] = np.nan
    pairs[_DX_NAME] = (ref_dx, ours_dx)
    group_columns = args.group if args.group else [c for c in ("sex",) if c in merged.columns
                                                   or f"{c}__ref" in merged.columns]
    groups = {}
    for column in group_columns:
        for name in (column, f"{column}__ref", f"{column}__ours"):
            if name in merged.columns:
                groups[column] = merged[name].to_numpy(dtype=object)
                break
        else:
            raise InputError(f"--group {column!r}: no such column in {args.reference} or {args.ours}")

    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    report = _Report(title=args.title)
    report.summary += [
        f"- {names[1]}: `{args.ours}` ({len(ours)} cases); {names[0]}: `{args.reference}` ({len(reference)} cases)",
        f"- matched on `{args.id_column}`: {len(merged)} cases; only in {names[1]}: {len(ours) - len(merged)}; "
        f"only in {names[0]}: {len(reference) - len(merged)}; {names[1]} status not ok: {n_failed}",
        "- BMD in mg/cm³; differences are " + f"{names[1]} − {names[0]}; missing values drop the case "
        "from that analysis (n per table)."]
    _population_table(merged, ref_dx, groups, (low, high), names, report)
    results = _agreement_tables(pairs, names, report)
    tasks = (A.ThresholdTask("osteoporosis", low, inclusive=False), A.ThresholdTask("low BMD", high, inclusive=True))
    rocs = _diagnostic_tables(ref_dx, ours_dx, groups, tasks, names, report)
    _category_tables(ref_dx, ours_dx, (low, high), names, report)
    _group_table(ref_dx, ours_dx, groups, names, report)
    if not args.no_figures:
        _figures(results, rocs, names, folder, report)
    md_path, html_path = _write_report(report, folder)

    print(f"bmdqct agreement: {len(merged)} matched cases ({n_failed} not ok in {args.ours})")
    for label, (ols, ba, ccc) in results.items():
        print(f"  {label:6s} n = {ba.n:4d}  r = {ols.r:.3f}  bias = {ba.bias:+.1f} mg/cm3  "
              f"LoA {ba.lower:.1f} to {ba.upper:.1f}  CCC = {ccc.ccc:.3f}")
    for name, roc in rocs.items():
        print(f"  AUC {name}: {roc.auc:.3f} [{roc.auc_ci[0]:.3f}, {roc.auc_ci[1]:.3f}]")
    for line in report.headline:
        if line:
            print(line)
    print(f"report: {md_path} and {html_path}")
    return 0


def _side(merged, column: str, source, suffix: str, file: str, option: str):
    """Numeric column of one input in the merged table (suffixed when both files have it)."""
    name = column if column in merged.columns else f"{column}{suffix}"
    if name not in merged.columns or column not in source.columns:
        return _column(source, column, file, option)      # raises the InputError naming the file
    return _column(merged, name, file, option).copy()
