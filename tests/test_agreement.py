"""Tests of bmdqct.agreement against published values, the §4.7 test vectors and independent code.

Reference values:
* ``docs/qct-reference.md`` §4.7 test vectors (derived from the formulas of §4.1–§4.6).
* Bland & Altman (1986) PEFR example (Lancet 327:307-310), data of their Table 1.
* Shrout & Fleiss (1979) ICC example, as pinned in pingouin's ``tests/test_reliability.py``
  (values checked there against R ``psych::ICC``).
* scipy / statsmodels where they compute the same interval (t-interval of a mean, OLS,
  Pearson r Fisher-z interval, binomial Wilson and Clopper–Pearson intervals).
* Straightforward independent implementations written here (O(m·n) DeLong, Deming by
  principal axes, unweighted and weighted kappa from their definitions).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bmdqct import agreement as A
from bmdqct.errors import GeometryError
from bmdqct.volume import LabelVolume

# §4.7 test vectors
X_REF = [85, 102, 64, 130, 118, 71, 95, 150, 58, 110]
Y_TEST = [88, 99, 69, 127, 121, 75, 92, 155, 60, 114]
PRED = [62, 75, 81, 70, 95, 110, 78, 130, 88, 101, 66, 125]
TRUTH = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0]

# Bland & Altman 1986, Table 1: PEFR (l/min) of 17 subjects, two readings with each meter.
# Transcribed from the paper; the same numbers are on Bland's page
# https://www-users.york.ac.uk/~mb55/meas/repeated.htm and in R blandr (bland.altman.PEFR).
WRIGHT_1 = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
WRIGHT_2 = [490, 397, 512, 401, 470, 611, 415, 431, 638, 429, 420, 633, 275, 492, 165, 372, 421]
MINI_1 = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]
MINI_2 = [525, 415, 508, 444, 500, 625, 460, 390, 642, 432, 420, 605, 227, 467, 268, 370, 443]


# --------------------------------------------------------------------------- §4.7 vectors


def test_bland_altman_matches_the_reference_test_vectors():
    res = A.bland_altman(X_REF, Y_TEST)
    assert res.n == 10 and res.n_dropped == 0 and res.ddof == 1
    assert res.bias == pytest.approx(1.70, abs=1e-12)
    assert res.sd == pytest.approx(3.368152, abs=1e-6)        # sample SD, not 3.195309 (ddof 0)
    assert (res.lower, res.upper) == pytest.approx((-4.9016, 8.3016), abs=1e-4)
    assert res.bias_ci == pytest.approx((-0.7094, 4.1094), abs=1e-4)
    assert res.lower_ci == pytest.approx((-9.0748, -0.7283), abs=1e-4)
    assert res.upper_ci == pytest.approx((4.1283, 12.4748), abs=1e-4)
    # §4.7 prints -11.1020 and 14.5020 for the outer bounds; the non-central t quantile
    # computed by quadrature (test below) gives -11.10223 and 14.50223, so the printed
    # vector is off by 2e-4 in its last digit: tolerance 3e-4 here, 1e-8 against quadrature.
    assert res.lower_ci_exact == pytest.approx((-11.1020, -2.2178), abs=3e-4)
    assert res.upper_ci_exact == pytest.approx((5.6178, 14.5020), abs=3e-4)
    assert res.slope == pytest.approx(-0.01046, abs=1e-5)
    assert res.slope_p == pytest.approx(0.801, abs=1e-3)
    np.testing.assert_allclose(res.differences, np.subtract(Y_TEST, X_REF))


def test_exact_limit_intervals_match_a_quadrature_of_the_noncentral_t():
    """Carkeet (2015): (limit - bias)·√n/s ~ non-central t(n-1, nc = 1.96·√n). Its CDF is
    computed here by integrating Φ(t·sqrt(v/df) - nc) over the chi-square density of v,
    independently of scipy.stats.nct."""
    from scipy import integrate, optimize

    res = A.bland_altman(X_REF, Y_TEST)
    df, nc = 9, 1.96 * math.sqrt(10)

    def cdf(t):
        def integrand(v):
            return stats.norm.cdf(t * math.sqrt(v / df) - nc) * stats.chi2.pdf(v, df)
        return integrate.quad(integrand, 0, np.inf, epsabs=1e-13, epsrel=1e-13, limit=200)[0]

    q_low, q_high = (optimize.brentq(lambda t, p=p: cdf(t) - p, 0, 50, xtol=1e-13) for p in (0.025, 0.975))
    se = res.sd / math.sqrt(10)
    assert res.upper_ci_exact == pytest.approx((1.7 + se * q_low, 1.7 + se * q_high), abs=1e-8)
    assert res.lower_ci_exact == pytest.approx((1.7 - se * q_high, 1.7 - se * q_low), abs=1e-8)


def test_lin_ccc_matches_the_reference_test_vectors():
    res = A.concordance_correlation(X_REF, Y_TEST)
    assert res.ccc == pytest.approx(0.991690, abs=1e-6)
    assert res.ci == pytest.approx((0.967925, 0.997866), abs=1e-6)
    assert res.r == pytest.approx(0.993566, abs=1e-6)
    assert res.bias_correction == pytest.approx(0.998113, abs=1e-6)


def test_deming_and_passing_bablok_match_the_reference_test_vectors():
    dem = A.deming_regression(X_REF, Y_TEST)
    assert (dem.slope, dem.intercept) == pytest.approx((0.989559, 2.726377), abs=1e-6)
    pb = A.passing_bablok(X_REF, Y_TEST)
    assert (pb.n_slopes, pb.n_shift) == (45, 0)
    assert pb.slope == pytest.approx(1.0, abs=1e-12)
    assert pb.slope_ci == pytest.approx((0.8750, 1.0385), abs=1e-4)
    assert pb.intercept == pytest.approx(3.0, abs=1e-12)
    assert pb.intercept_ci == pytest.approx((-0.519, 13.125), abs=1e-3)


def test_delong_auc_and_threshold_accuracy_match_the_reference_test_vectors():
    res = A.roc_analysis(TRUTH, -np.asarray(PRED, float))
    assert res.auc == pytest.approx(0.971429, abs=1e-6)
    assert res.auc_se == pytest.approx(0.040406, abs=1e-6)
    assert res.auc_ci == pytest.approx((0.8922, 1.0), abs=1e-4)          # clipped at 1
    assert res.auc_ci_logit == pytest.approx((0.6622, 0.9983), abs=1e-4)
    acc = A.diagnostic_accuracy(np.array(TRUTH, bool), np.array(PRED) < 80)
    assert (acc.tp, acc.fn, acc.fp, acc.tn) == (4, 1, 1, 6)
    assert acc.sensitivity.estimate == pytest.approx(0.8)
    assert acc.sensitivity.ci == pytest.approx((0.3755, 0.9638), abs=1e-4)
    assert acc.sensitivity.ci_exact == pytest.approx((0.2836, 0.9949), abs=1e-4)
    assert acc.specificity.estimate == pytest.approx(6 / 7)
    assert acc.specificity.ci == pytest.approx((0.4869, 0.9743), abs=1e-4)
    assert acc.specificity.ci_exact == pytest.approx((0.4213, 0.9964), abs=1e-4)
    assert (acc.sensitivity.count, acc.sensitivity.total) == (4, 5)


def test_proportion_and_precision_match_the_reference_test_vectors():
    p = A.proportion(45, 50)
    assert p.ci == pytest.approx((0.786398, 0.956524), abs=1e-6)
    assert p.ci_exact == pytest.approx((0.781865, 0.966725), abs=1e-6)
    prec = A.precision_error([[80, 82], [120, 117], [95, 96], [60, 63]])
    assert prec.rms_sd == pytest.approx(1.6956, abs=1e-4)
    assert prec.rms_cv_percent == pytest.approx(2.162, abs=1e-3)
    assert prec.lsc == pytest.approx(4.697, abs=1e-3)
    assert prec.lsc_percent == pytest.approx(5.99, abs=1e-2)
    assert (prec.n_subjects, prec.n_measurements, prec.df) == (4, 8, 4)


# --------------------------------------------------------------------------- published data


def test_bland_altman_reproduces_the_1986_lancet_pefr_example():
    """Bland JM, Altman DG. Lancet 1986;327(8476):307-310, doi:10.1016/S0140-6736(86)90837-8.

    First Wright and first mini-Wright reading of 17 subjects (Table 1). The text beside
    Figure 2 reports a mean difference (Wright − mini) of −2.1 l/min, an SD of the
    differences of 38.8 l/min, and limits of agreement (mean ± 2 SD, computed from the
    rounded mean and SD) of −79.7 to 75.5 l/min. The intervals are checked against
    scipy's t interval of a mean and the paper's formula SE(limit) = sqrt(3 s²/n).
    """
    res = A.bland_altman(MINI_1, WRIGHT_1, limits=2.0)      # d = Wright − mini
    bias, sd = round(res.bias, 1), round(res.sd, 1)
    assert (bias, sd) == (-2.1, 38.8)
    assert (round(bias - 2 * sd, 1), round(bias + 2 * sd, 1)) == (-79.7, 75.5)
    assert (res.lower, res.upper) == pytest.approx((-79.7, 75.5), abs=0.1)
    d = np.subtract(WRIGHT_1, MINI_1)
    scipy_ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert res.bias_ci == pytest.approx((scipy_ci.low, scipy_ci.high), rel=1e-12)
    se_limit = math.sqrt(3 * d.var(ddof=1) / d.size)
    half = stats.t.ppf(0.975, 16) * se_limit
    assert res.lower_ci == pytest.approx((res.lower - half, res.lower + half), rel=1e-12)
    # The exact interval is wider than the approximation on the outside for n = 17 (Carkeet 2015).
    assert res.lower_ci_exact[0] < res.lower_ci[0] and res.upper_ci_exact[1] > res.upper_ci[1]


def test_replicates_match_the_1999_correction_on_the_pefr_duplicates():
    """Bland & Altman 1999 (Stat Methods Med Res 8:135-160) §5.1: with two readings per
    meter, s² = s_d̄² + ½ s_w,Wright² + ½ s_w,mini², where s_d̄ is the SD of the differences of
    subject means and s_w² = Σ(r1 − r2)²/(2n) the within-subject variance of duplicates.
    Computed here from the definitions on the 1986 PEFR duplicates."""
    mini, wright = np.array([MINI_1, MINI_2]), np.array([WRIGHT_1, WRIGHT_2])
    res = A.bland_altman_replicates(mini.T.tolist(), wright.T.tolist())
    d_means = wright.mean(axis=0) - mini.mean(axis=0)
    sw_wright = ((wright[0] - wright[1]) ** 2).sum() / (2 * 17)
    sw_mini = ((mini[0] - mini[1]) ** 2).sum() / (2 * 17)
    expected_sd = math.sqrt(d_means.var(ddof=1) + sw_wright / 2 + sw_mini / 2)
    assert res.sd == pytest.approx(expected_sd, rel=1e-12)
    assert res.bias == pytest.approx(d_means.mean(), rel=1e-12)
    assert res.sd_within_test == pytest.approx(math.sqrt(sw_wright), rel=1e-12)
    assert res.sd_within_reference == pytest.approx(math.sqrt(sw_mini), rel=1e-12)
    assert (res.lower, res.upper) == pytest.approx((res.bias - 1.96 * res.sd, res.bias + 1.96 * res.sd))


def test_replicates_with_one_reading_each_equal_the_ordinary_analysis():
    res = A.bland_altman_replicates([[v] for v in MINI_1], [[v] for v in WRIGHT_1])
    plain = A.bland_altman(MINI_1, WRIGHT_1)
    assert res.sd == pytest.approx(plain.sd, rel=1e-12)
    assert res.bias_ci == pytest.approx(plain.bias_ci, rel=1e-12)


def test_replicates_with_unequal_counts_use_the_anova_within_variance():
    """Unequal replicate counts: the within-subject variance is the one-way ANOVA residual
    mean square (statsmodels), and σ_d² subtracts s_w²·mean(1/m_i) (Bland & Altman 2007)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    ref = [[80, 82, 81], [120, 117], [95], [60, 63, 61, 62], [101, 99], [140, 141]]
    tst = [[83], [129, 128, 127], [99, 97], [55, 56], [104, 102, 100], [139]]
    res = A.bland_altman_replicates(ref, tst)

    def within(groups):
        long = pd.DataFrame([(i, v) for i, g in enumerate(groups) for v in g], columns=["s", "v"])
        return smf.ols("v ~ C(s)", data=long).fit().mse_resid

    d = np.array([np.mean(t) - np.mean(r) for r, t in zip(ref, tst)])
    wr, wt = within(ref), within(tst)
    sigma_d2 = d.var(ddof=1) - wr * np.mean([1 / len(g) for g in ref]) - wt * np.mean([1 / len(g) for g in tst])
    assert sigma_d2 > 0
    assert res.sd == pytest.approx(math.sqrt(sigma_d2 + wr + wt), rel=1e-10)
    assert res.sd_between == pytest.approx(math.sqrt(sigma_d2), rel=1e-10)
    assert (res.n_reference, res.n_test) == (14, 12)
    # A negative estimate of the interaction variance is set to 0 (Bland & Altman 2007).
    tight = A.bland_altman_replicates([[80, 90], [100, 110], [120, 130]], [[85, 86], [105, 106], [125, 124]])
    assert tight.sd_between == 0.0
    assert tight.sd == pytest.approx(math.sqrt(tight.sd_within_reference ** 2 + tight.sd_within_test ** 2))


