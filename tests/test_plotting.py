"""Tests of the figures' legibility: calibration-fit labels and the ROC legend."""

import itertools

import numpy as np
import pytest

from bmdqct import agreement as A
from bmdqct.calibration import calibrate_phantom, fit_phantom
from bmdqct.plotting import plot_phantom_fit, plot_roc
from bmdqct.synthetic import example_certificate, synthesize_phantom_scan


def _rod_label_boxes(ax):
    ax.figure.draw_without_rendering()
    texts = [t for t in ax.texts if (t.get_gid() or "").startswith("rod-label:")]
    return texts, [t.get_window_extent() for t in texts]


def _assert_no_overlap(texts, boxes):
    for (ta, a), (tb, b) in itertools.combinations(zip(texts, boxes), 2):
        assert not a.overlaps(b), f"rod labels {ta.get_text()!r} and {tb.get_text()!r} overlap"


def test_rod_labels_of_nearly_equal_rods_do_not_overlap(close_figures):
    # Mindways rods A and B differ by 1.6 mg/cm3 and their HU - water values by 2.2: the same spot
    cal = fit_phantom([-60.312, -17.810, 186.002, 339.390, 449.362], example_certificate())
    ax = plot_phantom_fit(cal)
    texts, boxes = _rod_label_boxes(ax)
    assert sorted(t.get_text()[0] for t in texts) == ["A", "B", "C", "D", "E"]
    # without separation the A and B labels would coincide
    a, b = (next(t for t in texts if t.get_text().startswith(k)) for k in "AB")
    assert a.xy == pytest.approx(b.xy, abs=3.0)
    _assert_no_overlap(texts, boxes)
    # each label still names its rod's residual
    for t in texts:
        assert t.get_text() == f"{t.get_text()[0]} ({cal.residuals_mg_cm3[t.get_text()[0]]:+.1f})"


@pytest.mark.parametrize("figsize", [(6.4, 4.0), (3.2, 2.4)])
def test_rod_labels_do_not_overlap_after_a_draw_of_a_scan_fit(close_figures, figsize):
    from matplotlib.figure import Figure

    vol, truth = synthesize_phantom_scan("mindways-model3-ct", 0, shape=(128, 128), pixel_mm=1.6,
                                         n_slices=6, noise_hu=0)
    cal = calibrate_phantom(vol, truth.certificate)
    ax = Figure(figsize=figsize, layout="constrained").add_subplot()
    assert plot_phantom_fit(cal, ax=ax) is ax
    texts, boxes = _rod_label_boxes(ax)
    assert len(texts) == len(cal.details["rods"])
    _assert_no_overlap(texts, boxes)


def _legend(roc):
    return plot_roc(roc).get_legend().get_texts()[0].get_text()


def test_roc_legend_with_few_negatives_says_so(close_figures):
    y = [1] * 12 + [0] * 3
    score = np.r_[np.linspace(0.9, 0.35, 12), [0.4, 0.2, 0.1]]
    roc = A.roc_analysis(y, score)
    # the negative at 0.4 ties the positive at 0.4 (counts 1/2) and beats the one at 0.35: 1.5 of 36 pairs
    assert roc.auc == pytest.approx(1 - 1.5 / 36)
    text = _legend(roc)
    assert f"AUC {roc.auc:.3f} (CI not reliable with 3 negative)" in text
    low, high = roc.auc_ci
    assert f"{low:.3f}–{high:.3f}" not in text


def test_roc_legend_with_zero_width_ci_says_so(close_figures):
    # enough cases of each kind, perfectly separated: DeLong's interval is 1.000-1.000
    roc = A.roc_analysis([1] * 10 + [0] * 10, np.r_[np.linspace(1.0, 0.6, 10), np.linspace(0.5, 0.0, 10)])
    assert roc.auc == 1.0 and roc.auc_ci[0] == roc.auc_ci[1]
    text = _legend(roc)
    assert "AUC 1.000 (CI not reliable: zero width at 1.000)" in text and "1.000–1.000" not in text


def test_roc_legend_prints_a_ci_that_can_be_trusted(close_figures):
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(30), np.zeros(30)]
    roc = A.roc_analysis(y, y + rng.normal(0, 0.8, 60))
    low, high = roc.auc_ci
    assert 0 < low < roc.auc < high <= 1
    assert f"AUC {roc.auc:.3f} ({low:.3f}–{high:.3f})" in _legend(roc)
