"""Categories, kappa and segmentation overlap (private; see :mod:`bmdqct.agreement`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._common import _check_confidence, _check_count, _interval, _z
from ._diagnostic import Proportion, proportion
from ..errors import GeometryError

__all__ = [
    "ConfusionMatrix",
    "KappaResult",
    "DiceResult",
    "LabelingResult",
    "confusion_matrix",
    "cohens_kappa",
    "dice",
    "labeling_accuracy",
]

Interval = tuple[float, float]


# =========================================================================== categories


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """Counts of reference category (rows) × test category (columns).

    Attributes
    ----------
    labels : tuple of str
        Category order of rows and columns.
    counts : (K, K) ndarray of int
    n, n_dropped : int
    accuracy : Proportion
        Share on the diagonal.
    """

    labels: tuple[str, ...]
    counts: np.ndarray
    n: int
    n_dropped: int
    accuracy: Proportion

    def to_frame(self):
        """The table as a pandas DataFrame (index = reference, columns = test)."""
        import pandas as pd

        return pd.DataFrame(self.counts, index=pd.Index(self.labels, name="reference"),
                            columns=pd.Index(self.labels, name="test"))


def _labels_pair(reference, test, labels, *, what: str):
    ref = np.asarray(reference, dtype=object)
    tst = np.asarray(test, dtype=object)
    if ref.ndim != 1 or ref.shape != tst.shape:
        raise ValueError(f"{what}: reference and test must be 1-D and equally long; got shapes "
                         f"{ref.shape} and {tst.shape}")
    missing = np.array([_is_missing(v) for v in ref]) | np.array([_is_missing(v) for v in tst])
    n_dropped = int(missing.sum())
    ref, tst = [str(v) for v in ref[~missing]], [str(v) for v in tst[~missing]]
    if labels is None:
        labels = tuple(sorted(set(ref) | set(tst)))
    else:
        labels = tuple(str(v) for v in labels)
        unknown = sorted((set(ref) | set(tst)) - set(labels))
        if unknown:
            raise ValueError(f"{what}: categories {unknown} are not in labels={list(labels)}")
    return ref, tst, labels, n_dropped


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _table(ref, tst, labels) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, ([index[v] for v in ref], [index[v] for v in tst]), 1)
    return counts


def confusion_matrix(reference, test, *, labels: Sequence[str] | None = None,
                     confidence: float = 0.95) -> ConfusionMatrix:
    """Confusion matrix of categories (e.g. the three ACR BMD categories).

    Parameters
    ----------
    reference, test : (N,) array_like
        Category of each subject by each method (strings or enum members; compared as
        text). ``None``, ``""`` and NaN are missing: the pair is dropped.
    labels : sequence of str, optional
        Category order (e.g. ``("osteoporosis", "osteopenia", "normal")``); categories
        absent from the data still get a row and a column. Default: sorted categories seen.
    confidence : float, optional
        Level of the accuracy interval.

    Returns
    -------
    ConfusionMatrix

    Examples
    --------
    >>> cm = confusion_matrix(["a", "b", "b", "c"], ["a", "b", "c", "c"], labels=["a", "b", "c"])
    >>> cm.counts.tolist(), cm.accuracy.count
    ([[1, 0, 0], [0, 1, 1], [0, 0, 1]], 3)
    """
    ref, tst, labels, n_dropped = _labels_pair(reference, test, labels, what="confusion_matrix")
    _check_count(len(ref), 1, what="confusion_matrix", n_dropped=n_dropped)
    counts = _table(ref, tst, labels)
    return ConfusionMatrix(labels=labels, counts=counts, n=len(ref), n_dropped=n_dropped,
                           accuracy=proportion(int(np.trace(counts)), len(ref), confidence=confidence))


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa (unweighted or weighted) with its asymptotic interval.

    Attributes
    ----------
    kappa, se : float
    ci : (float, float)
        ``kappa ± z·se`` (statsmodels' asymptotic SE), clipped to [-1, 1].
    p_value : float
        Two-sided test of kappa = 0 (SE under the null).
    weights : str
        ``"none"``, ``"linear"`` or ``"quadratic"``.
    n, n_dropped : int
    labels : tuple of str
    confidence : float
    """

    kappa: float
    se: float
    ci: Interval
    p_value: float
    weights: str
    n: int
    n_dropped: int
    labels: tuple[str, ...]
    confidence: float