@pytest.mark.parametrize(
    "kind, value, f, df2, p, ci",
    [("1,1", 0.17, 1.8, 18, 0.16472, (-0.13, 0.72)),
     ("2,1", 0.29, 11.0, 15, 0.00013, (0.02, 0.76)),
     ("3,1", 0.71, 11.0, 15, 0.00013, (0.34, 0.95)),
     ("1,k", 0.44, 1.8, 18, 0.16472, (-0.88, 0.91)),
     ("2,k", 0.62, 11.0, 15, 0.00013, (0.07, 0.93)),
     ("3,k", 0.91, 11.0, 15, 0.00013, (0.68, 0.99))],
)
def test_icc_matches_the_shrout_fleiss_example(kind, value, f, df2, p, ci):
    """Shrout PE, Fleiss JL. Psychol Bull 1979;86:420-428, Table 2 (6 targets × 4 judges):
    ICC(1,1)=0.17, ICC(2,1)=0.29, ICC(3,1)=0.71, ICC(1,4)=0.44, ICC(2,4)=0.62, ICC(3,4)=0.91.
    F, df, p and 95 % CIs as pinned in pingouin tests/test_reliability.py (R psych::ICC)."""
    data = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    res = A.icc(data, kind=kind)
    assert round(res.value, 2) == value
    assert round(res.f, 1) == f and res.df1 == 5 and res.df2 == df2
    assert res.p_value == pytest.approx(p, abs=1e-4)
    assert tuple(round(c, 2) for c in res.ci) == ci
    assert (res.n_subjects, res.n_raters) == (6, 4)


