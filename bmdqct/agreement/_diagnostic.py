"""Diagnostic accuracy, categories and segmentation overlap (private; see :mod:`bmdqct.agreement`).

ROC convention: ``positive`` is the true state (e.g. reference BMD < 80 mg/cm³) and a
**higher** score means "more likely positive"; for BMD use ``score = -BMD`` (the
``threshold_*`` helpers do this for you).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ._common import _as_1d, _check_confidence, _check_count, _interval, _paired, _z

logger = logging.getLogger("bmdqct.agreement")

__all__ = [
    "ThresholdTask",
    "OSTEOPOROSIS",
    "LOW_BMD",
    "Proportion",
    "ROCResult",
    "DeLongTestResult",
    "DiagnosticAccuracy",
    "proportion",
    "roc_analysis",
    "threshold_roc",
    "delong_test",
    "diagnostic_accuracy",
    "threshold_accuracy",
]

Interval = tuple[float, float]


# =========================================================================== tasks


@dataclass(frozen=True)
class ThresholdTask:
    """A binary diagnosis defined by a BMD threshold.

    Attributes
    ----------
    name : str
    threshold_mg_cm3 : float
    inclusive : bool
        Positive when ``value <= threshold`` (True) or ``value < threshold`` (False).
    """

    name: str
    threshold_mg_cm3: float
    inclusive: bool

    def positive(self, bmd_mg_cm3) -> np.ndarray:
        """Boolean array: which values are positive for this task (NaN is never positive)."""
        values = np.asarray(bmd_mg_cm3, dtype=float)
        return values <= self.threshold_mg_cm3 if self.inclusive else values < self.threshold_mg_cm3

    @property
    def rule(self) -> str:
        """The rule as text, e.g. ``"BMD < 80 mg/cm³"``."""
        return f"BMD {'≤' if self.inclusive else '<'} {self.threshold_mg_cm3:g} mg/cm³"


#: Osteoporosis by the ACR QCT criterion: BMD < 80 mg/cm³ (Pan et al. 2020).
OSTEOPOROSIS = ThresholdTask("osteoporosis", 80.0, inclusive=False)
#: Low BMD (osteopenia or osteoporosis): BMD ≤ 120 mg/cm³ (ACR; Pan et al. 2020).
LOW_BMD = ThresholdTask("low BMD", 120.0, inclusive=True)


# =========================================================================== proportions


@dataclass(frozen=True)
class Proportion:
    """A proportion k/n with Wilson and exact (Clopper–Pearson) intervals.

    Attributes
    ----------
    count, total : int
        k and n (the "n/N" of a report).
    estimate : float
        k/n (NaN when n = 0).
    ci : (float, float)
        Wilson score interval.
    ci_exact : (float, float)
        Clopper–Pearson interval.
    confidence : float
    """

    count: int
    total: int
    estimate: float
    ci: Interval
    ci_exact: Interval
    confidence: float

    def __str__(self) -> str:
        if self.total == 0:
            return "0/0 (n/a)"
        return (f"{self.count}/{self.total} ({100 * self.estimate:.1f} %, "
                f"{100 * self.ci[0]:.1f}–{100 * self.ci[1]:.1f})")


def proportion(count: int, total: int, *, confidence: float = 0.95) -> Proportion:
    """k/n with its Wilson and Clopper–Pearson confidence intervals (statsmodels).

    Parameters
    ----------
    count, total : int
        Successes and trials, ``0 <= count <= total``. ``total = 0`` gives NaN estimates.
    confidence : float, optional

    Returns
    -------
    Proportion

    Raises
    ------
    ValueError
        Negative counts or ``count > total``.

    Notes
    -----
    ``statsmodels.stats.proportion.proportion_confint`` with ``method="wilson"`` and
    ``"beta"`` (Clopper–Pearson). Note that statsmodels' default is the normal (Wald)
    interval, which bmdqct never uses.

    Examples
    --------
    >>> p = proportion(45, 50)
    >>> tuple(round(v, 6) for v in p.ci), tuple(round(v, 6) for v in p.ci_exact)
    ((0.786398, 0.956524), (0.781865, 0.966725))
    >>> str(p)
    '45/50 (90.0 %, 78.6–95.7)'
    """
    from statsmodels.stats.proportion import proportion_confint

    confidence = _check_confidence(confidence)
    count, total = int(count), int(total)
    if total < 0 or not 0 <= count <= total:
        raise ValueError(f"proportion needs 0 <= count <= total; got count={count}, total={total}")
    if total == 0:
        nan = (math.nan, math.nan)
        return Proportion(0, 0, math.nan, nan, nan, confidence)
    alpha = 1.0 - confidence
    wilson = proportion_confint(count, total, alpha=alpha, method="wilson")
    exact = proportion_confint(count, total, alpha=alpha, method="beta")
    return Proportion(count, total, count / total, _interval(*wilson), _interval(*exact), confidence)


# =========================================================================== ROC / DeLong


def _binary(values, name: str = "positive") -> np.ndarray:
    """A 1-D boolean array from booleans or 0/1 numbers; refuses NaN and other values."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of booleans (one per subject); got shape {array.shape}")
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iuf":
        if array.dtype.kind == "f" and np.isnan(array).any():
            raise ValueError(f"{name} contains {int(np.isnan(array).sum())} NaN value(s); the true state "
                             "must be known for every subject: drop those subjects first")
        bad = ~np.isin(array, (0, 1))
        if not bad.any():
            return array.astype(bool)
        raise ValueError(f"{name} must hold booleans or 0/1; got values such as {array[bad][:3].tolist()}")
    raise ValueError(f"{name} must hold booleans or 0/1; got dtype {array.dtype}")


