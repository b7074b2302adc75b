"""bmdqct: vertebral trabecular bone mineral density from routine and low-dose CT.

Pipeline (Pan et al., Eur Radiol 2020): ``load_ct`` -> ``bmdqct.segment.segment_spine``
(dense 3-D U-Net, TensorFlow, imported only on use) -> ``label_vertebrae`` ->
``vertebral_body_voi`` -> ``Calibration.apply`` -> ``classify_bmd``; ``measure`` runs
it all. ``bmdqct.agreement`` holds the statistics of method-comparison studies and
``bmdqct.synthetic`` a generator of CT scans with known ground truth.

Geometry and units are described once, in :mod:`bmdqct.volume`.
"""

import logging

from ._version import __version__
from .errors import (
    BMDQCTError,
    BMDQCTWarning,
    CalibrationError,
    CalibrationWarning,
    DicomSeriesError,
    GeometryError,
    InputError,
    LabelingError,
    MeasurementError,
    QualityWarning,
    SegmentationError,
)
from .volume import CTVolume, LabelVolume, to_canonical
from .io import SeriesInfo, list_series, load_ct, load_labels, write_dicom_series, write_nifti
from .preprocess import clip_hu, resample, resample_like
from .measure import LevelMeasurement, Result, measure

# Exported lazily (PEP 562): these modules pull in scipy.stats / statsmodels, and
# ``import bmdqct`` should stay well under a second.
_LAZY = {
    **{name: "calibration" for name in (
        "Calibration", "read_calibration", "read_certificate", "calibrate_phantom",
        "fit_phantom", "select_calibration", "add_to_store", "calibration_history",
        "fit_paired_calibration", "convert_mineral")},
    **{name: "labeling" for name in (
        "label_vertebrae", "vertebra_labels_from_map", "VertebraLabels", "LevelInfo", "QCFlag")},
    **{name: "voi" for name in ("vertebral_body_voi", "VOI", "VOIProtocol", "DEFAULT_VOI_PROTOCOL")},
    **{name: "classify" for name in (
        "classify_bmd", "diagnose", "Diagnosis", "BMDCategory", "ACR_THRESHOLDS_MG_CM3")},
    **{name: "synthetic" for name in ("synthesize_ldct", "synthesize_cohort", "Truth", "Cohort")},
    **{name: "agreement" for name in (
        "bland_altman", "bland_altman_regression", "bland_altman_replicates",
        "linear_regression", "deming_regression", "passing_bablok", "concordance_correlation",
        "icc", "precision_error", "roc_analysis", "threshold_roc", "delong_test",
        "diagnostic_accuracy", "threshold_accuracy", "proportion", "confusion_matrix",
        "cohens_kappa", "dice", "labeling_accuracy", "stratify", "results_table",
        "ThresholdTask", "OSTEOPOROSIS", "LOW_BMD")},
}

__all__ = [
    "__version__",
    "BMDQCTError",
    "BMDQCTWarning",
    "CalibrationError",
    "CalibrationWarning",
    "DicomSeriesError",
    "GeometryError",
    "InputError",
    "LabelingError",
    "MeasurementError",
    "QualityWarning",
    "SegmentationError",
    "CTVolume",
    "LabelVolume",
    "to_canonical",
    "SeriesInfo",
    "list_series",
    "load_ct",
    "load_labels",
    "write_dicom_series",
    "write_nifti",
    "clip_hu",
    "resample",
    "resample_like",
    "LevelMeasurement",
    "Result",
    "measure",
]

__all__ += sorted(_LAZY)

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bmdqct' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