# --------------------------------------------------------------------------- DeLong vs O(m·n)


def _psi_matrix(pos, neg):
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def _delong_naive(truth, scores):
    """Textbook DeLong 1988 with explicit ψ(X_i, Y_j) matrices: AUCs and covariance."""
    truth = np.asarray(truth, bool)
    v10, v01, aucs = [], [], []
    for s in scores:
        psi = _psi_matrix(s[truth], s[~truth])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = truth.sum(), (~truth).sum()
    s10 = np.array([[np.sum((a - a.mean()) * (b - b.mean())) / (m - 1) for b in v10] for a in v10])
    s01 = np.array([[np.sum((a - a.mean()) * (b - b.mean())) / (n - 1) for b in v01] for a in v01])
    return np.array(aucs), s10 / m + s01 / n


def test_delong_matches_an_independent_quadratic_implementation(rng):
    truth = rng.random(60) < 0.35
    # Rounded scores create many ties, which the midrank algorithm must count as ½.
    a = np.round(truth * 1.0 + rng.normal(0, 1, 60), 1)
    b = np.round(0.5 * a + rng.normal(0, 1, 60), 0)
    aucs, cov = _delong_naive(truth, [a, b])
    roc = A.roc_analysis(truth, a)
    assert roc.auc == pytest.approx(aucs[0], abs=1e-12)
    assert roc.auc_se == pytest.approx(math.sqrt(cov[0, 0]), abs=1e-6)
    test = A.delong_test(truth, a, b)
    assert (test.auc_a, test.auc_b) == pytest.approx(tuple(aucs), abs=1e-12)
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert test.difference_se == pytest.approx(se, abs=1e-6)
    assert test.z == pytest.approx((aucs[0] - aucs[1]) / se, abs=1e-6)
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(test.z)), abs=1e-12)
    assert test.correlation == pytest.approx(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]), abs=1e-6)