def _split(positive: np.ndarray, scores: np.ndarray, *, what: str, min_each: int = 2):
    """Scores of positives and negatives; refuses a single class."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < min_each or n_neg < min_each:
        raise ValueError(f"{what} needs at least {min_each} positive and {min_each} negative subjects "
                         f"(both classes); got {n_pos} positive and {n_neg} negative. A ROC curve is "
                         "undefined with a single class: check the threshold and the cohort")
    return scores[..., positive], scores[..., ~positive]


def _delong(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for score rows ``(k, m)`` and ``(k, n)``.

    Fast midrank algorithm (Sun & Xu 2014): O((m + n) log(m + n)) per score.
    """
    from scipy import stats

    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n          # per positive: share of negatives ranked below (ties ½)
    v01 = 1.0 - (tz[:, m:] - ty) / m    # per negative: share of positives ranked above (ties ½)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


@dataclass(frozen=True, eq=False)
class ROCResult:
    """ROC curve and AUC with its DeLong standard error and confidence intervals.

    Attributes
    ----------
    auc, auc_se : float
    auc_ci : (float, float)
        Wald interval ``auc ± z·se`` clipped to [0, 1] (pROC convention).
    auc_ci_logit : (float, float)
        Interval on the logit scale (never needs clipping; better near 1).
    n_positive, n_negative, n_dropped : int
    confidence : float
    fpr, tpr, thresholds : (T,) ndarray
        The curve, from (0, 0) to (1, 1); ``thresholds[i]`` is the score cut-off
        (positive if ``score >= threshold``); the first is ``+inf``.
    youden_threshold : float
        Score cut-off that maximises sensitivity + specificity − 1.
    """

    auc: float
    auc_se: float
    auc_ci: Interval
    auc_ci_logit: Interval
    n_positive: int
    n_negative: int
    n_dropped: int
    confidence: float
    youden_threshold: float
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)


