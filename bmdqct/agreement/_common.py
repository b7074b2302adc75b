"""Private helpers of :mod:`bmdqct.agreement`: input checks, intervals, tables, strata.

Input policy (every public function of :mod:`bmdqct.agreement` follows it):

* paired inputs must be 1-D and equally long (one value per subject), else ``ValueError``;
* a pair with a NaN in either member is **dropped**; the count is returned as
  ``n_dropped`` in the result and logged at INFO (a failed measurement is a NaN in
  ``results.csv``, and dropping it must never go unnoticed);
* infinite values are refused (``ValueError``): they are bugs, not missing data;
* too few complete pairs, or a constant column where a correlation or a regression
  needs variation, raise ``ValueError`` naming the minimum and what was received.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger("bmdqct.agreement")

__all__ = ["StratifiedResult", "stratify", "results_table"]


def _as_1d(values, name: str) -> np.ndarray:
    """`values` as a 1-D float64 array (a copy); refuses non-1-D or infinite input."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numbers (one value per subject); could not convert: {err}") from err
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of values, one per subject; got shape {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{name} contains {int(np.isinf(array).sum())} infinite value(s); "
                         "replace them with NaN (missing) or fix the measurement")
    return array


def _paired(reference, test, *, what: str, min_n: int = 3,
            names: tuple[str, str] = ("reference", "test")) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked float arrays of complete pairs, and the number of pairs dropped for NaN."""
    x, y = _as_1d(reference, names[0]), _as_1d(test, names[1])
    if x.shape != y.shape:
        raise ValueError(f"{what}: {names[0]} and {names[1]} must have the same length (one value per "
                         f"subject, paired by position); got {x.size} and {y.size} values")
    keep = ~(np.isnan(x) | np.isnan(y))
    n_dropped = int(x.size - keep.sum())
    if n_dropped:
        logger.info("%s: dropped %d of %d pairs with a missing (NaN) value", what, n_dropped, x.size)
    x, y = x[keep], y[keep]
    _check_count(x.size, min_n, what=what, unit="complete pairs", n_dropped=n_dropped)
    return x, y, n_dropped


def _check_count(n: int, min_n: int, *, what: str, unit: str = "subjects", n_dropped: int = 0) -> None:
    if n < min_n:
        dropped = f" after dropping {n_dropped} with NaN" if n_dropped else ""
        raise ValueError(f"{what} needs at least {min_n} {unit}; got {n}{dropped}")


def _check_varies(values: np.ndarray, name: str, *, what: str) -> None:
    if np.ptp(values) == 0:
        raise ValueError(f"{what}: {name} is constant (every value is {values[0]:g}); "
                         "a correlation or regression needs values that vary between subjects")


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    return confidence


def _z(confidence: float) -> float:
    """Two-sided standard-normal quantile, e.g. 1.959964 for 0.95."""
    from scipy import stats  # lazy: scipy.stats costs ~0.7 s to import

    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _t(confidence: float, df: float) -> float:
    """Two-sided Student-t quantile with `df` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, df))


def _interval(low: float, high: float) -> tuple[float, float]:
    return (float(low), float(high))


def _fisher_ci(r: float, n: int, confidence: float) -> tuple[float, float]:
    """Fisher z confidence interval of a Pearson correlation (NaN for n < 4)."""
    if n < 4 or abs(r) >= 1.0:
        return (math.nan, math.nan) if n < 4 else (r, r)
    half = _z(confidence) / math.sqrt(n - 3)
    return _interval(math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half))


def _ragged(groups, name: str, *, min_each: int = 1) -> list[np.ndarray]:
    """A sequence of per-subject sequences, NaN removed within each subject."""
    if isinstance(groups, np.ndarray) and groups.ndim == 2:
        groups = list(groups)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise ValueError(f"{name} must be a sequence with one sequence of repeated values per subject, "
                         f"e.g. [[80, 82], [120, 117]]; got {type(groups).__name__}")
    out = []
    for i, values in enumerate(groups):
        array = _as_1d(np.atleast_1d(values), f"{name}[{i}]")
        array = array[~np.isnan(array)]
        if array.size < min_each:
            raise ValueError(f"{name}[{i}] has {array.size} non-missing value(s); "
                             f"each subject needs at least {min_each}")
        out.append(array)
    return out


# --------------------------------------------------------------------------- tables


