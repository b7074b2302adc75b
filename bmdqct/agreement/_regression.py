"""Method-comparison regression: OLS, Deming, Passing–Bablok (private; see :mod:`bmdqct.agreement`).

The reference method is x, the test method y: ``test = intercept + slope · reference``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._common import _check_confidence, _check_varies, _fisher_ci, _interval, _paired, _t, _z

__all__ = [
    "RegressionResult",
    "LinearRegressionResult",
    "DemingResult",
    "PassingBablokResult",
    "linear_regression",
    "deming_regression",
    "passing_bablok",
]

Interval = tuple[float, float]


# =========================================================================== regression


@dataclass(frozen=True, eq=False)
class RegressionResult:
    """A straight line ``test = intercept + slope · reference`` and its uncertainty.

    Attributes
    ----------
    method : str
        ``"OLS"``, ``"Deming"`` or ``"Passing-Bablok"``.
    n, n_dropped : int
    slope, intercept : float
    slope_ci, intercept_ci : (float, float)
    r, r_ci : float, (float, float)
        Pearson correlation and its Fisher-z interval (method independent).
    r_squared : float
    residual_sd : float
        SD of ``test - line(reference)`` (``ddof = 2``).
    confidence : float
    reference, test : (n,) ndarray
        The complete pairs used (for plotting).
    """

    method: str
    n: int
    n_dropped: int
    slope: float
    intercept: float
    slope_ci: Interval
    intercept_ci: Interval
    r: float
    r_ci: Interval
    r_squared: float
    residual_sd: float
    confidence: float
    reference: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)

    def predict(self, reference) -> np.ndarray:
        """Test-method values the line predicts at `reference`."""
        return self.intercept + self.slope * np.asarray(reference, dtype=float)


def _common(method: str, x, y, n_dropped, slope, intercept, slope_ci, intercept_ci, confidence):
    r = float(np.corrcoef(x, y)[0, 1])
    residual = y - (intercept + slope * x)
    return dict(method=method, n=x.size, n_dropped=n_dropped, slope=float(slope),
                intercept=float(intercept), slope_ci=_interval(*slope_ci),
                intercept_ci=_interval(*intercept_ci), r=r, r_ci=_fisher_ci(r, x.size, confidence),
                r_squared=r * r, residual_sd=float(np.sqrt((residual ** 2).sum() / (x.size - 2))),
                confidence=confidence, reference=x, test=y)


@dataclass(frozen=True, eq=False)
class LinearRegressionResult(RegressionResult):
    """Ordinary least squares of test on reference (adds the slope and intercept p-values).

    Attributes
    ----------
    slope_p : float
        Two-sided p-value of slope = 0.
    intercept_p : float
        Two-sided p-value of intercept = 0.
    """

    slope_p: float = math.nan
    intercept_p: float = math.nan


def linear_regression(reference, test, *, confidence: float = 0.95) -> LinearRegressionResult:
    """Ordinary least-squares regression of the test method on the reference (statsmodels).

    Parameters
    ----------
    reference, test : (N,) array_like
        Paired measurements; pairs with a NaN are dropped.
    confidence : float, optional
        Level of the t intervals of slope and intercept and the Fisher-z interval of r.

    Returns
    -------
    LinearRegressionResult

    Raises
    ------
    ValueError
        Fewer than 3 complete pairs, unequal lengths, or a constant column.

    Notes
    -----
    OLS assumes an error-free reference; it is what Pan et al. (2020) report (r and the
    regression equation per level). :func:`deming_regression` and :func:`passing_bablok`
    allow for error in both methods.

    Examples
    --------
    >>> res = linear_regression([1, 2, 3, 4, 5], [2.1, 3.9, 6.2, 7.8, 10.1])
    >>> round(res.slope, 2), round(res.intercept, 2), round(res.r, 4)
    (1.99, 0.05, 0.9987)
    """
    import statsmodels.api as sm

    confidence = _check_confidence(confidence)
    x, y, n_dropped = _paired(reference, test, what="linear_regression")
    _check_varies(x, "reference", what="linear_regression")
    _check_varies(y, "test", what="linear_regression")
    fit = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    ci = fit.conf_int(alpha=1.0 - confidence)
    return LinearRegressionResult(
        **_common("OLS", x, y, n_dropped, fit.params[1], fit.params[0], ci[1], ci[0], confidence),
        slope_p=float(fit.pvalues[1]), intercept_p=float(fit.pvalues[0]))


@dataclass(frozen=True, eq=False)
class DemingResult(RegressionResult):
    """Deming regression (adds the error-variance ratio used).

    Attributes
    ----------
    error_ratio : float
        δ = var(error of test) / var(error of reference); 1 is orthogonal regression.
    """

    error_ratio: float = 1.0


def _deming_fit(x: np.ndarray, y: np.ndarray, delta: float) -> tuple[float, float]:
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxy == 0:
        raise ValueError("deming_regression: the two methods are uncorrelated (Sxy = 0); the Deming "
                         "slope is undefined")
    u = syy - delta * sxx
    slope = (u + math.sqrt(u * u + 4.0 * delta * sxy * sxy)) / (2.0 * sxy)
    return slope, float(y.mean() - slope * x.mean())


def deming_regression(reference, test, *, error_ratio: float = 1.0,
                      confidence: float = 0.95) -> DemingResult:
    """Deming regression (errors in both methods), closed form, jackknife CIs.

    Parameters
    ----------
    reference, test : (N,) array_like
        Paired measurements; pairs with a NaN are dropped.
    error_ratio : float, optional
        δ = var(measurement error of test) / var(measurement error of reference);
        1 (default) gives orthogonal regression.
    confidence : float, optional
        Level of the jackknife t intervals.

    Returns
    -------
    DemingResult

    Raises
    ------
    ValueError
        Fewer than 3 complete pairs, a constant column, uncorrelated methods, or
        ``error_ratio <= 0``.

    Notes
    -----
    ``b = [Syy - δSxx + sqrt((Syy - δSxx)² + 4δSxy²)] / (2Sxy)``, ``a = ȳ - b·x̄``.
    CIs: leave-one-out jackknife SE ``sqrt((n-1)/n · Σ(b₍₋ᵢ₎ - b̄₍₋₎)²)`` and
    ``b ± t(n-2)·SE`` (Linnet 1990), as R ``mcr`` does. ``scipy.odr`` is deprecated
    (SciPy 1.17) and is not used.

    References
    ----------
    .. [1] Linnet K (1990). Estimation of the linear relationship between the measurements
       of two methods with proportional errors. Stat Med 9(12):1463-1473.

    Examples
    --------
    >>> res = deming_regression([85, 102, 64, 130, 118, 71, 95, 150, 58, 110],
    ...                         [88, 99, 69, 127, 121, 75, 92, 155, 60, 114])
    >>> round(res.slope, 6), round(res.intercept, 6)
    (0.989559, 2.726377)
    """
    confidence = _check_confidence(confidence)
    if not error_ratio > 0:
        raise ValueError(f"error_ratio must be > 0 (1 = equal error variances); got {error_ratio}")
    x, y, n_dropped = _paired(reference, test, what="deming_regression")
    _check_varies(x, "reference", what="deming_regression")
    _check_varies(y, "test", what="deming_regression")
    slope, intercept = _deming_fit(x, y, error_ratio)
    n = x.size
    keep = ~np.eye(n, dtype=bool)
    loo = np.array([_deming_fit(x[k], y[k], error_ratio) for k in keep])
    se = np.sqrt((n - 1) / n * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
    t = _t(confidence, n - 2)
    return DemingResult(
        **_common("Deming", x, y, n_dropped, slope, intercept,
                  (slope - t * se[0], slope + t * se[0]),
                  (intercept - t * se[1], intercept + t * se[1]), confidence),
        error_ratio=float(error_ratio))


@dataclass(frozen=True, eq=False)
class PassingBablokResult(RegressionResult):
    """Passing–Bablok regression (adds the slope count and the CUSUM linearity test).

    Attributes
    ----------
    n_slopes : int
        Pairwise slopes used (N).
    n_shift : int
        Slopes below -1 (K), the offset of the shifted median.
    cusum_statistic, cusum_p : float
        Linearity test: ``max|cusum| / sqrt(L + 1)`` and its asymptotic
        Kolmogorov–Smirnov p-value; p < 0.05 means a straight line does not fit.
    """

    n_slopes: int = 0
    n_shift: int = 0
    cusum_statistic: float = math.nan
    cusum_p: float = math.nan


def passing_bablok(reference, test, *, confidence: float = 0.95) -> PassingBablokResult:
    """Passing–Bablok regression with rank-based CIs and the CUSUM linearity test.

    Parameters
    ----------
    reference, test : (N,) array_like
        Paired measurements; pairs with a NaN are dropped. The method assumes a positive
        slope and highly correlated data.
    confidence : float, optional
        Level of the slope and intercept intervals.

    Returns
    -------
    PassingBablokResult

    Raises
    ------
    ValueError
        Fewer than 3 complete pairs, a constant column, or no usable pairwise slope.

    Notes
    -----
    All slopes ``S_ij = (y_j - y_i)/(x_j - x_i)``, i < j; pairs with Δx = Δy = 0 and slopes of
    exactly -1 are dropped, Δx = 0 gives ±∞. With N slopes sorted and K of them below -1,
    the slope is the K-shifted median; ``C = z·sqrt(n(n-1)(2n+5)/18)``,
    ``M1 = round((N - C)/2)``, ``M2 = N - M1 + 1`` and the slope CI is
    ``[S_(M1+K), S_(M2+K)]`` (1-based). The intercept is ``median(y - b·x)`` and its CI
    ``[median(y - b_upper·x), median(y - b_lower·x)]``. No proportional difference if 1 is in
    the slope CI; no constant difference if 0 is in the intercept CI.

    References
    ----------
    .. [1] Passing H, Bablok W (1983). A new biometrical procedure for testing the equality
       of measurements from two different analytical methods. J Clin Chem Clin Biochem
       21(11):709-720.

    Examples
    --------
    >>> res = passing_bablok([85, 102, 64, 130, 118, 71, 95, 150, 58, 110],
    ...                      [88, 99, 69, 127, 121, 75, 92, 155, 60, 114])
    >>> res.slope, res.intercept, res.n_slopes, res.n_shift
    (1.0, 3.0, 45, 0)
    """
    confidence = _check_confidence(confidence)
    x, y, n_dropped = _paired(reference, test, what="passing_bablok")
    _check_varies(x, "reference", what="passing_bablok")
    _check_varies(y, "test", what="passing_bablok")
    n = x.size
    i, j = np.triu_indices(n, k=1)
    dx, dy = x[j] - x[i], y[j] - y[i]
    keep = ~((dx == 0) & (dy == 0))
    dx, dy = dx[keep], dy[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(dx == 0, np.sign(dy) * np.inf, dy / dx)
    slopes = np.sort(slopes[slopes != -1.0])
    big_n = slopes.size
    if big_n == 0:
        raise ValueError("passing_bablok: no usable pairwise slope (all pairs tied or of slope -1)")
    k = int((slopes < -1.0).sum())

    def order_stat(rank_1based: float) -> float:
        return float(slopes[int(min(max(rank_1based, 1), big_n)) - 1])

    if big_n % 2:
        slope = order_stat((big_n + 1) / 2 + k)
    else:
        slope = 0.5 * (order_stat(big_n / 2 + k) + order_stat(big_n / 2 + 1 + k))
    c = _z(confidence) * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    m1 = int(math.floor((big_n - c) / 2.0 + 0.5))
    m2 = big_n - m1 + 1
    slope_ci = (order_stat(m1 + k), order_stat(m2 + k))
    intercept = float(np.median(y - slope * x))
    intercept_ci = (float(np.median(y - slope_ci[1] * x)), float(np.median(y - slope_ci[0] * x)))
    h, p = _cusum(x, y, slope, intercept)
    return PassingBablokResult(
        **_common("Passing-Bablok", x, y, n_dropped, slope, intercept, slope_ci, intercept_ci,
                  confidence),
        n_slopes=int(big_n), n_shift=k, cusum_statistic=h, cusum_p=p)


def _cusum(x: np.ndarray, y: np.ndarray, slope: float, intercept: float) -> tuple[float, float]:
    """Passing–Bablok CUSUM linearity statistic and its asymptotic KS p-value."""
    residual = y - (intercept + slope * x)
    above, below = int((residual > 0).sum()), int((residual < 0).sum())
    if above == 0 or below == 0 or slope == 0:
        return math.nan, math.nan
    score = np.where(residual > 0, math.sqrt(below / above),
                     np.where(residual < 0, -math.sqrt(above / below), 0.0))
    distance = (y + x / slope - intercept) / math.sqrt(1.0 + 1.0 / slope ** 2)
    cusum = np.cumsum(score[np.argsort(distance, kind="stable")])
    h = float(np.abs(cusum).max() / math.sqrt(below + 1))
    from scipy import stats

    return h, float(stats.kstwobign.sf(h))
