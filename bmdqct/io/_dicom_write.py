"""DICOM writing behind :mod:`bmdqct.io` (private; use ``bmdqct.io.write_dicom_series``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._dicom import _CT_IMAGE_STORAGE, _ENHANCED_CT_IMAGE_STORAGE
from ..volume import CTVolume

# metadata key -> (DICOM keyword, converter)
_METADATA_TAGS = {
    "kvp": ("KVP", float),
    "exposure_mas": ("Exposure", lambda v: int(round(float(v)))),
    "ctdi_vol_mgy": ("CTDIvol", float),
    "manufacturer": ("Manufacturer", str),
    "model": ("ManufacturerModelName", str),
    "device_serial": ("DeviceSerialNumber", str),
    "station": ("StationName", str),
    "kernel": ("ConvolutionKernel", str),
    "slice_thickness_mm": ("SliceThickness", float),
    "study_date": ("StudyDate", lambda v: str(v).replace("-", "")),
    "acquisition_date": ("AcquisitionDate", lambda v: str(v).replace("-", "")),
    "patient_id": ("PatientID", str),
    "patient_sex": ("PatientSex", str),
    "patient_age_years": ("PatientAge", lambda v: f"{int(float(v)):03d}Y"),
    "contrast_agent": ("ContrastBolusAgent", str),
    "series_description": ("SeriesDescription", str),
    "study_uid": ("StudyInstanceUID", str),
}


def _ds_value(value):
    """Float values of DS elements must fit 16 characters."""
    from pydicom.valuerep import DSfloat

    if isinstance(value, (float, np.floating)):
        return DSfloat(float(value), auto_format=True)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_ds_value(v) for v in value]
    return value


def write_dicom_series(volume: CTVolume, folder, *, series_uid: str | None = None,
                       multiframe: bool = False, **tags) -> Path:
    """Write a CT volume as a DICOM series, one file per slice along array axis 0.

    Meant for tests and examples: every team can turn a synthetic :class:`CTVolume`
    into DICOM and read it back with :func:`bmdqct.io.load_ct`. For a canonical
    volume (every reader's output) the files are axial slices. Pixels are stored as
    int16 with ``RescaleSlope`` 1 and ``RescaleIntercept`` -1024 unless `tags` say
    otherwise, so HU are rounded to the nearest integer (exact for integer HU).

    Parameters
    ----------
    volume : CTVolume
        The image; its affine may be oblique or sheared (gantry tilt), positions
        and orientations are written as they are.
    folder : str or os.PathLike
        Created if needed; files are named ``00000.dcm``, ``00001.dcm``, ...
        (``ct.dcm`` for a multi-frame file).
    series_uid : str, optional
        SeriesInstanceUID; a new UID by default.
    multiframe : bool, optional
        Write one Enhanced CT multi-frame file instead of one file per slice.
    **tags
        DICOM keywords and values set on every file (e.g. ``KVP=100.0``,
        ``Modality="MR"``, ``RescaleIntercept=-1000``). Scanner metadata of `volume`
        (``kvp``, ``manufacturer``, ``study_date``, ...) is written too; `tags` win.

    Returns
    -------
    pathlib.Path
        `folder`.

    Raises
    ------
    ValueError
        If a keyword is not a DICOM keyword, or HU do not fit int16 with the slope
        and intercept used.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from bmdqct.io import load_ct
    >>> vol = CTVolume.from_spacing(np.arange(24.0).reshape(2, 3, 4), spacing=(2.5, 0.7, 0.7))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     back = load_ct(write_dicom_series(vol, tmp, KVP=100.0))
    >>> np.array_equal(back.hu, vol.hu), back.spacing, back.metadata["kvp"]
    (True, (2.5, 0.7, 0.7), 100.0)
    """
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    for keyword in tags:
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword (e.g. 'KVP', 'Manufacturer')")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = str(series_uid) if series_uid is not None else generate_uid()
    # SOP instance UIDs are derived from the series UID and the grid (reproducible files)
    entropy = [series_uid, repr(volume.shape), volume.affine.tobytes().hex()]
    meta = volume.metadata
    values: dict[str, Any] = {}
    for key, (keyword, convert) in _METADATA_TAGS.items():
        if meta.get(key) is not None:
            values[keyword] = convert(meta[key])
    values.update(tags)
    slope = float(values.pop("RescaleSlope", 1.0))
    intercept = float(values.pop("RescaleIntercept", -1024.0))
    stored = np.rint((np.asarray(volume.hu, np.float64) - intercept) / slope)
    if stored.min() < -32768 or stored.max() > 32767:
        raise ValueError(f"HU range {volume.hu.min()}..{volume.hu.max()} does not fit int16 "
                         f"with RescaleSlope {slope} and RescaleIntercept {intercept}; "
                         "pass other values")
    stored = stored.astype(np.int16)
    study_uid = str(values.pop("StudyInstanceUID", None) or generate_uid(
        entropy_srcs=[series_uid, "study"]))
    frame_uid = generate_uid(entropy_srcs=[series_uid, "frame"])
    affine = volume.affine
    col_step, row_step = affine[:3, 2], affine[:3, 1]  # along a row, down a column
    iop = np.r_[col_step / np.linalg.norm(col_step), row_step / np.linalg.norm(row_step)]
    pixel = [float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))]
    n = volume.shape[0]
    positions = [affine[:3, :3] @ (k, 0, 0) + affine[:3, 3] for k in range(n)]
    normal = np.cross(iop[:3], iop[3:])

    def base(sop_uid: str, sop_class: str) -> Dataset:
        file_meta = FileMetaDataset()
        file_meta.MediaStorageSOPClassUID = sop_class
        file_meta.MediaStorageSOPInstanceUID = sop_uid
        file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = file_meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.SeriesNumber, ds.PatientName = 1, "bmdqct^synthetic"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelSpacing = _ds_value(pixel)
        ds.ImageOrientationPatient = _ds_value(list(iop))
        ds.SliceThickness = _ds_value(float(np.linalg.norm(affine[:3, 0])))
        ds.RescaleSlope, ds.RescaleIntercept = _ds_value(slope), _ds_value(intercept)
        ds.RescaleType = "HU"
        for keyword, value in values.items():
            setattr(ds, keyword, _ds_value(value))
        return ds

    if multiframe:
        sop = generate_uid(entropy_srcs=entropy + ["multiframe"])
        ds = base(sop, _ENHANCED_CT_IMAGE_STORAGE)
        ds.NumberOfFrames = n
        shared = Dataset()
        orientation, measures, transform = Dataset(), Dataset(), Dataset()
        orientation.ImageOrientationPatient = ds.ImageOrientationPatient
        measures.PixelSpacing, measures.SliceThickness = ds.PixelSpacing, ds.SliceThickness
        transform.RescaleSlope, transform.RescaleIntercept = ds.RescaleSlope, ds.RescaleIntercept
        transform.RescaleType = "HU"
        shared.PlaneOrientationSequence = [orientation]
        shared.PixelMeasuresSequence = [measures]
        shared.PixelValueTransformationSequence = [transform]
        ds.SharedFunctionalGroupsSequence = [shared]
        frames = []
        for k in range(n):
            item, plane = Dataset(), Dataset()
            plane.ImagePositionPatient = _ds_value(list(positions[k]))
            item.PlanePositionSequence = [plane]
            frames.append(item)
        ds.PerFrameFunctionalGroupsSequence = frames
        for keyword in ("ImageOrientationPatient", "PixelSpacing", "RescaleSlope",
                        "RescaleIntercept", "RescaleType"):
            delattr(ds, keyword)  # enhanced images keep them in functional groups only
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / "ct.dcm", enforce_file_format=True)
        return folder
    for k in range(n):
        sop = generate_uid(entropy_srcs=entropy + [str(k)])
        ds = base(sop, _CT_IMAGE_STORAGE)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds_value(list(positions[k]))
        ds.SliceLocation = _ds_value(float(positions[k] @ normal))
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"{k:05d}.dcm", enforce_file_format=True)
    return folder
