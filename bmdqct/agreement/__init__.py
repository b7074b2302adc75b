"""Statistics of method-comparison and diagnostic-accuracy studies.

Everything a paper like Pan et al. (Eur Radiol 2020) reports, each statistic a plain
function that returns a frozen dataclass (drawing is in :mod:`bmdqct.plotting`):

* **agreement of continuous values** — :func:`bland_altman` (bias, sample SD, limits of
  agreement with approximate and exact CIs, proportional bias, percentage differences),
  :func:`bland_altman_regression` (limits varying with magnitude),
  :func:`bland_altman_replicates` (several measurements per subject),
  :func:`linear_regression` (statsmodels OLS), :func:`deming_regression`,
  :func:`passing_bablok`, :func:`concordance_correlation` (Lin's CCC), :func:`icc`;
* **diagnosis by a BMD threshold** — :data:`OSTEOPOROSIS` (reference < 80 mg/cm³) and
  :data:`LOW_BMD` (≤ 120 mg/cm³) tasks, :func:`roc_analysis` / :func:`threshold_roc`
  (AUC with DeLong CI), :func:`delong_test` (two correlated AUCs),
  :func:`diagnostic_accuracy` / :func:`threshold_accuracy` (sensitivity, specificity, PPV,
  NPV with n/N and Wilson/exact CIs), :func:`proportion`, :func:`confusion_matrix`,
  :func:`cohens_kappa` (weighted too);
* **segmentation and labeling** — :func:`dice`, :func:`labeling_accuracy`;
* **precision** — :func:`precision_error` (ISCD RMS-SD, RMS-CV %, LSC);
* **helpers** — :func:`stratify` (any statistic per group: sex, kVp, scanner) and
  :func:`results_table` (results as a pandas table, for CSV export).

Conventions
-----------
* Paired inputs are ``(reference, test)``: the reference method (e.g. QCT) first, the
  method under test (bmdqct) second. Differences are ``test - reference``; regressions
  put the reference on the x axis.
* Missing values: a pair with a NaN is **dropped and counted** (``n_dropped`` in every
  result; logged at INFO). Infinite values, unequal lengths, too few subjects, a constant
  column where variation is needed, and a single class in ROC input raise ``ValueError``
  with the expected and received values.
* SDs are sample SDs (``ddof = 1``) unless a docstring says otherwise; every interval is
  two-sided at ``confidence`` (default 0.95) and stored as a ``(low, high)`` tuple.
* Formulas and test vectors: ``docs/qct-reference.md`` §4.

Examples
--------
>>> from bmdqct import agreement
>>> ref = [85, 102, 64, 130, 118, 71, 95, 150, 58, 110]
>>> ours = [88, 99, 69, 127, 121, 75, 92, 155, 60, 114]
>>> ba = agreement.bland_altman(ref, ours)
>>> round(ba.bias, 2), tuple(round(v, 4) for v in (ba.lower, ba.upper))
(1.7, (-4.9016, 8.3016))
>>> round(agreement.concordance_correlation(ref, ours).ccc, 4)
0.9917
"""

from __future__ import annotations

from ._common import StratifiedResult, results_table, stratify
from ._categories import (
    ConfusionMatrix,
    DiceResult,
    KappaResult,
    LabelingResult,
    cohens_kappa,
    confusion_matrix,
    dice,
    labeling_accuracy,
)
from ._diagnostic import (
    LOW_BMD,
    OSTEOPOROSIS,
    DeLongTestResult,
    DiagnosticAccuracy,
    Proportion,
    ROCResult,
    ThresholdTask,
    delong_test,
    diagnostic_accuracy,
    proportion,
    roc_analysis,
    threshold_accuracy,
    threshold_roc,
)
from ._methods import (
    BlandAltmanResult,
    CCCResult,
    RegressionLimitsResult,
    ReplicatesBlandAltmanResult,
    bland_altman,
    bland_altman_regression,
    bland_altman_replicates,
    concordance_correlation,
)
from ._regression import (
    DemingResult,
    LinearRegressionResult,
    PassingBablokResult,
    RegressionResult,
    deming_regression,
    linear_regression,
    passing_bablok,
)
from ._reliability import ICC_KINDS, LSC_FACTOR, ICCResult, PrecisionResult, icc, precision_error

__all__ = [
    # continuous agreement
    "bland_altman",
    "bland_altman_regression",
    "bland_altman_replicates",
    "linear_regression",
    "deming_regression",
    "passing_bablok",
    "concordance_correlation",
    "icc",
    "precision_error",
    # diagnosis
    "ThresholdTask",
    "OSTEOPOROSIS",
    "LOW_BMD",
    "proportion",
    "roc_analysis",
    "threshold_roc",
    "delong_test",
    "diagnostic_accuracy",
    "threshold_accuracy",
    "confusion_matrix",
    "cohens_kappa",
    # segmentation and labeling
    "dice",
    "labeling_accuracy",
    # helpers
    "stratify",
    "results_table",
    # constants
    "ICC_KINDS",
    "LSC_FACTOR",
    # results
    "BlandAltmanResult",
    "RegressionLimitsResult",
    "ReplicatesBlandAltmanResult",
    "RegressionResult",
    "LinearRegressionResult",
    "DemingResult",
    "PassingBablokResult",
    "CCCResult",
    "ICCResult",
    "PrecisionResult",
    "Proportion",
    "ROCResult",
    "DeLongTestResult",
    "DiagnosticAccuracy",
    "ConfusionMatrix",
    "KappaResult",
    "DiceResult",
    "LabelingResult",
    "StratifiedResult",
]