def test_auc_equals_the_mann_whitney_statistic(rng):
    truth = rng.random(80) < 0.5
    score = np.round(rng.normal(truth * 0.8, 1.0), 1)
    u = stats.mannwhitneyu(score[truth], score[~truth]).statistic
    res = A.roc_analysis(truth, score)
    assert res.auc == pytest.approx(u / (truth.sum() * (~truth).sum()), abs=1e-12)
    # With ties the curve has diagonal segments, and the area under it is still the AUC.
    area = np.sum(np.diff(res.fpr) * (res.tpr[1:] + res.tpr[:-1]) / 2)
    assert area == pytest.approx(res.auc, abs=1e-12)


def test_roc_curve_runs_from_origin_to_one_and_is_monotone():
    res = A.roc_analysis(TRUTH, -np.asarray(PRED, float))
    assert (res.fpr[0], res.tpr[0], res.fpr[-1], res.tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(res.fpr) >= 0) and np.all(np.diff(res.tpr) >= 0)
    area = np.sum(np.diff(res.fpr) * (res.tpr[1:] + res.tpr[:-1]) / 2)     # trapezoids under the curve
    assert area == pytest.approx(res.auc, abs=1e-12)
    # Youden-optimal cut-off: -81 (pred <= 81 positive) gives TPR 1, FPR 1/7.
    assert res.youden_threshold == -81