def cohens_kappa(reference, test, *, weights: str | None = None,
                 labels: Sequence[str] | None = None, confidence: float = 0.95) -> KappaResult:
    """Cohen's kappa between two categorisations, optionally linear or quadratic weighted.

    Parameters
    ----------
    reference, test : (N,) array_like
        Categories by each method; missing values drop the pair.
    weights : {None, "linear", "quadratic"}, optional
        Weighting of disagreements for **ordered** categories; give `labels` in order
        (e.g. ``("osteoporosis", "osteopenia", "normal")``) so that distances are right.
    labels : sequence of str, optional
        Category order; default: sorted categories seen (only right for unordered kappa
        or labels that sort in order).
    confidence : float, optional

    Returns
    -------
    KappaResult

    Raises
    ------
    ValueError
        Unknown `weights`, fewer than 2 pairs, or categories outside `labels`.

    Notes
    -----
    Builds the K × K table (all `labels`, also empty ones) and calls
    ``statsmodels.stats.inter_rater.cohens_kappa(table, wt=weights)``.

    Examples
    --------
    >>> ref = ["low", "low", "mid", "mid", "high", "high", "mid", "low"]
    >>> tst = ["low", "mid", "mid", "mid", "high", "mid", "mid", "low"]
    >>> res = cohens_kappa(ref, tst, weights="linear", labels=["low", "mid", "high"])
    >>> round(res.kappa, 4), res.weights
    (0.6667, 'linear')
    """
    from scipy import stats
    from statsmodels.stats.inter_rater import cohens_kappa as _sm_kappa

    confidence = _check_confidence(confidence)
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}")
    ref, tst, labels, n_dropped = _labels_pair(reference, test, labels, what="cohens_kappa")
    _check_count(len(ref), 2, what="cohens_kappa", unit="pairs", n_dropped=n_dropped)
    if len(labels) < 2:
        raise ValueError(f"cohens_kappa needs at least 2 categories; got {list(labels)} — pass labels= "
                         "with every possible category")
    with np.errstate(divide="ignore", invalid="ignore"):
        res = _sm_kappa(_table(ref, tst, labels), wt=weights)
    kappa, se = float(res["kappa"]), float(res["std_kappa"])
    z = _z(confidence)
    se0 = float(res["std_kappa0"])
    p = float(2 * stats.norm.sf(abs(kappa / se0))) if se0 > 0 else math.nan
    ci = _interval(max(kappa - z * se, -1.0), min(kappa + z * se, 1.0))
    return KappaResult(kappa=kappa, se=se, ci=ci, p_value=p,
                       weights=weights or "none", n=len(ref), n_dropped=n_dropped, labels=labels,
                       confidence=confidence)


# =========================================================================== segmentation


def _label_array(labels, name: str) -> tuple[np.ndarray, dict[int, str]]:
    from ..volume import LabelVolume

    if isinstance(labels, LabelVolume):
        return labels.labels, {v: k for k, v in labels.names.items()}
    array = np.asarray(labels)
    if array.dtype.kind not in "iub":
        raise ValueError(f"{name} must be a LabelVolume or an integer label array; got dtype {array.dtype}")
    return array, {}


def _check_grids(reference, predicted, ref: np.ndarray, pred: np.ndarray, what: str) -> None:
    from ..volume import LabelVolume, same_grid

    if ref.shape != pred.shape:
        raise GeometryError(f"{what}: reference and predicted labels must be on the same grid; got shapes "
                            f"{ref.shape} and {pred.shape}; resample one onto the other first "
                            "(bmdqct.preprocess.resample_like)")
    if (isinstance(reference, LabelVolume) and isinstance(predicted, LabelVolume)
            and not same_grid(reference, predicted)):
        raise GeometryError(f"{what}: reference and predicted labels have the same shape but different "
                            "affines; resample one onto the other first (bmdqct.preprocess.resample_like)")


@dataclass(frozen=True)
class DiceResult:
    """Dice overlap per label and overall.

    Attributes
    ----------
    per_level : mapping of str to float
        Dice of each label (name from the LabelVolume, else the id as text).
    mean : float
        Mean of ``per_level``.
    overall : float
        Dice of the foregrounds (any label > 0), ignoring which label.
    reference_voxels, predicted_voxels : mapping of str to int
    """

    per_level: Mapping[str, float]
    mean: float
    overall: float
    reference_voxels: Mapping[str, int]
    predicted_voxels: Mapping[str, int]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else math.nan