def _roc_curve(positive: np.ndarray, scores: np.ndarray):
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]   # last index of each distinct score
    tp = np.cumsum(p)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / p.sum()]
    fpr = np.r_[0.0, fp / (~p).sum()]
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_analysis(positive, score, *, confidence: float = 0.95) -> ROCResult:
    """ROC curve and AUC with the DeLong confidence interval.

    Parameters
    ----------
    positive : (N,) array_like of bool
        True state of each subject (True = has the condition).
    score : (N,) array_like
        Test score, higher = more likely positive (for BMD pass ``-bmd``, or use
        :func:`threshold_roc`). Subjects with a NaN score are dropped.
    confidence : float, optional

    Returns
    -------
    ROCResult

    Raises
    ------
    ValueError
        Unequal lengths, or fewer than 2 subjects in either class.

    Notes
    -----
    AUC is the Mann–Whitney statistic (ties count ½). Its variance is
    ``S10/m + S01/n`` from the structural components of DeLong, DeLong & Clarke-Pearson
    (1988), computed with the midrank algorithm of Sun & Xu (2014). The logit interval is
    ``expit(logit(auc) ± z·se/(auc(1 - auc)))``.

    References
    ----------
    .. [1] DeLong ER, DeLong DM, Clarke-Pearson DL (1988). Comparing the areas under two or
       more correlated receiver operating characteristic curves: a nonparametric approach.
       Biometrics 44(3):837-845.
    .. [2] Sun X, Xu W (2014). Fast implementation of DeLong's algorithm for comparing the
       areas under correlated receiver operating characteristic curves. IEEE Signal Process
       Lett 21(11):1389-1393. doi:10.1109/LSP.2014.2337313

    Examples
    --------
    >>> pred = [62, 75, 81, 70, 95, 110, 78, 130, 88, 101, 66, 125]
    >>> truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    >>> res = roc_analysis(truth, [-p for p in pred])
    >>> round(res.auc, 6), round(res.auc_se, 6), res.auc_ci[1]
    (0.971429, 0.040406, 1.0)
    """
    confidence = _check_confidence(confidence)
    pos_all = _binary(positive)
    scores = _as_1d(score, "score")
    if pos_all.shape != scores.shape:
        raise ValueError(f"roc_analysis: positive and score must have the same length; got "
                         f"{pos_all.size} and {scores.size}")
    keep = ~np.isnan(scores)
    n_dropped = int((~keep).sum())
    pos_all, scores = pos_all[keep], scores[keep]
    pos, neg = _split(pos_all, scores, what="roc_analysis")
    aucs, cov = _delong(pos[None, :], neg[None, :])
    auc, se = float(aucs[0]), float(math.sqrt(max(cov[0, 0], 0.0)))
    z = _z(confidence)
    wald = _interval(max(auc - z * se, 0.0), min(auc + z * se, 1.0))
    if 0.0 < auc < 1.0:
        centre, half = math.log(auc / (1 - auc)), z * se / (auc * (1 - auc))
        logit = _interval(1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half))))
    else:
        logit = (auc, auc)
    fpr, tpr, thresholds = _roc_curve(pos_all, scores)
    best = int(np.argmax(tpr - fpr))
    return ROCResult(auc=auc, auc_se=se, auc_ci=wald, auc_ci_logit=logit, n_positive=pos.size,
                     n_negative=neg.size, n_dropped=n_dropped, confidence=confidence,
                     youden_threshold=float(thresholds[best]), fpr=fpr, tpr=tpr,
                     thresholds=thresholds)


def threshold_roc(reference, test, *, task: ThresholdTask = OSTEOPOROSIS,
                  confidence: float = 0.95) -> ROCResult:
    """ROC/AUC of test-method BMD for a threshold diagnosis made on the reference BMD.

    Parameters
    ----------
    reference, test : (N,) array_like
        Reference (e.g. QCT) and test-method BMD in mg/cm³; pairs with a NaN are dropped.
    task : ThresholdTask, optional
        :data:`OSTEOPOROSIS` (reference < 80, default) or :data:`LOW_BMD` (reference ≤ 120).
    confidence : float, optional

    Returns
    -------
    ROCResult
        Scores are ``-test`` (lower BMD ranks as more positive), so ``thresholds`` are
        negated BMD values.

    Raises
    ------
    ValueError
        As :func:`roc_analysis`.

    Examples
    --------
    >>> res = threshold_roc([70, 75, 90, 130, 60, 100], [72, 85, 88, 125, 65, 98])
    >>> res.auc, res.n_positive, res.n_negative
    (1.0, 3, 3)
    """
    x, y, n_dropped = _paired(reference, test, what="threshold_roc", min_n=4)
    result = roc_analysis(task.positive(x), -y, confidence=confidence)
    return _replace_dropped(result, n_dropped)