def test_threshold_helpers_use_the_acr_rules():
    reference = [79.9, 80.0, 120.0, 120.1, 60, 150]
    assert A.OSTEOPOROSIS.positive(reference).tolist() == [True, False, False, False, True, False]
    assert A.LOW_BMD.positive(reference).tolist() == [True, True, True, False, True, False]
    acc = A.threshold_accuracy(reference, [85, 70, 118, 125, 65, 140], task=A.LOW_BMD)
    assert (acc.tp, acc.fn, acc.fp, acc.tn) == (4, 0, 0, 2) and acc.task == "low BMD"
    roc = A.threshold_roc([70, 75, 90, 130, 60, 100, np.nan], [72, 85, 88, 125, 65, 98, 50])
    assert (roc.n_positive, roc.n_negative, roc.n_dropped) == (3, 3, 1)


# --------------------------------------------------------------------------- scipy/statsmodels


def test_linear_regression_matches_scipy(rng):
    x = rng.uniform(40, 200, 50)
    y = 3.0 + 0.95 * x + rng.normal(0, 6, 50)
    res = A.linear_regression(x, y)
    ref = stats.linregress(x, y)
    t = stats.t.ppf(0.975, 48)
    assert (res.slope, res.intercept, res.r) == pytest.approx((ref.slope, ref.intercept, ref.rvalue), rel=1e-10)
    assert res.slope_ci == pytest.approx((ref.slope - t * ref.stderr, ref.slope + t * ref.stderr), rel=1e-10)
    assert res.intercept_ci == pytest.approx(
        (ref.intercept - t * ref.intercept_stderr, ref.intercept + t * ref.intercept_stderr), rel=1e-10)
    assert res.slope_p == pytest.approx(ref.pvalue, rel=1e-8)
    pearson_ci = stats.pearsonr(x, y).confidence_interval(0.95)
    assert res.r_ci == pytest.approx((pearson_ci.low, pearson_ci.high), rel=1e-10)
    assert res.r_squared == pytest.approx(ref.rvalue ** 2)


def test_proportion_intervals_match_scipy_binomtest():
    for k, n in [(0, 7), (3, 11), (45, 50), (12, 12)]:
        p = A.proportion(k, n, confidence=0.9)
        wilson = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        exact = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert p.ci == pytest.approx((wilson.low, wilson.high), abs=1e-10)
        assert p.ci_exact == pytest.approx((exact.low, exact.high), abs=1e-10)
    empty = A.proportion(0, 0)
    assert math.isnan(empty.estimate) and str(empty) == "0/0 (n/a)"


def test_deming_equals_the_principal_axis_and_a_jackknife_by_hand(rng):
    x = rng.uniform(50, 180, 30)
    y = 1.05 * x - 4 + rng.normal(0, 5, 30)
    for delta in (1.0, 2.5):
        res = A.deming_regression(x, y, error_ratio=delta)
        # Scaling y by 1/√δ makes the errors equal: then Deming is the major principal axis.
        ys = y / math.sqrt(delta)
        w, v = np.linalg.eigh(np.cov(x, ys))
        slope = math.sqrt(delta) * v[1, 1] / v[0, 1]
        assert res.slope == pytest.approx(slope, rel=1e-10)
        assert res.intercept == pytest.approx(y.mean() - slope * x.mean(), rel=1e-10)
    loo = []
    for i in range(30):
        keep = np.arange(30) != i
        loo.append(A.deming_regression(x[keep], y[keep]).slope)
    se = math.sqrt(29 / 30 * np.sum((np.array(loo) - np.mean(loo)) ** 2))
    res = A.deming_regression(x, y)
    t = stats.t.ppf(0.975, 28)
    assert res.slope_ci == pytest.approx((res.slope - t * se, res.slope + t * se), rel=1e-10)