def _flatten(prefix: str, result: Any, row: dict) -> None:
    """Scalar fields of a (nested) result dataclass into `row`; arrays and mappings are skipped."""
    for f in dataclasses.fields(result):
        value, name = getattr(result, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _flatten(f"{name}_", value, row)
        elif isinstance(value, (bool, int, float, str, np.integer, np.floating)) or value is None:
            row[name] = value.item() if isinstance(value, np.generic) else value
        elif (isinstance(value, tuple) and len(value) == 2
              and all(isinstance(v, (int, float, np.floating)) for v in value)):
            row[f"{name}_low"], row[f"{name}_high"] = float(value[0]), float(value[1])


def results_table(results: Mapping[str, Any]):
    """One row per result: every scalar field, intervals as ``_low``/``_high`` columns.

    Parameters
    ----------
    results : mapping of str to result
        E.g. ``{"L1": bland_altman(...), "L2": bland_altman(...)}``; any result of
        :mod:`bmdqct.agreement`, or a :class:`StratifiedResult` (its groups become rows).

    Returns
    -------
    pandas.DataFrame
        Index named ``"name"``; arrays and mappings inside results are left out.

    Examples
    --------
    >>> from bmdqct.agreement import bland_altman, results_table
    >>> table = results_table({"L1": bland_altman([85, 102, 64, 130], [88, 99, 69, 127])})
    >>> float(table.loc["L1", "bias"]), int(table.loc["L1", "n"])
    (0.5, 4)
    """
    import pandas as pd

    if isinstance(results, StratifiedResult):
        results = results.results
    rows = {}
    for key, result in results.items():
        row: dict = {}
        _flatten("", result, row)
        rows[str(key)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "name"
    return table


# --------------------------------------------------------------------------- strata


@dataclass(frozen=True)
class StratifiedResult:
    """Results of one statistic computed in every group of a grouping column.

    Attributes
    ----------
    by : str
        The grouping column.
    results : mapping of str to result
        Group value (as text) -> result; ``"all"`` holds the unstratified result
        when requested.
    skipped : mapping of str to str
        Groups whose data the statistic refused (too few subjects, one class only,
        ...), with the reason.
    sizes : mapping of str to int
        Rows per group (before any NaN dropping by the statistic).
    """

    by: str
    results: Mapping[str, Any]
    skipped: Mapping[str, str]
    sizes: Mapping[str, int]

    def __getitem__(self, group: str):
        return self.results[group]


def stratify(table, by: str, function: Callable, *, columns: Mapping[str, str],
             options: Mapping[str, Any] | None = None, overall: bool = True) -> StratifiedResult:
    """Apply a statistic of :mod:`bmdqct.agreement` separately in each group of a column.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject.
    by : str
        Grouping column (sex, kVp, scanner, ...). Rows with a missing group are left out
        of the groups but kept in ``"all"``.
    function : callable
        The statistic, e.g. :func:`bland_altman` or :func:`threshold_accuracy`.
    columns : mapping of str to str
        Parameter of `function` -> column of `table` passed as that argument, e.g.
        ``{"reference": "qct_L1", "test": "bmdqct_L1"}``.
    options : mapping, optional
        Further keyword arguments for `function` (not columns); not modified.
    overall : bool, optional
        Also compute the statistic on all rows, stored under ``"all"``.

    Returns
    -------
    StratifiedResult
        A group whose data the statistic refuses (``ValueError``) is recorded in
        ``skipped`` with the reason instead of aborting the others.

    Raises
    ------
    KeyError
        If `by` or a column of `columns` is not in `table`.

    Examples
    --------
    >>> import pandas as pd
    >>> from bmdqct.agreement import bland_altman, stratify
    >>> df = pd.DataFrame({"sex": list("FFFMMMM"), "ref": [80, 90, 100, 110, 120, 130, 140],
    ...                    "ours": [82, 91, 99, 113, 121, 128, 144]})
    >>> res = stratify(df, "sex", bland_altman, columns={"reference": "ref", "test": "ours"})
    >>> sorted(res.results), round(res["M"].bias, 2)
    (['F', 'M', 'all'], 1.5)
    """
    missing = [c for c in (by, *columns.values()) if c not in table.columns]
    if missing:
        raise KeyError(f"stratify: column(s) {missing} not in the table; columns are {list(table.columns)}")
    options = dict(options or {})
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    sizes: dict[str, int] = {}
    groups = [(str(key), rows) for key, rows in table.groupby(by, sort=True, dropna=True)]
    if overall:
        groups.append(("all", table))
    for key, rows in groups:
        sizes[key] = int(len(rows))
        arguments = {param: rows[column].to_numpy() for param, column in columns.items()}
        try:
            results[key] = function(**arguments, **options)
        except ValueError as err:
            logger.info("stratify: %s=%s skipped: %s", by, key, err)
            skipped[key] = str(err)
    return StratifiedResult(by=by, results=results, skipped=skipped, sizes=sizes)