def dice(reference, predicted, *, levels: Sequence[str] | None = None) -> DiceResult:
    """Dice coefficient per level (label) and of the whole foreground.

    Parameters
    ----------
    reference, predicted : LabelVolume or (I, J, K) int ndarray
        Label maps on the same grid (e.g. per-level vertebrae with VerSe ids, or the
        4-class segmentation). Ids are matched, so both must use the same scheme.
    levels : sequence of str, optional
        Names (or ids as text) to score; default every label present in `reference`.
        A level absent from both maps is NaN and left out of ``mean``.

    Returns
    -------
    DiceResult

    Raises
    ------
    GeometryError
        Different grids.
    KeyError
        A level name not in the reference's names.

    Examples
    --------
    >>> ref = np.zeros((4, 4, 4), dtype=np.int16); ref[:2] = 20; ref[2:] = 21
    >>> pred = ref.copy(); pred[1] = 21
    >>> res = dice(ref, pred)
    >>> {k: round(v, 3) for k, v in res.per_level.items()}, res.overall
    ({'20': 0.667, '21': 0.8}, 1.0)
    """
    ref, ref_names = _label_array(reference, "reference")
    pred, _ = _label_array(predicted, "predicted")
    _check_grids(reference, predicted, ref, pred, "dice")
    name_to_id = {v: k for k, v in ref_names.items()}
    if levels is None:
        ids = [int(v) for v in np.unique(ref) if v != 0]
    else:
        ids = []
        for level in levels:
            if level in name_to_id:
                ids.append(name_to_id[level])
            elif str(level).isdigit():
                ids.append(int(level))
            else:
                raise KeyError(f"dice: level {level!r} is not a label of the reference; names are "
                               f"{sorted(name_to_id)}")
    per_level, ref_vox, pred_vox = {}, {}, {}
    for label_id in ids:
        name = ref_names.get(label_id, str(label_id))
        a, b = ref == label_id, pred == label_id
        per_level[name] = _dice(a, b)
        ref_vox[name], pred_vox[name] = int(a.sum()), int(b.sum())
    scored = [v for v in per_level.values() if not math.isnan(v)]
    return DiceResult(per_level=per_level, mean=float(np.mean(scored)) if scored else math.nan,
                      overall=_dice(ref > 0, pred > 0), reference_voxels=ref_vox,
                      predicted_voxels=pred_vox)


@dataclass(frozen=True)
class LabelingResult:
    """Vertebra labeling accuracy (Pan et al. 2020: 97.5 %).

    Attributes
    ----------
    accuracy : Proportion
        Correctly labeled vertebrae / reference vertebrae, with Wilson and exact CIs.
    errors : tuple of (int, str, str)
        ``(case index, reference level, predicted level or "missed")`` of every error.
    """

    accuracy: Proportion
    errors: tuple[tuple[int, str, str], ...]


def labeling_accuracy(reference, predicted, *, confidence: float = 0.95) -> LabelingResult:
    """Share of reference vertebrae whose predicted label is right.

    Parameters
    ----------
    reference, predicted : LabelVolume or int ndarray, or sequences of them (one per case)
        Per-level label maps on the same grid. Each reference vertebra is matched to the
        predicted label that overlaps most of it (background excluded); it is correct if
        that label has the same id, and "missed" if nothing overlaps it.
    confidence : float, optional

    Returns
    -------
    LabelingResult

    Raises
    ------
    ValueError
        Different numbers of cases, or no reference vertebra at all.
    GeometryError
        A case whose maps are on different grids.

    Examples
    --------
    >>> ref = np.zeros((6, 2, 2), dtype=np.int16); ref[:2], ref[2:4], ref[4:] = 19, 20, 21
    >>> shifted = np.roll(ref, 2, axis=0); shifted[:2] = 19
    >>> res = labeling_accuracy([ref, ref], [ref, shifted])
    >>> res.accuracy.count, res.accuracy.total, res.errors
    (4, 6, ((1, '20', '19'), (1, '21', '20')))
    """
    refs = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    preds = list(predicted) if isinstance(predicted, (list, tuple)) else [predicted]
    if len(refs) != len(preds):
        raise ValueError(f"labeling_accuracy: got {len(refs)} reference and {len(preds)} predicted cases")
    correct, total, errors = 0, 0, []
    for case, (r, p) in enumerate(zip(refs, preds)):
        ref, ref_names = _label_array(r, "reference")
        pred, pred_names = _label_array(p, "predicted")
        _check_grids(r, p, ref, pred, "labeling_accuracy")
        for label_id in (int(v) for v in np.unique(ref) if v != 0):
            inside = pred[ref == label_id]
            inside = inside[inside != 0]
            total += 1
            if inside.size == 0:
                errors.append((case, ref_names.get(label_id, str(label_id)), "missed"))
                continue
            ids, counts = np.unique(inside, return_counts=True)
            best = int(ids[np.argmax(counts)])
            if best == label_id:
                correct += 1
            else:
                errors.append((case, ref_names.get(label_id, str(label_id)),
                               pred_names.get(best, str(best))))
    if total == 0:
        raise ValueError("labeling_accuracy: the reference holds no labeled vertebra")
    return LabelingResult(accuracy=proportion(correct, total, confidence=confidence), errors=tuple(errors))
