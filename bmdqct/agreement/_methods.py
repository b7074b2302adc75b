"""Bland–Altman analysis and Lin's CCC (private; see :mod:`bmdqct.agreement`).

Notation of ``docs/qct-reference.md`` §4: reference method x, test method y,
``d = y - x``, ``A = (x + y) / 2``, n complete pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._common import (
    _check_confidence,
    _check_count,
    _check_varies,
    _interval,
    _paired,
    _ragged,
    _t,
    _z,
)

__all__ = [
    "BlandAltmanResult",
    "RegressionLimitsResult",
    "ReplicatesBlandAltmanResult",
    "CCCResult",
    "bland_altman",
    "bland_altman_regression",
    "bland_altman_replicates",
    "concordance_correlation",
]

Interval = tuple[float, float]


# =========================================================================== Bland–Altman


@dataclass(frozen=True, eq=False)
class BlandAltmanResult:
    """Bias and limits of agreement of paired measurements, with their confidence intervals.

    Differences are ``test - reference`` (or ``100 * (test - reference) / mean`` when
    ``percent``); ``sd`` is the **sample** SD (``ddof = 1``, stated in ``ddof``).

    Attributes
    ----------
    n, n_dropped : int
        Complete pairs used; pairs dropped because a value was NaN.
    bias, sd, ddof : float, float, int
        Mean and sample SD of the differences.
    limits : float
        Multiplier of the SD (1.96 for 95 % limits of agreement).
    lower, upper : float
        Limits of agreement ``bias -/+ limits * sd``.
    confidence : float
        Level of every interval below.
    bias_ci : (float, float)
        Student-t interval of the bias.
    lower_ci, upper_ci : (float, float)
        Approximate intervals of the limits (Bland & Altman 1986, ``se = sqrt(3 sd² / n)``).
    lower_ci_exact, upper_ci_exact : (float, float)
        Exact intervals of the limits (non-central t; Carkeet 2015).
    slope, slope_ci, slope_p, intercept : float, (float, float), float, float
        Proportional bias: OLS regression of the differences on the means; a slope whose
        p-value is below 0.05 suggests the difference depends on magnitude.
    percent : bool
        Whether differences are percentages of the pair mean.
    differences, means : (n,) ndarray
        Per-pair differences and means (for plotting).
    """

    n: int
    n_dropped: int
    bias: float
    sd: float
    ddof: int
    limits: float
    lower: float
    upper: float
    confidence: float
    bias_ci: Interval
    lower_ci: Interval
    upper_ci: Interval
    lower_ci_exact: Interval
    upper_ci_exact: Interval
    slope: float
    slope_ci: Interval
    slope_p: float
    intercept: float
    percent: bool
    differences: np.ndarray = field(repr=False)
    means: np.ndarray = field(repr=False)


def bland_altman(reference, test, *, limits: float = 1.96, confidence: float = 0.95,
                 percent: bool = False) -> BlandAltmanResult:
    """Bland–Altman bias, limits of agreement, their CIs and the proportional-bias test.

    Parameters
    ----------
    reference, test : (N,) array_like
        Paired measurements of the same subjects by the reference method (e.g. QCT, mg/cm³)
        and the method under test (e.g. bmdqct). Pairs with a NaN are dropped (counted in
        ``n_dropped``).
    limits : float, optional
        Width of the limits of agreement in SDs of the differences.
    confidence : float, optional
        Level of the confidence intervals, in (0, 1).
    percent : bool, optional
        Analyse percentage differences ``100 * (test - reference) / mean`` (useful when the
        spread grows with magnitude).

    Returns
    -------
    BlandAltmanResult

    Raises
    ------
    ValueError
        If the inputs differ in length, hold fewer than 3 complete pairs, contain infinite
        values, or the pair means are all equal.

    See Also
    --------
    bland_altman_regression : limits that vary with magnitude.
    bland_altman_replicates : several measurements per subject and method.
    bmdqct.plotting.plot_bland_altman : draw a result.

    Notes
    -----
    ``bias = mean(d)``, ``sd = SD(d, ddof=1)``, limits ``bias ± limits·sd`` (Bland & Altman
    1986). The bias CI is ``bias ± t(n-1)·sd/√n``. The approximate CI of each limit is
    ``limit ± t(n-1)·sqrt(3 sd²/n)`` [1]_ (as pingouin does). The exact CI uses the
    non-central t distribution with ``n - 1`` degrees of freedom and non-centrality
    ``limits·√n`` [2]_; it is wider than the approximation for small n. Unlike
    ``statsmodels.graphics.mean_diff_plot`` (population SD), the SD here is the sample SD.

    References
    ----------
    .. [1] Bland JM, Altman DG (1986). Statistical methods for assessing agreement between
       two methods of clinical measurement. Lancet 327(8476):307-310.
       doi:10.1016/S0140-6736(86)90837-8
    .. [2] Carkeet A (2015). Exact parametric confidence intervals for Bland-Altman limits
       of agreement. Optom Vis Sci 92(3):e71-e80. doi:10.1097/OPX.0000000000000513

    Examples
    --------
    >>> res = bland_altman([85, 102, 64, 130, 118], [88, 99, 69, 127, 121])
    >>> round(res.bias, 2), round(res.sd, 3), res.ddof
    (1.0, 3.742, 1)
    >>> tuple(round(v, 2) for v in (res.lower, res.upper))
    (-6.33, 8.33)
    """
    confidence = _check_confidence(confidence)
    limits = _check_limits(limits)
    x, y, n_dropped = _paired(reference, test, what="bland_altman")
    means = (x + y) / 2.0
    _check_varies(means, "the pair mean", what="bland_altman")
    d = y - x
    if percent:
        if np.any(means == 0):
            raise ValueError("bland_altman(percent=True) needs pair means other than 0; "
                             "use percent=False for data around zero")
        d = 100.0 * d / means
    n = d.size
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    lower, upper = bias - limits * sd, bias + limits * sd
    t = _t(confidence, n - 1)
    se_bias, se_limit = sd / math.sqrt(n), math.sqrt(3.0 * sd * sd / n)
    alpha = 1.0 - confidence
    from scipy import stats  # lazy: scipy.stats costs ~0.7 s to import

    # Exact limits: (limit - bias)·√n/sd follows a non-central t with nc = limits·√n.
    q_low, q_high = stats.nct.ppf([alpha / 2, 1 - alpha / 2], df=n - 1, nc=limits * math.sqrt(n))
    upper_exact = _interval(bias + se_bias * q_low, bias + se_bias * q_high)
    lower_exact = _interval(bias - se_bias * q_high, bias - se_bias * q_low)
    slope, intercept, slope_ci, slope_p = _ols_line(means, d, confidence)
    return BlandAltmanResult(
        n=n, n_dropped=n_dropped, bias=bias, sd=sd, ddof=1, limits=float(limits),
        lower=lower, upper=upper, confidence=confidence,
        bias_ci=_interval(bias - t * se_bias, bias + t * se_bias),
        lower_ci=_interval(lower - t * se_limit, lower + t * se_limit),
        upper_ci=_interval(upper - t * se_limit, upper + t * se_limit),
        lower_ci_exact=lower_exact, upper_ci_exact=upper_exact,
        slope=slope, slope_ci=slope_ci, slope_p=slope_p, intercept=intercept,
        percent=bool(percent), differences=d, means=means)


def _check_limits(limits: float) -> float:
    limits = float(limits)
    if not limits > 0:     # also refuses NaN
        raise ValueError(f"limits must be a positive number of SDs (1.96 for 95 % limits); got {limits}")
    return limits


def _ols_line(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, float, Interval, float]:
    """Slope, intercept, slope CI and two-sided slope p-value of y ~ x (statsmodels OLS)."""
    import statsmodels.api as sm

    fit = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    ci = fit.conf_int(alpha=1.0 - confidence)
    return float(fit.params[1]), float(fit.params[0]), _interval(*ci[1]), float(fit.pvalues[1])


@dataclass(frozen=True, eq=False)
class RegressionLimitsResult:
    """Regression-based limits of agreement (Bland & Altman 1999, §3.2).

    ``d = b0 + b1·A`` models the bias; ``|residual| = c0 + c1·A`` models the spread, so the
    limits at mean ``A`` are ``b0 + b1·A ± limits·√(π/2)·(c0 + c1·A)``.

    Attributes
    ----------
    n, n_dropped : int
    b0, b1 : float
        Intercept and slope of the bias line.
    c0, c1 : float
        Intercept and slope of the absolute-residual line.
    limits : float
    means : (n,) ndarray
        Pair means (for plotting).
    differences : (n,) ndarray
    """

    n: int
    n_dropped: int
    b0: float
    b1: float
    c0: float
    c1: float
    limits: float
    means: np.ndarray = field(repr=False)
    differences: np.ndarray = field(repr=False)

    def at(self, mean) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bias, lower and upper limit at the pair mean(s) `mean`."""
        mean = np.asarray(mean, dtype=float)
        bias = self.b0 + self.b1 * mean
        half = self.limits * math.sqrt(math.pi / 2.0) * (self.c0 + self.c1 * mean)
        return bias, bias - half, bias + half


