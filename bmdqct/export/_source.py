"""The source DICOM series of a result, and label maps resampled onto its grid (private)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

logger = logging.getLogger("bmdqct.export")


@dataclass(frozen=True, eq=False)
class SourceSeries:
    """The single-frame CT images a result was measured on, in slice order.

    Attributes
    ----------
    folder : pathlib.Path
        The DICOM input.
    datasets : tuple of pydicom.Dataset
        Headers (no pixel data), sorted along the slice normal.
    positions_mm : (N, 3) ndarray
        ImagePositionPatient of each dataset (LPS mm).
    orientation : (6,) ndarray
        ImageOrientationPatient (shared by all images).
    pixel_spacing_mm : (2,) ndarray
        PixelSpacing: between rows, between columns.
    rows, cols : int
    notes : tuple of str
        What the export had to assume about the source (e.g. one frame of
        reference for a series whose images each carry their own).
    """

    folder: Path
    datasets: tuple
    positions_mm: np.ndarray
    orientation: np.ndarray
    pixel_spacing_mm: np.ndarray
    rows: int
    cols: int
    notes: tuple[str, ...] = ()

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)


def no_dicom_context_reason(result) -> str | None:
    """Why `result` cannot get DICOM SEG/SR outputs; None if it can (its input was DICOM).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> no_dicom_context_reason(SimpleNamespace(provenance={"input": "ct.nii.gz",
    ...                                                     "scan": {"format": "nifti"}}))[:48]
    'ct.nii.gz is nifti, not DICOM: there is no DICOM'
    """
    provenance = result.provenance
    source = provenance.get("input")
    scan = provenance.get("scan") or {}
    if source is None:
        return ("the result was measured on an in-memory CTVolume with no input path: there is no DICOM "
                "context (Study Instance UID, patient module, SOP instances) to place a SEG or SR in; "
                "measure the DICOM folder itself")
    fmt = scan.get("format")
    if fmt != "dicom":
        return (f"{source} is {fmt or 'not DICOM'}, not DICOM: there is no DICOM context (Study Instance UID, "
                "patient module, SOP instances to reference) to place a SEG or SR in; measure the original "
                "DICOM series instead")
    if not scan.get("series_uid"):
        return f"{source}: the result does not record the Series Instance UID it was measured on"
    return None


def read_source_series(result, source=None) -> SourceSeries:
    """Headers of the DICOM series `result` was measured on.

    Raises
    ------
    InputError
        If the input was not DICOM, the series is gone, or it is a multi-frame
        image (not supported yet).
    """
    import pydicom

    from ..io import list_series

    reason = no_dicom_context_reason(result)
    if reason is not None:
        raise InputError(f"cannot write DICOM SEG/SR: {reason}")
    folder = Path(source if source is not None else result.provenance["input"])
    uid = result.provenance["scan"]["series_uid"]
    if not folder.exists():
        raise InputError(f"cannot write DICOM SEG/SR: the source DICOM {folder} no longer exists; "
                         f"pass source= the folder holding series {uid}")
    info = next((s for s in list_series(folder) if s.uid == uid), None)
    if info is None:
        raise InputError(f"cannot write DICOM SEG/SR: {folder} holds no series {uid} (the series the result "
                         "was measured on); pass the right folder")
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in info.files]
    unique = {str(ds.SOPInstanceUID): ds for ds in datasets}
    datasets = list(unique.values())
    if any(int(ds.get("NumberOfFrames") or 1) > 1 for ds in datasets):
        raise InputError(f"cannot write DICOM SEG/SR for {folder}: series {uid} is a multi-frame image; "
                         "bmdqct writes SEG/SR for single-frame CT series only")
    notes = []
    frames = sorted({str(ds.get("FrameOfReferenceUID", "")) for ds in datasets} - {""})
    for ds in datasets:
        _fill_type2(ds)
    if len(frames) > 1:
        # Some de-identified archives (LIDC-IDRI) give every slice its own Frame of Reference UID.
        # The slices form one stack (the reader checked the geometry); the SEG needs one frame of
        # reference, so the header copies used here share the first slice's.
        chosen = str(datasets[0].FrameOfReferenceUID)
        note = (f"the source series holds {len(frames)} Frame of Reference UIDs for {len(datasets)} images "
                f"(one stack by its geometry); the SEG uses {chosen}")
        logger.warning("%s: %s", folder, note)
        notes.append(note)
        for ds in datasets:
            ds.FrameOfReferenceUID = chosen
    orientation = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    spacing = np.array([float(v) for v in datasets[0].PixelSpacing])
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    normal = np.cross(orientation[:3], orientation[3:])
    order = np.argsort(positions @ normal, kind="stable")
    return SourceSeries(folder=folder, datasets=tuple(datasets[i] for i in order),
                        positions_mm=positions[order], orientation=orientation, pixel_spacing_mm=spacing,
                        rows=int(datasets[0].Rows), cols=int(datasets[0].Columns), notes=tuple(notes))


#: Type 2 attributes of the Patient and General Study modules that the outputs copy from the
#: source; a source without them gets them empty (present, zero length: "unknown"), never a value.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _fill_type2(ds) -> None:
    """Add the absent type 2 patient/study attributes as empty elements (on a header read for export)."""
    for keyword in _TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, None)


def sample_on_source(labels: np.ndarray, affine: np.ndarray, series: SourceSeries) -> np.ndarray:
    """Nearest-neighbour values of a label array at every pixel centre of the source images.

    Parameters
    ----------
    labels : (I, J, K) ndarray of int
        On the grid of `affine` (array index -> LPS mm).
    affine : (4, 4) ndarray
    series : SourceSeries

    Returns
    -------
    (N, rows, cols) ndarray
        Same dtype as `labels`; 0 outside the label grid. For the grid a
        reader built from these very images, every pixel maps to exactly one
        voxel (no interpolation).
    """
    inverse = np.linalg.inv(np.asarray(affine, np.float64))
    row_dir, col_dir = series.orientation[:3], series.orientation[3:]
    dy, dx = series.pixel_spacing_mm
    # pixel (r, c) centre = IPP + c * dx * row_dir + r * dy * col_dir  (PS3.3 C.7.6.2.1.1)
    step_c = inverse[:3, :3] @ (dx * row_dir)
    step_r = inverse[:3, :3] @ (dy * col_dir)
    r = np.arange(series.rows, dtype=np.float64)[:, None, None]
    c = np.arange(series.cols, dtype=np.float64)[None, :, None]
    in_plane = r * step_r + c * step_c  # (rows, cols, 3)
    shape = np.array(labels.shape)
    out = np.zeros((len(series.datasets), series.rows, series.cols), dtype=labels.dtype)
    for n, position in enumerate(series.positions_mm):
        base = inverse[:3, :3] @ position + inverse[:3, 3]
        index = np.rint(in_plane + base).astype(np.int64)
        inside = np.all((index >= 0) & (index < shape), axis=-1)
        if not inside.any():
            continue
        i, j, k = index[inside].T
        out[n][inside] = labels[i, j, k]
    return out
