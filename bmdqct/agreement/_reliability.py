"""Reliability and precision: ICC and ISCD precision error (private; see :mod:`bmdqct.agreement`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ._common import _check_confidence, _check_count, _interval, _ragged

logger = logging.getLogger("bmdqct.agreement")

__all__ = ["ICC_KINDS", "ICCResult", "PrecisionResult", "LSC_FACTOR", "icc", "precision_error"]

Interval = tuple[float, float]

#: Shrout & Fleiss (1979) forms -> description (McGraw & Wong 1996 name in brackets).
ICC_KINDS = {
    "1,1": "one-way random, single measurement [ICC(1)]",
    "2,1": "two-way random, absolute agreement, single measurement [ICC(A,1)]",
    "3,1": "two-way mixed, consistency, single measurement [ICC(C,1)]",
    "1,k": "one-way random, mean of k measurements [ICC(k)]",
    "2,k": "two-way random, absolute agreement, mean of k measurements [ICC(A,k)]",
    "3,k": "two-way mixed, consistency, mean of k measurements [ICC(C,k)]",
}

#: Least significant change factor at 95 % confidence: 1.96·√2 = 2.77 (ISCD).
LSC_FACTOR = 2.77


@dataclass(frozen=True)
class ICCResult:
    """An intraclass correlation coefficient with its F test and confidence interval.

    Attributes
    ----------
    kind : str
        Shrout & Fleiss form, one of :data:`ICC_KINDS` (``"2,1"`` = ICC(A,1)).
    description : str
    value : float
    ci : (float, float)
        F-distribution interval (Shrout & Fleiss 1979; McGraw & Wong 1996).
    f, df1, df2, p_value : float, int, float, float
        F test of ICC = 0.
    n_subjects, n_raters, n_dropped : int
        Rows used, columns (methods/raters), rows dropped because a value was NaN.
    confidence : float
    """

    kind: str
    description: str
    value: float
    ci: Interval
    f: float
    df1: int
    df2: float
    p_value: float
    n_subjects: int
    n_raters: int
    n_dropped: int
    confidence: float


def icc(ratings, *, kind: str = "2,1", confidence: float = 0.95) -> ICCResult:
    """Intraclass correlation of the Shrout & Fleiss forms from a subjects × methods table.

    Parameters
    ----------
    ratings : (n_subjects, k) array_like
        One row per subject, one column per method (rater, session). Rows with a NaN are
        dropped (counted in ``n_dropped``).
    kind : {"1,1", "2,1", "3,1", "1,k", "2,k", "3,k"}, optional
        ``"2,1"`` (default) is two-way random absolute agreement of single measurements
        (ICC(A,1) of McGraw & Wong), the usual choice for method comparison; ``"3,1"`` is
        consistency (ICC(C,1)), which ignores a constant offset between methods.
    confidence : float, optional

    Returns
    -------
    ICCResult

    Raises
    ------
    ValueError
        Unknown `kind`, fewer than 2 columns or 3 complete rows, ratings identical
        everywhere, or subjects that do not differ (equal row means).

    Notes
    -----
    From the two-way ANOVA mean squares MSR (subjects), MSC (methods), MSE (residual) and
    the one-way within-subject MSW: ICC(1,1) = (MSR−MSW)/(MSR+(k−1)MSW),
    ICC(2,1) = (MSR−MSE)/(MSR+(k−1)MSE+k(MSC−MSE)/n), ICC(3,1) = (MSR−MSE)/(MSR+(k−1)MSE),
    and the k-forms ICC(1,k) = (MSR−MSW)/MSR, ICC(2,k) = (MSR−MSE)/(MSR+(MSC−MSE)/n),
    ICC(3,k) = (MSR−MSE)/MSR. The ICC(2,·) interval uses Satterthwaite's degrees of
    freedom (McGraw & Wong 1996, Table 7), as R ``psych::ICC`` and pingouin do.

    References
    ----------
    .. [1] Shrout PE, Fleiss JL (1979). Intraclass correlations: uses in assessing rater
       reliability. Psychol Bull 86(2):420-428.
    .. [2] McGraw KO, Wong SP (1996). Forming inferences about some intraclass correlation
       coefficients. Psychol Methods 1(1):30-46.

    Examples
    --------
    The Shrout & Fleiss (1979) example, 6 subjects rated by 4 judges:

    >>> data = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> round(icc(data, kind="2,1").value, 2), round(icc(data, kind="3,1").value, 2)
    (0.29, 0.71)
    """
    confidence = _check_confidence(confidence)
    if kind not in ICC_KINDS:
        raise ValueError(f"kind must be one of {list(ICC_KINDS)} (Shrout & Fleiss forms); got {kind!r}")
    table = np.array(ratings, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"icc needs a 2-D table with one row per subject and at least 2 columns "
                         f"(methods); got shape {table.shape}")
    if np.isinf(table).any():
        raise ValueError("icc: ratings contain infinite values; use NaN for missing ratings")
    complete = ~np.isnan(table).any(axis=1)
    n_dropped = int((~complete).sum())
    if n_dropped:
        logger.info("icc: dropped %d of %d rows with a missing (NaN) value", n_dropped, table.shape[0])
    table = table[complete]
    n, k = table.shape
    _check_count(n, 3, what="icc", unit="complete rows (subjects)", n_dropped=n_dropped)
    from scipy import stats  # lazy: scipy.stats costs ~0.7 s to import

    grand = table.mean()
    row_means, col_means = table.mean(axis=1), table.mean(axis=0)
    ss_rows = k * ((row_means - grand) ** 2).sum()
    ss_cols = n * ((col_means - grand) ** 2).sum()
    # residual of the two-way model, summed directly so that it is never negative
    ss_error = ((table - row_means[:, None] - col_means[None, :] + grand) ** 2).sum()
    if ss_rows + ss_cols + ss_error == 0:
        raise ValueError("icc: every rating is identical; the ICC is undefined")
    if ss_rows == 0:
        raise ValueError("icc: every subject has the same mean rating, so there is no between-subject "
                         "variance and the ICC (its share of the total) is undefined")
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_error) / (n * (k - 1))
    alpha = 1.0 - confidence
    q = 1.0 - alpha / 2.0
    error_ms, df2 = (msw, n * (k - 1)) if kind.startswith("1") else (mse, (n - 1) * (k - 1))
    # Ratings that agree exactly (up to what the model allows: a rater offset for the two-way
    # forms) leave no error variance: F is infinite and the ICC is 1 for forms 1 and 3.
    f = msr / error_ms if error_ms > 0 else math.inf
    df1 = n - 1
    p_value = float(stats.f.sf(f, df1, df2))
    single = kind.endswith(",1")
    if kind.startswith("2"):
        value1 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        if value1 >= 1.0:      # no rater offset and no error: perfect absolute agreement
            low1 = high1 = 1.0
        else:
            a = k * value1 / (n * (1 - value1))
            b = 1 + k * value1 * (n - 1) / (n * (1 - value1))
            v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
            fu = stats.f.ppf(q, n - 1, v)
            fl = stats.f.ppf(q, v, n - 1)
            low1 = n * (msr - fu * mse) / (fu * (k * msc + (k * n - k - n) * mse) + n * msr)
            high1 = n * (fl * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fl * msr)
        if single:
            value, ci = value1, (low1, high1)
        else:
            value = (msr - mse) / (msr + (msc - mse) / n)
            ci = tuple(c * k / (1 + (k - 1) * c) for c in (low1, high1))
    elif math.isinf(f):
        value, ci = 1.0, (1.0, 1.0)
    else:
        f_low = f / stats.f.ppf(q, df1, df2)
        f_high = f * stats.f.ppf(q, df2, df1)
        if single:
            value = (f - 1) / (f + k - 1)  # (MSR - MS)/(MSR + (k-1) MS), MS = MSW or MSE
            ci = ((f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1))
        else:
            value = 1 - 1 / f
            ci = (1 - 1 / f_low, 1 - 1 / f_high)
    return ICCResult(kind=kind, description=ICC_KINDS[kind], value=float(value), ci=_interval(*ci),
                     f=float(f), df1=int(df1), df2=float(df2), p_value=p_value, n_subjects=n,
                     n_raters=k, n_dropped=n_dropped, confidence=confidence)


@dataclass(frozen=True)
class PrecisionResult:
    """Short-term precision error of repeated measurements (ISCD method).

    Attributes
    ----------
    rms_sd : float
        Root-mean-square SD (same unit as the data, e.g. mg/cm³).
    rms_sd_ci : (float, float)
        Chi-square interval of ``rms_sd`` with ``df`` degrees of freedom.
    rms_cv_percent : float
        Root-mean-square coefficient of variation, %.
    lsc, lsc_percent : float
        Least significant change ``2.77 × rms_sd`` and ``2.77 × rms_cv_percent``.
    mean : float
        Grand mean of the subject means.
    n_subjects, n_measurements, df : int
        ``df = n_measurements - n_subjects`` (ISCD asks for ≥ 30).
    confidence : float
    """

    rms_sd: float
    rms_sd_ci: Interval
    rms_cv_percent: float
    lsc: float
    lsc_percent: float
    mean: float
    n_subjects: int
    n_measurements: int
    df: int
    confidence: float


def precision_error(measurements, *, confidence: float = 0.95) -> PrecisionResult:
    """ISCD precision error (RMS-SD, RMS-CV %) and least significant change of repeat scans.

    Parameters
    ----------
    measurements : sequence of (m_i,) array_like
        Repeated measurements of each subject (m_i ≥ 2; NaN ignored), e.g. BMD of 30
        patients scanned twice with repositioning: ``[[80, 82], [120, 117], ...]``.
    confidence : float, optional
        Level of the interval of ``rms_sd``.

    Returns
    -------
    PrecisionResult

    Raises
    ------
    ValueError
        Fewer than 2 subjects, a subject with fewer than 2 values, or a subject mean of 0
        (the CV is undefined).

    Notes
    -----
    Per-subject SD_j (``ddof = 1``). ``RMS-SD = sqrt(Σ df_j SD_j² / Σ df_j)`` with
    ``df_j = m_j - 1``; with equal m_j this is the ISCD ``sqrt(Σ SD_j² / m)``.
    ``RMS-CV = 100·sqrt(Σ df_j (SD_j/mean_j)² / Σ df_j)``. LSC = 2.77 × precision error
    (95 % confidence, 2.77 = 1.96·√2). ISCD asks for 15 patients × 3 scans or 30 × 2
    (≥ 30 degrees of freedom); Glüer et al. (1995) show that arithmetic means instead of
    RMS underestimate precision error.

    References
    ----------
    .. [1] Glüer CC, Blake G, Lu Y, et al. (1995). Accurate assessment of precision errors:
       how to measure the reproducibility of bone densitometry techniques. Osteoporos Int
       5(4):262-270.

    Examples
    --------
    >>> res = precision_error([[80, 82], [120, 117], [95, 96], [60, 63]])
    >>> round(res.rms_sd, 4), round(res.rms_cv_percent, 3), round(res.lsc, 3)
    (1.6956, 2.162, 4.697)
    """
    from scipy import stats

    confidence = _check_confidence(confidence)
    groups = _ragged(measurements, "measurements", min_each=2)
    _check_count(len(groups), 2, what="precision_error")
    means = np.array([g.mean() for g in groups])
    if np.any(means == 0):
        raise ValueError("precision_error: a subject mean is 0, so its CV is undefined")
    sds = np.array([g.std(ddof=1) for g in groups])
    dfs = np.array([g.size - 1 for g in groups])
    df = int(dfs.sum())
    rms_sd = float(math.sqrt((dfs * sds ** 2).sum() / df))
    rms_cv = float(100.0 * math.sqrt((dfs * (sds / means) ** 2).sum() / df))
    alpha = 1.0 - confidence
    ci = (rms_sd * math.sqrt(df / stats.chi2.ppf(1 - alpha / 2, df)),
          rms_sd * math.sqrt(df / stats.chi2.ppf(alpha / 2, df)))
    return PrecisionResult(rms_sd=rms_sd, rms_sd_ci=_interval(*ci), rms_cv_percent=rms_cv,
                           lsc=LSC_FACTOR * rms_sd, lsc_percent=LSC_FACTOR * rms_cv,
                           mean=float(means.mean()), n_subjects=len(groups),
                           n_measurements=int(sum(g.size for g in groups)), df=df,
                           confidence=confidence)