def _replace_dropped(result, n_dropped: int):
    from dataclasses import replace

    return replace(result, n_dropped=result.n_dropped + n_dropped)


@dataclass(frozen=True)
class DeLongTestResult:
    """Paired DeLong test of two correlated AUCs (same subjects, two scores).

    Attributes
    ----------
    auc_a, auc_b, se_a, se_b : float
    difference, difference_se : float
        ``auc_a - auc_b`` and its SE.
    difference_ci : (float, float)
        Wald interval of the difference.
    correlation : float
        Correlation of the two AUC estimates.
    z, p_value : float
        Two-sided test of equal AUCs.
    n_positive, n_negative, n_dropped : int
    confidence : float
    """

    auc_a: float
    auc_b: float
    se_a: float
    se_b: float
    difference: float
    difference_se: float
    difference_ci: Interval
    correlation: float
    z: float
    p_value: float
    n_positive: int
    n_negative: int
    n_dropped: int
    confidence: float


def delong_test(positive, score_a, score_b, *, confidence: float = 0.95) -> DeLongTestResult:
    """DeLong's test of two correlated ROC AUCs measured on the same subjects.

    Parameters
    ----------
    positive : (N,) array_like of bool
        True state of each subject.
    score_a, score_b : (N,) array_like
        Two scores of the same subjects (higher = more likely positive). Subjects with a
        NaN in either score are dropped.
    confidence : float, optional

    Returns
    -------
    DeLongTestResult

    Raises
    ------
    ValueError
        Unequal lengths or fewer than 2 subjects in a class.

    Notes
    -----
    ``z = (A1 - A2) / sqrt(V1 + V2 - 2 C12)`` with the DeLong covariance matrix of the two
    AUCs (DeLong et al. 1988), computed with the midrank algorithm (Sun & Xu 2014).

    Examples
    --------
    >>> truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    >>> a = [-62, -75, -81, -70, -95, -110, -78, -130, -88, -101, -66, -125]
    >>> b = [-70, -72, -99, -60, -90, -105, -80, -120, -79, -100, -85, -118]
    >>> res = delong_test(truth, a, b)
    >>> round(res.auc_a, 4), round(res.auc_b, 4), round(res.p_value, 3)
    (0.9714, 0.8571, 0.213)
    """
    confidence = _check_confidence(confidence)
    pos_all = _binary(positive)
    a, b = _as_1d(score_a, "score_a"), _as_1d(score_b, "score_b")
    if not pos_all.shape == a.shape == b.shape:
        raise ValueError(f"delong_test: positive, score_a and score_b must have the same length; got "
                         f"{pos_all.size}, {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    n_dropped = int((~keep).sum())
    pos, neg = _split(pos_all[keep], np.vstack([a[keep], b[keep]]), what="delong_test")
    aucs, cov = _delong(pos, neg)
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        z = diff / se
        p = math.erfc(abs(z) / math.sqrt(2.0))  # two-sided normal p-value
    else:
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    corr = float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])) if cov[0, 0] * cov[1, 1] > 0 else math.nan
    zc = _z(confidence)
    return DeLongTestResult(
        auc_a=float(aucs[0]), auc_b=float(aucs[1]), se_a=float(math.sqrt(cov[0, 0])),
        se_b=float(math.sqrt(cov[1, 1])), difference=diff, difference_se=se,
        difference_ci=_interval(diff - zc * se, diff + zc * se), correlation=corr, z=float(z),
        p_value=p, n_positive=pos.shape[1], n_negative=neg.shape[1], n_dropped=n_dropped,
        confidence=confidence)


# =========================================================================== 2×2 accuracy


