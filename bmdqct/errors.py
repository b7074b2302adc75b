"""Errors and warnings that bmdqct raises on purpose.

Every error names what was expected, what was received and, where it helps,
what to do instead. Errors caused by bad input data subclass :class:`ValueError`
so that ``except ValueError`` keeps working; catch everything bmdqct raises with
``except bmdqct.BMDQCTError``. Filter every bmdqct warning with
``warnings.simplefilter("ignore", bmdqct.BMDQCTWarning)``.
"""

from __future__ import annotations

__all__ = [
    "BMDQCTError",
    "InputError",
    "GeometryError",
    "DicomSeriesError",
    "CalibrationError",
    "SegmentationError",
    "LabelingError",
    "MeasurementError",
    "BMDQCTWarning",
    "QualityWarning",
    "CalibrationWarning",
]


class BMDQCTError(Exception):
    """Base class for every error that bmdqct raises on purpose."""


class InputError(BMDQCTError, ValueError):
    """A file or folder is missing, unreadable, or not a CT."""


class GeometryError(BMDQCTError, ValueError):
    """A grid or affine is invalid, or two grids that must match do not."""


class DicomSeriesError(InputError):
    """A DICOM series is ambiguous, irregular, incomplete or not a CT."""


class CalibrationError(BMDQCTError, ValueError):
    """A calibration cannot be fitted, read, chosen or applied."""


class SegmentationError(BMDQCTError):
    """The model found no usable spine, or a model file is unusable."""


class LabelingError(BMDQCTError):
    """Vertebral levels cannot be assigned."""


class MeasurementError(BMDQCTError):
    """A VOI cannot be placed or measured."""


class BMDQCTWarning(UserWarning):
    """Base class of bmdqct's warnings: suspicious but usable."""


class QualityWarning(BMDQCTWarning):
    """A result is usable but its quality is doubtful (e.g. VOI shrunk)."""


class CalibrationWarning(BMDQCTWarning):
    """A calibration fits less well than expected or is old."""
