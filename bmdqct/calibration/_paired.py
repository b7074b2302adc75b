"""Paired (reference-device) calibration, the linear function of Pan et al. 2020 (private).

Given trabecular CT numbers measured by bmdqct and BMD values of the same
vertebrae from a reference QCT device (e.g. Mindways QCT Pro with asynchronous
calibration), fit ``BMD = slope * HU + intercept`` by ordinary least squares
(statsmodels), per level or pooled over levels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._core import Calibration, normalize_mineral
from ..errors import CalibrationError

logger = logging.getLogger(__name__)

#: Default levels of a paired study (Pan et al. 2020).
PAIRED_LEVELS = ("T12", "L1", "L2")
#: HU column of a level in ``results.csv`` (result format 3), and its name in older files.
_HU_COLUMN = "{level}_mean_hu"
_LEGACY_HU_COLUMN = "{level}_hu_mean"


@dataclass(frozen=True)
class PairedFit:
    """Result of :func:`fit_paired_calibration`.

    Attributes
    ----------
    calibration : Calibration
        ``method="paired-reference"``; coefficients, CIs and residual SD are
        also in its ``details``.
    level : str
        Level fitted (``"T12"``, ``"L1"``, ...) or ``"pooled"``.
    slope, intercept : float
        OLS coefficients, mg/cm³ per HU and mg/cm³.
    slope_ci, intercept_ci : (float, float)
        Confidence intervals at `confidence`.
    residual_sd_mg_cm3 : float
        Residual standard deviation ``sqrt(SSR / (n - 2))``.
    r : float
        Pearson correlation of HU and reference BMD.
    r_squared : float
    n : int
        Points fitted.
    confidence : float
    cov_type : str
        ``"nonrobust"``, or ``"cluster"`` when points were grouped by subject.
    """

    calibration: Calibration
    level: str
    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    residual_sd_mg_cm3: float
    r: float
    r_squared: float
    n: int
    confidence: float
    cov_type: str


def fit_paired_calibration(hu, bmd_mg_cm3, *, level: str = "pooled", groups=None,
                           confidence: float = 0.95, mineral: str = "K2HPO4",
                           metadata: Mapping | None = None, labels: Sequence[str] | None = None) -> PairedFit:
    """Fit HU -> reference BMD by OLS (statsmodels), with confidence intervals.

    Parameters
    ----------
    hu : (N,) array_like
        Trabecular mean CT numbers, HU.
    bmd_mg_cm3 : (N,) array_like
        Reference BMD of the same vertebrae, mg/cm³ (`mineral`-equivalent).
    level : str, optional
        Name recorded for the fit (``"L1"``, ..., ``"pooled"``).
    groups : (N,) array_like, optional
        Subject of each point. When given (pooled fits hold several vertebrae per
        subject), CIs use cluster-robust standard errors by subject.
    confidence : float, optional
        Level of the CIs, in (0, 1).
    mineral : {"K2HPO4", "HA"}, optional
        Mineral reference of the reference device.
    metadata : mapping, optional
        Scanner fields, ``kvp``, ``kernel``, ``acquisition_date`` to record.
    labels : sequence of str, optional
        Case label of each point, used as keys of ``residuals_mg_cm3``.

    Returns
    -------
    PairedFit

    Raises
    ------
    CalibrationError
        Fewer than 3 valid pairs, NaN/inf values, constant HU, or a slope that is
        not positive.
    ValueError
        If `hu` and `bmd_mg_cm3` differ in length, `confidence` is not in (0, 1), or
        `labels` does not name every pair once.

    Notes
    -----
    BMD is regressed on HU (not the reverse) because the result is used to
    predict BMD from HU. The residual SD is what a single prediction scatters
    by; Pan et al. reported r = 0.964–0.968 for this function.

    Examples
    --------
    >>> fit = fit_paired_calibration([50.0, 100.0, 150.0, 200.0], [40.0, 81.0, 119.0, 161.0])
    >>> round(fit.slope, 3), round(fit.intercept, 2), fit.n
    (0.802, 0.0, 4)
    """
    import statsmodels.api as sm

    x = np.asarray(hu, dtype=np.float64).ravel()
    y = np.asarray(bmd_mg_cm3, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"hu and bmd_mg_cm3 must have the same length, got {x.size} and {y.size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise CalibrationError(f"paired data hold {int(bad.sum())} NaN or infinite value(s) at positions "
                               f"{np.flatnonzero(bad)[:10].tolist()}; drop failed cases before fitting")
    if x.size < 3:
        raise CalibrationError(f"a paired fit needs at least 3 pairs, got {x.size}")
    if np.ptp(x) == 0:
        raise CalibrationError("all HU values are equal; a line cannot be fitted")
    mineral = normalize_mineral(mineral)
    model = sm.OLS(y, sm.add_constant(x, has_constant="add"))
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != x.shape:
            raise ValueError(f"groups must have one entry per pair ({x.size}), got {groups.size}")
        codes = np.unique(groups, return_inverse=True)[1]
        result = model.fit(cov_type="cluster", cov_kwds={"groups": codes})
        cov_type = "cluster"
    else:
        result = model.fit()
        cov_type = "nonrobust"
    intercept, slope = (float(v) for v in result.params)
    if slope <= 0:
        raise CalibrationError(f"paired fit gave a slope of {slope:.4g} mg/cm3 per HU; BMD must rise with HU. "
                               "Are the HU and BMD columns paired correctly?")
    ci = np.asarray(result.conf_int(alpha=1 - confidence))
    residual_sd = float(math.sqrt(result.ssr / result.df_resid))
    r = float(np.corrcoef(x, y)[0, 1])
    keys = [str(v) for v in labels] if labels is not None else [str(i) for i in range(x.size)]
    if len(keys) != x.size or len(set(keys)) != len(keys):
        raise ValueError(f"labels must name each of the {x.size} pairs once; got {len(keys)} labels, "
                         f"{len(keys) - len(set(keys))} repeated")
    meta = dict(metadata or {})
    details = {"fit": "ols", "level": level, "slope_ci": ci[1].tolist(), "intercept_ci": ci[0].tolist(),
               "confidence": confidence, "residual_sd_mg_cm3": residual_sd, "r": r, "cov_type": cov_type,
               "slope_se": float(result.bse[1]), "intercept_se": float(result.bse[0]),
               "range_hu": [float(x.min()), float(x.max())]}
    cal = Calibration(slope=slope, intercept=intercept, mineral=mineral, method="paired-reference",
                      manufacturer=meta.get("manufacturer"), model=meta.get("model"),
                      device_serial=meta.get("device_serial"), station=meta.get("station"),
                      kvp=meta.get("kvp"), kernel=meta.get("kernel"),
                      acquisition_date=meta.get("acquisition_date") or meta.get("study_date"),
                      r_squared=float(result.rsquared), n=int(x.size),
                      residuals_mg_cm3=dict(zip(keys, result.resid.tolist())), details=details)
    logger.info("paired calibration (%s, n=%d): %s, residual SD %.2f mg/cm3", level, x.size, cal.describe(),
                residual_sd)
    return PairedFit(calibration=cal, level=level, slope=slope, intercept=intercept,
                     slope_ci=(float(ci[1, 0]), float(ci[1, 1])),
                     intercept_ci=(float(ci[0, 0]), float(ci[0, 1])), residual_sd_mg_cm3=residual_sd, r=r,
                     r_squared=float(result.rsquared), n=int(x.size), confidence=confidence, cov_type=cov_type)


def fit_paired_table(measured, reference, *, levels: Sequence[str] = PAIRED_LEVELS, pooled: bool = True,
                     on: str = "case", hu_column: str = _HU_COLUMN,
                     reference_column: str = "{level}_bmd_mg_cm3", confidence: float = 0.95,
                     mineral: str = "K2HPO4", metadata: Mapping | None = None) -> dict[str, PairedFit]:
    """Paired fits per level (and pooled) from two tables joined on a case column.

    Parameters
    ----------
    measured : pandas.DataFrame or path
        bmdqct measurements, e.g. ``results.csv`` of ``bmdqct measure`` (columns
        ``case``, ``L1_mean_hu``, ...; the ``L1_hu_mean`` columns of a results.csv
        written before result format 3 are read too). Rows whose ``status`` is
        not ``"ok"`` are dropped when that column exists.
    reference : pandas.DataFrame or path
        Reference-device BMD (columns ``case``, ``L1_bmd_mg_cm3``, ...).
    levels : sequence of str, optional
        Levels to fit.
    pooled : bool, optional
        Also fit all levels together (cluster-robust CIs by case), key ``"pooled"``.
    on, hu_column, reference_column : str, optional
        Join column and column-name templates (``{level}`` is replaced).
    confidence, mineral, metadata
        As in :func:`fit_paired_calibration`.

    Returns
    -------
    dict of str to PairedFit
        Keyed by level, plus ``"pooled"``; levels with fewer than 3 pairs are left out.

    Raises
    ------
    CalibrationError
        A column is missing, the tables share no case, or no level has 3 pairs.

    Examples
    --------
    >>> import pandas as pd
    >>> measured = pd.DataFrame({"case": ["a", "b", "c", "d"], "L1_mean_hu": [60.0, 100.0, 150.0, 200.0]})
    >>> reference = pd.DataFrame({"case": ["a", "b", "c", "d"], "L1_bmd_mg_cm3": [50.0, 79.0, 121.0, 160.0]})
    >>> fits = fit_paired_table(measured, reference, levels=("L1",), pooled=False)
    >>> sorted(fits), round(fits["L1"].slope, 3), fits["L1"].n
    (['L1'], 0.792, 4)
    """
    import pandas as pd

    tables = []
    for name, table in (("measured", measured), ("reference", reference)):
        if not isinstance(table, pd.DataFrame):
            try:
                table = pd.read_csv(table, dtype={on: str})
            except FileNotFoundError as err:
                raise CalibrationError(f"{name} table {table} does not exist") from err
            except (OSError, ValueError) as err:   # pandas' ParserError and UnicodeDecodeError too
                raise CalibrationError(f"{name} table {table} cannot be read as CSV ({err}); expected "
                                       f"one row per case with a {on!r} column") from err
        if on not in table.columns:
            raise CalibrationError(f"{name} table has no {on!r} column to join on; columns are "
                                   f"{list(table.columns)}")
        table = table.assign(**{on: table[on].astype(str)})
        tables.append(table)
    measured, reference = tables
    if "status" in measured.columns:
        measured = measured[measured["status"].astype(str) == "ok"]
    # Take the HU columns from `measured` and the BMD columns from `reference` only: results.csv
    # of `bmdqct measure` has its own L1_bmd_mg_cm3 columns, which must never stand in for the
    # reference values of the same name.
    if hu_column == _HU_COLUMN:   # a results.csv written before result format 3 names it L1_hu_mean
        legacy = {_LEGACY_HU_COLUMN.format(level=lv): hu_column.format(level=lv) for lv in levels}
        measured = measured.rename(columns={old: new for old, new in legacy.items()
                                            if old in measured.columns and new not in measured.columns})
    pairs = {level: (hu_column.format(level=level), reference_column.format(level=level)) for level in levels}
    for level, (h, b) in pairs.items():
        missing = [h] * (h not in measured.columns) + [b] * (b not in reference.columns)
        if missing:
            raise CalibrationError(f"column(s) {missing} missing for level {level} (HU from the measured "
                                   f"table, BMD from the reference table); measured columns are "
                                   f"{list(measured.columns)}, reference columns are {list(reference.columns)}")
    hu_table = measured[[on, *dict.fromkeys(h for h, _ in pairs.values())]]
    bmd_table = reference[[on, *dict.fromkeys(b for _, b in pairs.values())]]
    merged = hu_table.merge(bmd_table, on=on, suffixes=("", "__reference"))
    if merged.empty:
        raise CalibrationError(f"the measured and reference tables share no {on!r} value")
    fits, pooled_parts = {}, []
    for level, (h, b) in pairs.items():
        if b in hu_table.columns and b != on:   # the same name in both tables: merge suffixed it
            b = f"{b}__reference"
        part = merged[[on, h, b]].apply(pd.to_numeric, errors="coerce").assign(**{on: merged[on]}).dropna()
        part = part.rename(columns={h: "hu", b: "bmd"}).assign(level=level)
        if len(part) < 3:
            logger.warning("level %s: only %d complete pairs; not fitted", level, len(part))
            continue
        fits[level] = fit_paired_calibration(part["hu"], part["bmd"], level=level, confidence=confidence,
                                             mineral=mineral, metadata=metadata, labels=part[on].tolist())
        pooled_parts.append(part)
    if pooled and pooled_parts:
        allp = pd.concat(pooled_parts, ignore_index=True)
        fits["pooled"] = fit_paired_calibration(
            allp["hu"], allp["bmd"], level="pooled", groups=allp[on].to_numpy(), confidence=confidence,
            mineral=mineral, metadata=metadata,
            labels=[f"{c}:{lv}" for c, lv in zip(allp[on], allp["level"])])
    if not fits:
        raise CalibrationError(f"no level among {tuple(levels)} has 3 complete pairs to fit")
    return fits