def bland_altman_regression(reference, test, *, limits: float = 1.96) -> RegressionLimitsResult:
    """Limits of agreement that change with magnitude (Bland & Altman 1999).

    Parameters
    ----------
    reference, test : (N,) array_like
        Paired measurements; pairs with a NaN are dropped.
    limits : float, optional
        Multiplier of the residual SD (1.96 for 95 % limits).

    Returns
    -------
    RegressionLimitsResult
        Use ``result.at(mean)`` for the bias and limits at given pair means.

    Raises
    ------
    ValueError
        As :func:`bland_altman`, or `limits` not positive.

    Notes
    -----
    The absolute residuals of a normal variable have mean ``σ·√(2/π)``, hence the factor
    ``√(π/2)`` that turns the fitted mean absolute residual into an SD.

    References
    ----------
    .. [1] Bland JM, Altman DG (1999). Measuring agreement in method comparison studies.
       Stat Methods Med Res 8(2):135-160. doi:10.1177/096228029900800204

    Examples
    --------
    >>> res = bland_altman_regression([50, 80, 110, 140, 170], [51, 83, 105, 148, 160])
    >>> bias, low, high = res.at(100.0)
    >>> bool(low < bias < high)
    True
    """
    limits = _check_limits(limits)
    x, y, n_dropped = _paired(reference, test, what="bland_altman_regression")
    means, d = (x + y) / 2.0, y - x
    _check_varies(means, "the pair mean", what="bland_altman_regression")
    b1, b0 = np.polyfit(means, d, 1)
    residual = np.abs(d - (b0 + b1 * means))
    c1, c0 = np.polyfit(means, residual, 1)
    return RegressionLimitsResult(n=d.size, n_dropped=n_dropped, b0=float(b0), b1=float(b1),
                                  c0=float(c0), c1=float(c1), limits=float(limits),
                                  means=means, differences=d)


