"""Figures of method-comparison and diagnostic studies (results of :mod:`bmdqct.agreement`).

Every function draws an already computed result, accepts ``ax=`` and returns the Axes.
Without `ax`, a new :class:`matplotlib.figure.Figure` is created (no pyplot state); get
it with ``ax.figure`` and save it with ``ax.figure.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["plot_regression", "plot_bland_altman", "plot_roc"]

_POINTS = {"s": 14, "alpha": 0.6, "color": "#1f77b4", "edgecolor": "none"}


def _axes(ax, figsize=(5.0, 5.0)):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _signed(value: float, digits: int) -> str:
    return f"{'−' if value < 0 else '+'} {abs(value):.{digits}f}"


def plot_regression(result, *, ax=None, reference_name: str = "reference", test_name: str = "test",
                    units: str = "mg/cm³", title: str | None = None, scatter_kws: Mapping | None = None):
    """Scatter of test vs reference with the identity line and the fitted line.

    Parameters
    ----------
    result : RegressionResult
        From :func:`bmdqct.agreement.linear_regression`, :func:`~bmdqct.agreement.deming_regression`
        or :func:`~bmdqct.agreement.passing_bablok` (it holds the data).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new Figure.
    reference_name, test_name : str, optional
        Axis names, e.g. ``"QCT"`` and ``"bmdqct"``.
    units : str, optional
        Unit shown on both axes.
    title : str, optional
    scatter_kws : mapping, optional
        Extra keyword arguments of ``ax.scatter`` (not modified).

    Returns
    -------
    matplotlib.axes.Axes
        Equal axis ranges; the legend gives the equation, r and n.

    Examples
    --------
    >>> from bmdqct.agreement import linear_regression
    >>> ax = plot_regression(linear_regression([80, 100, 120, 140], [82, 98, 123, 141]))
    >>> len(ax.get_lines())
    2
    """
    ax = _axes(ax)
    x, y = result.reference, result.test
    ax.scatter(x, y, **{**_POINTS, "label": f"subjects (n = {result.n})", **dict(scatter_kws or {})})
    low = float(min(x.min(), y.min()))
    high = float(max(x.max(), y.max()))
    pad = 0.05 * (high - low)
    grid = np.array([low - pad, high + pad])
    ax.plot(grid, grid, color="0.5", linestyle="--", linewidth=1, label="identity (y = x)")
    method = "" if result.method == "OLS" else f" ({result.method})"
    ax.plot(grid, result.predict(grid), color="#d62728", linewidth=1.5,
            label=f"y = {result.slope:.3f}x {_signed(result.intercept, 1)}{method}\n"
                  f"r = {result.r:.3f}, R² = {result.r_squared:.3f}")
    ax.set_xlim(*grid)
    ax.set_ylim(*grid)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(f"{reference_name} ({units})")
    ax.set_ylabel(f"{test_name} ({units})")
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return ax


def plot_bland_altman(result, *, ax=None, ci: str | None = "approximate",
                      reference_name: str = "reference", test_name: str = "test",
                      units: str = "mg/cm³", proportional: bool = False, title: str | None = None,
                      scatter_kws: Mapping | None = None):
    """Bland–Altman plot: differences against means, bias, limits of agreement and their CIs.

    Parameters
    ----------
    result : BlandAltmanResult
        From :func:`bmdqct.agreement.bland_altman` (it holds the data).
    ax : matplotlib.axes.Axes, optional
    ci : {"approximate", "exact", None}, optional
        Which confidence intervals to shade: Bland & Altman 1986 (default), the exact
        non-central-t ones, or none. The bias CI is shaded in both cases.
    reference_name, test_name : str, optional
        Names in the axis labels; the difference is ``test - reference``.
    units : str, optional
        Unit of the values (percentage plots always say %).
    proportional : bool, optional
        Also draw the regression of the differences on the means (proportional bias).
    title : str, optional
    scatter_kws : mapping, optional
        Extra keyword arguments of ``ax.scatter`` (not modified).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        Unknown `ci`.

    Examples
    --------
    >>> from bmdqct.agreement import bland_altman
    >>> ax = plot_bland_altman(bland_altman([85, 102, 64, 130, 118], [88, 99, 69, 127, 121]))
    >>> [round(line.get_ydata()[0], 2) for line in ax.get_lines()[:3]]
    [1.0, -6.33, 8.33]
    """
    if ci not in ("approximate", "exact", None):
        raise ValueError(f"ci must be 'approximate', 'exact' or None; got {ci!r}")
    ax = _axes(ax, figsize=(6.0, 4.5))
    ax.scatter(result.means, result.differences, **{**_POINTS, **dict(scatter_kws or {})})
    ax.axhline(result.bias, color="#d62728", linewidth=1.5)
    ax.axhline(result.lower, color="0.3", linestyle="--", linewidth=1.2)
    ax.axhline(result.upper, color="0.3", linestyle="--", linewidth=1.2)
    ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    spans = [result.bias_ci]
    if ci is not None:
        spans += ([result.lower_ci, result.upper_ci] if ci == "approximate"
                  else [result.lower_ci_exact, result.upper_ci_exact])
    colours = ["#d62728", "0.5", "0.5"]
    for (low, high), colour in zip(spans, colours):
        ax.axhspan(low, high, color=colour, alpha=0.15, linewidth=0)
    if proportional:
        grid = np.array([result.means.min(), result.means.max()])
        ax.plot(grid, result.intercept + result.slope * grid, color="#ff7f0e", linewidth=1,
                label=f"d = {result.slope:.3f}·mean {_signed(result.intercept, 1)} (p = {result.slope_p:.3f})")
        ax.legend(loc="lower left", fontsize="small", frameon=False)
    unit = "%" if result.percent else units
    digits = 1
    labels = [(result.upper, f"+{result.limits:g} SD: {result.upper:.{digits}f}"),
              (result.bias, f"bias: {result.bias:.{digits}f}"),
              (result.lower, f"−{result.limits:g} SD: {result.lower:.{digits}f}")]
    bounds = [v for pair in spans for v in pair] + [result.differences.min(), result.differences.max()]
    low, high = min(bounds), max(bounds)
    pad = 0.08 * (high - low)
    ax.set_ylim(low - pad, high + pad)
    for value, text in labels:
        ax.annotate(text, xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(-3, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize="small",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                          "alpha": 0.8})
    what = "difference (%)" if result.percent else f"difference ({unit})"
    ax.set_ylabel(f"{test_name} − {reference_name} {what}")
    ax.set_xlabel(f"mean of {reference_name} and {test_name} ({units})")
    if title:
        ax.set_title(title)
    return ax


#: Fewer positives (or negatives) than this, or a zero-width interval: the legend says the
#: DeLong CI cannot be trusted instead of printing it.
MIN_CASES_FOR_AUC_CI = 5


def plot_roc(results, *, ax=None, title: str | None = None, logit_ci: bool = False):
    """ROC curves with their AUC and DeLong 95 % CI in the legend.

    With fewer than :data:`MIN_CASES_FOR_AUC_CI` positive or negative cases, or a
    zero-width interval (perfect separation), the legend says the CI is not
    reliable instead of printing it.

    Parameters
    ----------
    results : ROCResult or mapping of str to ROCResult
        One curve, or several named curves (e.g. ``{"osteoporosis": ..., "low BMD": ...}``).
    ax : matplotlib.axes.Axes, optional
    title : str, optional
    logit_ci : bool, optional
        Show the logit-scale AUC interval instead of the clipped Wald interval.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bmdqct.agreement import roc_analysis
    >>> ax = plot_roc({"test": roc_analysis([1, 1, 0, 0, 1, 0], [0.9, 0.7, 0.4, 0.6, 0.8, 0.1])})
    >>> ax.get_legend().get_texts()[0].get_text().splitlines()
    ['test', 'AUC 1.000 (CI not reliable with 3 positive), 3/6 positive']
    """
    ax = _axes(ax)
    if not isinstance(results, Mapping):
        results = {"ROC": results}
    styles = ("-", "--", "-.", ":")          # curves that coincide stay distinguishable
    for k, (name, res) in enumerate(results.items()):
        low, high = res.auc_ci_logit if logit_ci else res.auc_ci
        few = min(res.n_positive, res.n_negative)
        if few < MIN_CASES_FOR_AUC_CI:                      # DeLong's variance is then no guide
            interval = f"CI not reliable with {few} {'positive' if res.n_positive == few else 'negative'}"
        elif not high > low:                                 # perfect separation: a zero-width interval
            interval = f"CI not reliable: zero width at {low:.3f}"
        else:
            interval = f"{low:.3f}–{high:.3f}"
        # Corner points joined by straight lines: tied scores give the diagonal segment
        # whose area the AUC counts as ½.
        ax.plot(res.fpr, res.tpr, linewidth=1.8, linestyle=styles[k % len(styles)],
                label=f"{name}\nAUC {res.auc:.3f} ({interval}), "
                      f"{res.n_positive}/{res.n_positive + res.n_negative} positive")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return ax