def test_cohens_kappa_matches_its_definition():
    labels = ("osteoporosis", "osteopenia", "normal")
    ref = ["osteoporosis"] * 10 + ["osteopenia"] * 14 + ["normal"] * 16
    tst = (["osteoporosis"] * 8 + ["osteopenia"] * 2 + ["osteoporosis"] * 2 + ["osteopenia"] * 10
           + ["normal"] * 2 + ["osteopenia"] * 3 + ["normal"] * 12 + ["osteoporosis"])
    table = A.confusion_matrix(ref, tst, labels=labels).counts / 40
    po, pe = np.trace(table), table.sum(1) @ table.sum(0)
    assert A.cohens_kappa(ref, tst, labels=labels).kappa == pytest.approx((po - pe) / (1 - pe), rel=1e-12)
    i, j = np.indices((3, 3))
    for name, w in (("linear", 1 - abs(i - j) / 2), ("quadratic", 1 - (i - j) ** 2 / 4)):
        po_w = (w * table).sum()
        pe_w = (w * np.outer(table.sum(1), table.sum(0))).sum()
        res = A.cohens_kappa(ref, tst, weights=name, labels=labels)
        assert res.kappa == pytest.approx((po_w - pe_w) / (1 - pe_w), rel=1e-12)
        assert res.weights == name and res.n == 40
    # Label order matters for weighted kappa (a reversed order would not change distances).
    scrambled = ("osteopenia", "osteoporosis", "normal")
    assert A.cohens_kappa(ref, tst, weights="linear", labels=scrambled).kappa != pytest.approx(
        A.cohens_kappa(ref, tst, weights="linear", labels=labels).kappa)


# --------------------------------------------------------------------------- behaviour


def test_percent_differences_and_proportional_bias_are_detected(rng):
    x = rng.uniform(40, 220, 400)
    y = x * 1.10 + rng.normal(0, 2, 400)                # 10 % proportional error
    res = A.bland_altman(x, y)
    assert res.slope_p < 1e-6 and res.slope > 0
    pct = A.bland_altman(x, y, percent=True)
    assert pct.percent and pct.bias == pytest.approx(100 * 0.10 / 1.05, abs=0.5)
    assert pct.slope_p > 1e-3                           # no trend left in percentages


def test_regression_based_limits_cover_95_percent_when_spread_grows(rng):
    x = rng.uniform(40, 220, 4000)
    y = x + 0.05 * x * rng.normal(0, 1, 4000)           # SD of error grows with magnitude
    res = A.bland_altman_regression(x, y)
    bias, low, high = res.at(res.means)
    inside = np.mean((res.differences >= low) & (res.differences <= high))
    assert inside == pytest.approx(0.95, abs=0.015)      # binomial SE ~ 0.0035 for n = 4000
    assert res.c1 > 0 and abs(res.b1) < 0.01


def test_passing_bablok_is_exact_on_a_line_and_detects_curvature(rng):
    x = np.linspace(40, 200, 40)
    pb = A.passing_bablok(x, 2.0 + 1.1 * x)
    assert (pb.slope, pb.intercept) == pytest.approx((1.1, 2.0))
    assert pb.slope_ci == pytest.approx((1.1, 1.1))
    noisy = A.passing_bablok(x, x + rng.normal(0, 3, 40))
    assert noisy.cusum_p > 0.05
    curved = A.passing_bablok(x, x + 0.02 * (x - 120) ** 2 + rng.normal(0, 1, 40))
    assert curved.cusum_p < 0.05


def test_dice_and_labeling_accuracy_on_label_volumes():
    ref = np.zeros((6, 4, 4), dtype=np.int16)
    ref[0:2], ref[2:4], ref[4:6] = 19, 20, 21
    names = {"T12": 19, "L1": 20, "L2": 21}
    pred = ref.copy()
    pred[3] = 21                                       # a quarter of L1 labelled as L2
    res = A.dice(LabelVolume.from_spacing(ref, (1, 1, 1), names=names),
                 LabelVolume.from_spacing(pred, (1, 1, 1), names=names))
    assert res.per_level == pytest.approx({"T12": 1.0, "L1": 2 * 16 / (32 + 16), "L2": 2 * 32 / (32 + 48)})
    assert res.overall == 1.0 and res.mean == pytest.approx(np.mean(list(res.per_level.values())))
    assert A.dice(ref, pred, levels=["20"]).per_level == pytest.approx({"20": 2 / 3})
    off_by_one = np.where(ref > 0, ref + 1, 0).astype(np.int16)
    lab = A.labeling_accuracy([ref, ref], [pred, off_by_one])
    assert (lab.accuracy.count, lab.accuracy.total) == (3, 6)
    assert lab.errors[0] == (1, "19", "20")
    empty = np.zeros_like(ref)
    assert A.labeling_accuracy(ref, empty).errors[0][2] == "missed"