@dataclass(frozen=True)
class ReplicatesBlandAltmanResult:
    """Limits of agreement from repeated measurements per subject (Bland & Altman 2007).

    Attributes
    ----------
    n_subjects : int
    n_reference, n_test : int
        Number of measurements by each method (all subjects).
    bias : float
        Mean over subjects of ``mean(test) - mean(reference)``.
    bias_ci : (float, float)
        Student-t interval from the per-subject differences of means.
    sd : float
        SD of the difference between one test and one reference measurement of a subject
        (the SD that the limits use).
    sd_between : float
        SD of the subject-by-method interaction (0 if its estimate is negative).
    sd_within_reference, sd_within_test : float
        Within-subject (repeatability) SD of each method.
    lower, upper : float
        Limits of agreement ``bias ∓ limits·sd``.
    limits, confidence : float
    """

    n_subjects: int
    n_reference: int
    n_test: int
    bias: float
    bias_ci: Interval
    sd: float
    sd_between: float
    sd_within_reference: float
    sd_within_test: float
    lower: float
    upper: float
    limits: float
    confidence: float


def bland_altman_replicates(reference, test, *, limits: float = 1.96,
                            confidence: float = 0.95) -> ReplicatesBlandAltmanResult:
    """Bland–Altman limits when each method measured each subject one or more times.

    Parameters
    ----------
    reference, test : sequence of (m_i,) array_like
        One sequence of repeated measurements per subject and method, e.g.
        ``reference=[[80, 82], [120, 117, 119]]``; subjects in the same order in both.
        Replicates need not be paired or equally many. NaN values are ignored.
    limits, confidence : float, optional
        As in :func:`bland_altman`.

    Returns
    -------
    ReplicatesBlandAltmanResult

    Raises
    ------
    ValueError
        If the two sequences hold different numbers of subjects, fewer than 3 subjects,
        a subject without any value for a method, or `limits` not positive.

    Notes
    -----
    Variance components for a true value that is constant within a subject [1]_: with
    subject means ``x̄_i`` (``m_xi`` values) and ``ȳ_i``, ``s_d² = Var(ȳ_i - x̄_i)`` and
    within-subject variances ``s_xw², s_yw²`` from one-way ANOVA residual mean squares,

    ``σ_d² = s_d² - s_xw²·mean(1/m_xi) - s_yw²·mean(1/m_yi)`` and
    ``sd² = σ_d² + s_xw² + s_yw²``.

    With two replicates each this is the 1999 correction ``s_d² + s_xw²/2 + s_yw²/2`` and
    with one replicate each it reduces to the ordinary :func:`bland_altman` SD.

    References
    ----------
    .. [1] Bland JM, Altman DG (2007). Agreement between methods of measurement with
       multiple observations per individual. J Biopharm Stat 17(4):571-582.
       doi:10.1080/10543400701329422

    Examples
    --------
    >>> res = bland_altman_replicates([[80, 82], [120, 117], [95, 96], [60, 63]],
    ...                               [[83, 84], [121, 118], [99, 97], [61, 66]])
    >>> round(res.bias, 2), res.n_subjects, res.n_test
    (2.0, 4, 8)
    """
    confidence = _check_confidence(confidence)
    limits = _check_limits(limits)
    ref = _ragged(reference, "reference", min_each=1)
    tst = _ragged(test, "test", min_each=1)
    if len(ref) != len(tst):
        raise ValueError(f"bland_altman_replicates: reference and test must list the same subjects; "
                         f"got {len(ref)} and {len(tst)} subjects")
    _check_count(len(ref), 3, what="bland_altman_replicates")
    n = len(ref)
    diff = np.array([t.mean() - r.mean() for r, t in zip(ref, tst)])
    s_d2 = float(diff.var(ddof=1))
    var_r, inv_r = _within_variance(ref)
    var_t, inv_t = _within_variance(tst)
    sigma_d2 = s_d2 - var_r * inv_r - var_t * inv_t
    sd = math.sqrt(max(sigma_d2, 0.0) + var_r + var_t)
    bias = float(diff.mean())
    half = _t(confidence, n - 1) * math.sqrt(s_d2 / n)
    return ReplicatesBlandAltmanResult(
        n_subjects=n, n_reference=sum(r.size for r in ref), n_test=sum(t.size for t in tst),
        bias=bias, bias_ci=_interval(bias - half, bias + half), sd=sd,
        sd_between=math.sqrt(max(sigma_d2, 0.0)), sd_within_reference=math.sqrt(var_r),
        sd_within_test=math.sqrt(var_t), lower=bias - limits * sd, upper=bias + limits * sd,
        limits=float(limits), confidence=confidence)


