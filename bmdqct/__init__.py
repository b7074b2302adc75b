"""bmdqct: vertebral trabecular bone mineral density from routine and low-dose CT.

Pipeline (Pan et al., Eur Radiol 2020): ``load_ct`` -> ``bmdqct.segment.segment_spine``
(dense 3-D U-Net, TensorFlow, imported only on use) -> ``label_vertebrae`` ->
``vertebral_body_voi`` -> ``Calibration.apply`` -> ``classify_bmd``; ``measure`` runs
it all. ``bmdqct.agreement`` holds the statistics of method-comparison studies and
``bmdqct.synthetic`` a generator of CT scans with known ground truth.

Geometry and units are described once, in :mod:`bmdqct.volume`.
"""

import logging

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

__version__ = "0.1.0"

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
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
