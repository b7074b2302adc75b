"""DICOM outputs a hospital can store beside the scan: a Segmentation and a Measurement Report.

:func:`write_dicom_outputs` turns a :class:`bmdqct.measure.Result` measured on a
DICOM CT series into two new instances of the **source study** (same Study
Instance UID and patient module, copied from the source images; nothing is
added about the patient):

* ``seg.dcm`` — a DICOM Segmentation (highdicom, BINARY) on the source images'
  grid with one segment per vertebral body found (SNOMED CT vertebra codes) and
  one per trabecular VOI; each frame references the source CT image it lies on;
* ``sr.dcm`` — a Comprehensive 3D SR holding a TID 1500 Measurement Report: per
  level the mean, median and SD of HU (``[hnsf'U]``), the BMD (``mg/cm3``,
  UCUM) and the VOI volume, each group referencing its VOI segment (or the body
  segment if no VOI could be placed) with the level's status and reason; a
  diagnosis group with the L1–L2 BMD, the ACR category, the calibration used,
  the levels used and every QC flag; the algorithm (bmdqct, version, model id)
  as device observer and algorithm identification.

Concepts without a DICOM or SNOMED CT code (volumetric trabecular BMD, the ACR
category, statuses, QC flags) use the private coding scheme ``99BMDQCT``,
declared in the SR (see ``bmdqct/export/_codes.py``).

For a non-DICOM input there is no study to place the objects in:
:func:`no_dicom_context_reason` says why, and :func:`write_dicom_outputs`
raises :class:`~bmdqct.errors.InputError` with that reason.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ._codes import SCHEME, vertebra_code
from ._seg import segment_label, segment_plan
from ._source import SourceSeries, no_dicom_context_reason, read_source_series, sample_on_source
from ._sr import DIAGNOSIS_TRACKING_ID, level_tracking_id, segment_of_frame

__all__ = [
    "DicomOutputs",
    "write_dicom_outputs",
    "no_dicom_context_reason",
    "read_source_series",
    "sample_on_source",
    "SourceSeries",
    "segment_plan",
    "segment_label",
    "segment_of_frame",
    "level_tracking_id",
    "vertebra_code",
    "DIAGNOSIS_TRACKING_ID",
    "SCHEME",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomOutputs:
    """What :func:`write_dicom_outputs` wrote.

    Attributes
    ----------
    seg_path, sr_path : pathlib.Path
    study_uid : str
        The source study's Study Instance UID (shared by both objects).
    seg_series_uid, sr_series_uid : str
        The two new series.
    segments : tuple of str
        Segment labels, in segment-number order.
    """

    seg_path: Path
    sr_path: Path
    study_uid: str
    seg_series_uid: str
    sr_series_uid: str
    segments: tuple[str, ...]


def write_dicom_outputs(result, folder, *, source=None) -> DicomOutputs:
    """Write ``seg.dcm`` and ``sr.dcm`` for a result measured on a DICOM series.

    Parameters
    ----------
    result : bmdqct.measure.Result
        From :func:`bmdqct.measure.measure` on a DICOM folder (its provenance
        names the input and the Series Instance UID).
    folder : str or os.PathLike
        Output folder (created if needed); files are written to a temporary
        name and renamed.
    source : str or os.PathLike, optional
        The DICOM input, if it moved since the measurement (default: the
        result's ``provenance["input"]``).

    Returns
    -------
    DicomOutputs

    Raises
    ------
    InputError
        If the input was not DICOM (no DICOM context: no study, patient module
        or SOP instances to reference), or the source series cannot be found.
    MeasurementError
        If the result holds no vertebral body (nothing to segment).

    Examples
    --------
    >>> import tempfile
    >>> from types import SimpleNamespace
    >>> nifti = SimpleNamespace(provenance={"input": "ct.nii.gz", "scan": {"format": "nifti"}})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_dicom_outputs(nifti, tmp)
    Traceback (most recent call last):
    ...
    bmdqct.errors.InputError: cannot write DICOM SEG/SR: ct.nii.gz is nifti, not DICOM: ...
    """
    import highdicom as hd

    series = read_source_series(result, source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from ._seg import build_segmentation
    from ._sr import build_report

    seg = build_segmentation(result, series, series_uid=hd.UID(), sop_uid=hd.UID())
    sr = build_report(result, series, seg, series_uid=hd.UID(), sop_uid=hd.UID())
    seg_path = _save(seg, folder / "seg.dcm")
    sr_path = _save(sr, folder / "sr.dcm")
    logger.info("%s: wrote %s (%d segments, %d frames) and %s in study %s", series.folder, seg_path,
                len(seg.SegmentSequence), int(seg.NumberOfFrames), sr_path, series.study_uid)
    return DicomOutputs(seg_path=seg_path, sr_path=sr_path, study_uid=series.study_uid,
                        seg_series_uid=str(seg.SeriesInstanceUID), sr_series_uid=str(sr.SeriesInstanceUID),
                        segments=tuple(str(s.SegmentLabel) for s in seg.SegmentSequence))


def _save(dataset, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        dataset.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