@dataclass(frozen=True)
class DiagnosticAccuracy:
    """Sensitivity, specificity, PPV, NPV and accuracy with n/N counts and CIs.

    Attributes
    ----------
    tp, fp, tn, fn : int
    sensitivity, specificity, ppv, npv, accuracy : Proportion
        Each with ``count``/``total`` (n/N), Wilson ``ci`` and exact ``ci_exact``.
    youden_j : float
        sensitivity + specificity − 1.
    n, n_dropped : int
    task : str
        Name of the diagnosis (empty for :func:`diagnostic_accuracy`).
    """

    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy: Proportion
    youden_j: float
    n: int
    n_dropped: int
    task: str = ""


def diagnostic_accuracy(positive, predicted, *, confidence: float = 0.95,
                        task: str = "") -> DiagnosticAccuracy:
    """2×2 diagnostic accuracy of a binary test against the true state.

    Parameters
    ----------
    positive, predicted : (N,) array_like of bool
        True state and test result of each subject.
    confidence : float, optional
    task : str, optional
        Name stored in the result.

    Returns
    -------
    DiagnosticAccuracy

    Raises
    ------
    ValueError
        Unequal lengths, non-boolean values, or no subjects.

    Notes
    -----
    sens = TP/(TP+FN), spec = TN/(TN+FP), PPV = TP/(TP+FP), NPV = TN/(TN+FN). A proportion
    with an empty denominator (e.g. PPV when nothing tested positive) is NaN.

    Examples
    --------
    >>> res = diagnostic_accuracy([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    ...                           [1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    >>> str(res.sensitivity), str(res.specificity)
    ('4/5 (80.0 %, 37.6–96.4)', '6/7 (85.7 %, 48.7–97.4)')
    """
    truth, test = _binary(positive, "positive"), _binary(predicted, "predicted")
    if truth.shape != test.shape:
        raise ValueError(f"diagnostic_accuracy: positive and predicted must have the same length; got "
                         f"{truth.size} and {test.size}")
    _check_count(truth.size, 1, what="diagnostic_accuracy")
    return _accuracy(truth, test, confidence=confidence, task=task, n_dropped=0)


def _accuracy(truth, test, *, confidence, task, n_dropped) -> DiagnosticAccuracy:
    tp, fn = int((truth & test).sum()), int((truth & ~test).sum())
    fp, tn = int((~truth & test).sum()), int((~truth & ~test).sum())
    sens, spec = proportion(tp, tp + fn, confidence=confidence), proportion(tn, tn + fp, confidence=confidence)
    return DiagnosticAccuracy(
        tp=tp, fp=fp, tn=tn, fn=fn, sensitivity=sens, specificity=spec,
        ppv=proportion(tp, tp + fp, confidence=confidence),
        npv=proportion(tn, tn + fn, confidence=confidence),
        accuracy=proportion(tp + tn, truth.size, confidence=confidence),
        youden_j=sens.estimate + spec.estimate - 1.0, n=int(truth.size), n_dropped=n_dropped,
        task=task)


def threshold_accuracy(reference, test, *, task: ThresholdTask = OSTEOPOROSIS,
                       confidence: float = 0.95) -> DiagnosticAccuracy:
    """Sensitivity/specificity/PPV/NPV of a BMD threshold applied to both methods.

    Parameters
    ----------
    reference, test : (N,) array_like
        Reference and test-method BMD (mg/cm³); pairs with a NaN are dropped.
    task : ThresholdTask, optional
        :data:`OSTEOPOROSIS` (< 80, default) or :data:`LOW_BMD` (≤ 120); the same rule
        classifies the reference (truth) and the test.
    confidence : float, optional

    Returns
    -------
    DiagnosticAccuracy

    Examples
    --------
    >>> res = threshold_accuracy([70, 75, 90, 130, 60, 100], [72, 85, 88, 125, 65, 98])
    >>> res.tp, res.fn, res.fp, res.tn
    (2, 1, 0, 3)
    """
    x, y, n_dropped = _paired(reference, test, what="threshold_accuracy", min_n=1)
    return _accuracy(task.positive(x), task.positive(y), confidence=confidence, task=task.name,
                     n_dropped=n_dropped)