def _within_variance(groups: list[np.ndarray]) -> tuple[float, float]:
    """One-way ANOVA residual mean square (0 without replicates) and mean of 1/m_i."""
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    df = sum(g.size - 1 for g in groups)
    return (ss / df if df else 0.0), float(np.mean([1.0 / g.size for g in groups]))


# =========================================================================== Lin's CCC


@dataclass(frozen=True)
class CCCResult:
    """Lin's concordance correlation coefficient.

    Attributes
    ----------
    ccc : float
        ρ_c = r · C_b.
    ci : (float, float)
        Fisher-z interval (Lin 1989, 2000; R ``epiR::epi.ccc`` default).
    se : float
        Asymptotic SE of ρ̂_c.
    r : float
        Pearson correlation (precision).
    bias_correction : float
        C_b = ρ_c / r (accuracy).
    location_shift : float
        u = (ȳ - x̄) / (s_x s_y)^½, with population SDs.
    scale_shift : float
        v = s_y / s_x.
    n, n_dropped : int
    confidence : float
    """

    ccc: float
    ci: Interval
    se: float
    r: float
    bias_correction: float
    location_shift: float
    scale_shift: float
    n: int
    n_dropped: int
    confidence: float


def concordance_correlation(reference, test, *, confidence: float = 0.95) -> CCCResult:
    """Lin's concordance correlation coefficient with its z-transform confidence interval.

    Parameters
    ----------
    reference, test : (N,) array_like
        Paired measurements; pairs with a NaN are dropped.
    confidence : float, optional

    Returns
    -------
    CCCResult

    Raises
    ------
    ValueError
        Fewer than 3 complete pairs or a constant column.

    Notes
    -----
    ``ρ_c = 2 s_xy / (s_x² + s_y² + (x̄ - ȳ)²)`` with 1/n moments. SE as in Lin (2000) /
    ``epiR``::

        SE² = [(1-r²) ρ_c² (1-ρ_c²)/r² + 2 ρ_c³ (1-ρ_c) u²/r - ½ ρ_c⁴ u⁴/r²] / (n-2)

    CI ``tanh(atanh ρ_c ± z·SE/(1-ρ_c²))``. McBride (2005): < 0.90 poor, 0.90–0.95 moderate,
    0.95–0.99 substantial, > 0.99 almost perfect.

    References
    ----------
    .. [1] Lin LI (1989). A concordance correlation coefficient to evaluate reproducibility.
       Biometrics 45(1):255-268. Correction: Biometrics 2000;56:324-325.

    Examples
    --------
    >>> res = concordance_correlation([85, 102, 64, 130, 118, 71, 95, 150, 58, 110],
    ...                               [88, 99, 69, 127, 121, 75, 92, 155, 60, 114])
    >>> round(res.ccc, 6), round(res.bias_correction, 6)
    (0.99169, 0.998113)
    """
    confidence = _check_confidence(confidence)
    x, y, n_dropped = _paired(reference, test, what="concordance_correlation")
    _check_varies(x, "reference", what="concordance_correlation")
    _check_varies(y, "test", what="concordance_correlation")
    n = x.size
    sx2, sy2 = float(x.var()), float(y.var())
    sxy = float(((x - x.mean()) * (y - y.mean())).mean())
    denominator = sx2 + sy2 + (x.mean() - y.mean()) ** 2
    ccc = 2.0 * sxy / denominator
    r = sxy / math.sqrt(sx2 * sy2)
    bias_correction = 2.0 * math.sqrt(sx2 * sy2) / denominator     # C_b = ccc / r, also when r = 0
    u = (y.mean() - x.mean()) / (sx2 * sy2) ** 0.25
    # Lin's SE with ccc / r written as C_b, so that uncorrelated methods (r = 0) need no 0/0
    var = ((1 - r * r) * bias_correction ** 2 * (1 - ccc ** 2)
           + 2 * ccc ** 2 * bias_correction * (1 - ccc) * u ** 2
           - 0.5 * ccc ** 2 * bias_correction ** 2 * u ** 4) / (n - 2)
    se = math.sqrt(max(var, 0.0))
    if abs(ccc) < 1.0:
        half = _z(confidence) * se / (1.0 - ccc * ccc)
        ci = _interval(math.tanh(math.atanh(ccc) - half), math.tanh(math.atanh(ccc) + half))
    else:
        ci = (ccc, ccc)
    return CCCResult(ccc=float(ccc), ci=ci, se=se, r=float(r), bias_correction=float(bias_correction),
                     location_shift=float(u), scale_shift=float(math.sqrt(sy2 / sx2)), n=n,
                     n_dropped=n_dropped, confidence=confidence)