def test_nan_pairs_are_dropped_and_counted():
    x = [85, np.nan, 64, 130, 118, 71, 95, 150, 58, 110, 99]
    y = [88, 99, 69, 127, 121, 75, 92, 155, 60, 114, np.nan]
    res = A.bland_altman(x, y)
    assert (res.n, res.n_dropped) == (9, 2)
    assert A.linear_regression(x, y).n_dropped == 2
    assert A.icc(np.column_stack([x, y])).n_dropped == 2


def test_stratify_computes_each_group_and_records_refusals():
    import pandas as pd

    df = pd.DataFrame({"sex": ["F"] * 6 + ["M"] * 6,
                       "ref": [70, 75, 90, 130, 60, 100, 110, 130, 140, 125, 150, 135],
                       "ours": [72, 85, 88, 125, 65, 98, 112, 128, 141, 127, 149, 133]})
    res = A.stratify(df, "sex", A.threshold_roc, columns={"reference": "ref", "test": "ours"})
    assert set(res.results) == {"F", "all"}
    assert "both classes" in res.skipped["M"] and res.sizes == {"F": 6, "M": 6, "all": 12}
    table = A.results_table(res)
    assert list(table.index) == ["F", "all"] and "auc_ci_low" in table.columns
    acc = A.stratify(df, "sex", A.threshold_accuracy, columns={"reference": "ref", "test": "ours"},
                     options={"task": A.LOW_BMD}, overall=False)
    rows = A.results_table(acc.results)
    assert (rows.loc["M", "sensitivity_count"], rows.loc["M", "sensitivity_total"]) == (1, 1)
    assert (rows.loc["F", "tp"], rows.loc["F", "fn"], rows.loc["F", "specificity_total"]) == (5, 0, 1)
    with pytest.raises(KeyError, match="not in the table"):
        A.stratify(df, "kvp", A.bland_altman, columns={"reference": "ref", "test": "ours"})


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    "function, args, match",
    [(A.bland_altman, ([1, 2, 3], [1, 2]), "same length"),
     (A.bland_altman, ([1, 2, np.nan], [1, 2, 3]), "at least 3 complete pairs; got 2 after dropping 1"),
     (A.bland_altman, ([1, 2, np.inf], [1, 2, 3]), "infinite"),
     (A.bland_altman, ([5, 5, 5], [5, 5, 5]), "constant"),
     (A.bland_altman, ([[1, 2], [3, 4]], [[1, 2], [3, 4]]), "1-D"),
     (A.linear_regression, ([1, 1, 1, 1], [1, 2, 3, 4]), "reference is constant"),
     (A.concordance_correlation, ([1, 2, 3, 4], [2, 2, 2, 2]), "test is constant"),
     (A.passing_bablok, ([1, 2], [1, 2]), "at least 3"),
     (A.roc_analysis, ([1, 1, 1, 1], [1, 2, 3, 4]), "both classes"),
     (A.roc_analysis, ([1, 0, 2, 0], [1, 2, 3, 4]), "booleans or 0/1"),
     (A.roc_analysis, ([1, 0, 1, 0], [1, 2, 3]), "same length"),
     (A.threshold_roc, ([100, 110, 130, 150, 90], [1, 2, 3, 4, 5]), "got 0 positive and 5 negative"),
     (A.delong_test, ([1, 0, 1, 0], [1, 2, 3, 4], [1, 2]), "same length"),
     (A.proportion, (6, 5), "count <= total"),
     (A.icc, ([[1, 2, 3]],), "at least 3 complete rows"),
     (A.icc, ([1, 2, 3],), "2-D table"),
     (A.precision_error, ([[80, 82], [120]],), "at least 2"),
     (A.bland_altman_replicates, ([[1, 2], [3], [4]], [[1], [2]]), "same subjects")],
)
def test_invalid_input_is_refused_with_a_clear_message(function, args, match):
    with pytest.raises(ValueError, match=match):
        function(*args)


def test_option_errors():
    with pytest.raises(ValueError, match="confidence must be in"):
        A.bland_altman(X_REF, Y_TEST, confidence=95)
    with pytest.raises(ValueError, match="limits must be a positive"):
        A.bland_altman(X_REF, Y_TEST, limits=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        A.icc([[1, 2], [3, 4], [5, 7]], kind="A,1")
    with pytest.raises(ValueError, match="weights must be"):
        A.cohens_kappa(["a", "b"], ["a", "b"], weights="toeplitz")
    with pytest.raises(ValueError, match=r"categories \['c'\] are not in labels"):
        A.cohens_kappa(["a", "b"], ["a", "c"], labels=["a", "b"])
    with pytest.raises(ValueError, match="error_ratio must be > 0"):
        A.deming_regression(X_REF, Y_TEST, error_ratio=0)
    with pytest.raises(ValueError, match="uncorrelated"):
        A.deming_regression([1, 2, 3, 4, 5], [3, 1, 5, 1, 3])
    with pytest.raises(ValueError, match=r"percent=True\) needs pair means other than 0"):
        A.bland_altman([-1, 1, 2], [1, -1, 3], percent=True)
    with pytest.raises(ValueError, match="NaN value"):
        A.roc_analysis([1.0, np.nan, 0.0, 0.0, 1.0], [1, 2, 3, 4, 5])
    with pytest.raises(GeometryError, match="same grid"):
        A.dice(np.zeros((2, 2, 2), int), np.zeros((2, 2, 3), int))
    with pytest.raises(KeyError, match="not a label"):
        A.dice(LabelVolume.from_spacing(np.ones((2, 2, 2), np.int16), (1, 1, 1), names={"L1": 1}),
               np.ones((2, 2, 2), np.int16), levels=["L3"])
    with pytest.raises(ValueError, match="no labeled vertebra"):
        A.labeling_accuracy(np.zeros((2, 2, 2), int), np.zeros((2, 2, 2), int))


# --------------------------------------------------------------------------- degenerate data


def test_ccc_of_uncorrelated_methods_has_a_finite_interval():
    """r = 0 exactly: Lin's SE has ccc/r terms; written with C_b = ccc/r it is C_b²/(n-2)."""
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 1.0, 1.0, 2.0])
    res = A.concordance_correlation(x, y)
    assert res.r == 0.0 and res.ccc == 0.0
    sx, sy = x.std(), y.std()
    cb = 2 * sx * sy / (sx ** 2 + sy ** 2 + (x.mean() - y.mean()) ** 2)
    assert res.bias_correction == pytest.approx(cb, rel=1e-12)
    assert res.se == pytest.approx(cb / math.sqrt(len(x) - 2), rel=1e-12)
    assert res.ci[0] < 0.0 < res.ci[1]


def test_ccc_bias_correction_still_equals_ccc_over_r():
    res = A.concordance_correlation(X_REF, Y_TEST)
    assert res.bias_correction == pytest.approx(res.ccc / res.r, rel=1e-12)


def test_icc_of_perfect_agreement_is_one_without_warnings():
    """No error variance: F is infinite, ICC = 1 (a warning would fail under filterwarnings=error)."""
    same = [[1, 1], [2, 2], [3, 3]]
    for kind in A.ICC_KINDS:
        res = A.icc(same, kind=kind)
        assert (res.value, res.ci, res.f, res.p_value) == (1.0, (1.0, 1.0), math.inf, 0.0), kind
    # a constant rater offset: perfect consistency (form 3), absolute agreement below 1 (form 2)
    offset = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    assert A.icc(offset, kind="3,1").value == 1.0
    msr, msc, n, k = 2 * 1.0, 3 * 0.5 / 1, 3, 2         # row means 1.5, 2.5, 3.5; column means 2, 3
    absolute = A.icc(offset, kind="2,1")
    assert absolute.value == pytest.approx(msr / (msr + k * msc / n), rel=1e-12)
    assert absolute.ci[0] < absolute.value < absolute.ci[1] < 1.0
    with pytest.raises(ValueError, match="same mean rating"):
        A.icc([[1, 2], [1, 2], [1, 2]])


@pytest.mark.parametrize("function", [A.bland_altman, A.bland_altman_regression])
def test_limits_must_be_positive(function):
    with pytest.raises(ValueError, match="limits must be a positive"):
        function(X_REF, Y_TEST, limits=-1.96)
    with pytest.raises(ValueError, match="limits must be a positive"):
        A.bland_altman_replicates([[1], [2], [3]], [[1], [2], [4]], limits=float("nan"))
