"""DICOM reading behind :mod:`bmdqct.io` (private; use ``bmdqct.io``).

Reading happens in two passes over the files:

1. a **header pass** (pydicom, ``stop_before_pixels`` and ``specific_tags``) that
   groups files by SeriesInstanceUID and gathers geometry and scanner tags;
2. a **pixel pass** over the chosen series only, in the order given by the slice
   positions (``ImagePositionPatient`` projected on the slice normal, never the file
   names), straight into one preallocated float32 array with each file's own
   RescaleSlope/RescaleIntercept applied.

pydicom is used for pixels too: on the 275-file LIDC series it decodes faster than
SimpleITK's GDCM series reader and needs no second header parse (see
``benchmarks/bench_io.py``). Compressed transfer syntaxes that pydicom cannot
decode without plug-ins fall back to SimpleITK's GDCM reader file by file.

Geometry rules (module constants below; every decision is logged at INFO and
recorded in the volume's ``metadata["resampled"]``):

* Slice spacing is uniform if every step between neighbouring slices is within
  ``max(0.01 mm, 1 %)`` of the median step.
* Otherwise (missing slices, mixed spacing) the stack is resampled along the slice
  normal onto a uniform grid at the median step, by linear interpolation between
  the two neighbouring slices, **only if** every step is at most
  :data:`MAX_GAP_FACTOR` times the median step and at most :data:`MAX_GAP_MM`
  (i.e. at most one missing slice in a row). Larger gaps are refused: a VOI could
  fall into invented anatomy.
* Gantry tilt (slices shifted in-plane from one to the next, i.e. a sheared stack)
  is corrected up to :data:`MAX_TILT_DEG` by shifting each slice in-plane
  (linear interpolation inside the slice, none across slices) onto an orthogonal
  stack centred on the middle slice. A drift below :data:`SNAP_MM` over the whole
  stack is treated as rounding of the positions.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomSeriesError, InputError
from ..volume import CTVolume

logger = logging.getLogger("bmdqct.io")

#: Values at or below this cannot be tissue or air (air is -1000 HU); scanners write their
#: outside-field-of-view padding there (-2000, -2048, -3024, -3072, -32768 HU).
PADDING_THRESHOLD_HU = -1500.0
#: Value written in place of padding: air.
HU_AIR = -1000.0

#: Largest step between neighbouring slices, as a multiple of the median step, that is
#: still interpolated (2.0 = one missing slice in a row).
MAX_GAP_FACTOR = 2.0
#: Largest step between neighbouring slices, in mm, that is still interpolated.
MAX_GAP_MM = 5.0
#: Largest gantry tilt corrected, in degrees.
MAX_TILT_DEG = 30.0
#: In-plane drift over the whole stack (mm) below which positions count as rounding.
SNAP_MM = 0.1

_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
_DICOMDIR = "1.2.840.10008.1.3.10"

# Tags of the header pass: grouping, geometry, and the metadata of METADATA_KEYS.
_HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Modality",
    "SeriesDescription", "Rows", "Columns", "NumberOfFrames", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "KVP", "Exposure",
    "ExposureInuAs", "CTDIvol", "Manufacturer", "ManufacturerModelName", "DeviceSerialNumber",
    "StationName", "ConvolutionKernel", "StudyDate", "AcquisitionDate", "PatientID",
    "PatientSex", "PatientAge", "ContrastBolusAgent", "ImageType", "GantryDetectorTilt",
    "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "FrameOfReferenceUID",
    "SeriesNumber", "SeriesTime", "ContrastBolusRoute", "SamplesPerPixel",
    "PhotometricInterpretation",
]
#: ImageType values (0008,0008) of scout/localizer images, never read as the CT.
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM"}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Prefix of the series key of files whose SeriesInstanceUID is empty (anonymised exports).
NO_UID_PREFIX = "no-uid-"


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found under a folder.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID; pass it as ``load_ct(path, series_uid=uid)``.
    n_files : int
        Number of files of the series.
    n_slices : int
        Number of 2-D images (frames of multi-frame files counted one by one).
    modality : str or None
        ``"CT"``, ``"MR"``, ...
    description : str or None
        SeriesDescription.
    rows, cols : int or None
        Image size in pixels.
    kvp : float or None
        Tube voltage (kV).
    slice_thickness_mm : float or None
        Nominal SliceThickness.
    plane : str or None
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"oblique"`` (from
        ImageOrientationPatient; None when absent).
    study_uid : str or None
        StudyInstanceUID.
    folder : pathlib.Path
        Deepest folder that holds every file of the series.
    files : tuple of pathlib.Path
        The files, in the order found (not the slice order).
    patient_id : str or None
        PatientID (None when empty).
    image_type : str or None
        ImageType values joined by a backslash (``"ORIGINAL\\PRIMARY\\AXIAL"``).
    kernel : str or None
        ConvolutionKernel.
    kind : {"image", "localizer", "derived"}
        ``"localizer"`` for scout images (ImageType LOCALIZER, SCOUT, TOPOGRAM, ...),
        ``"derived"`` for ImageType DERIVED or secondary captures (reformats,
        MIPs, screen shots), else ``"image"``.
    """

    uid: str
    n_files: int
    n_slices: int
    modality: str | None
    description: str | None
    rows: int | None
    cols: int | None
    kvp: float | None
    slice_thickness_mm: float | None
    plane: str | None
    study_uid: str | None
    folder: Path
    files: tuple[Path, ...] = field(repr=False)
    patient_id: str | None = None
    image_type: str | None = None
    kernel: str | None = None
    kind: str = "image"

    @property
    def uid_missing(self) -> bool:
        """True when the files carry no SeriesInstanceUID (the key is derived from other tags)."""
        return self.uid.startswith(NO_UID_PREFIX)

    def describe(self) -> str:
        """One line for logs and error messages."""
        what = ", ".join(v for v in (self.modality, self.plane, None if self.kind == "image"
                                     else self.kind, self.description, self.kernel) if v)
        return f"{self.uid} ({what}; {self.n_slices} slices; {self.folder})"


@dataclass
class _Header:
    path: Path
    ds: Any  # pydicom Dataset (header only)


def _is_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: Path):
    """Header of a DICOM file, or None if `path` is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        pass
    except Exception as err:  # a DICOM file that pydicom cannot parse at all
        if _is_dicom_magic(path):
            raise DicomSeriesError(
                f"{path}: cannot read this DICOM file (truncated or corrupt: {err}); "
                "remove it or export the series again") from err
        return None
    else:
        return _verified(ds, path)
    # Files without the 128-byte preamble (raw datasets written by old software):
    # accept them only if a forced read yields an image series.
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True)
    except Exception:  # not DICOM, pydicom's forced parser may raise anything
        return None
    if "SeriesInstanceUID" not in ds or "SOPClassUID" not in ds:
        return None
    return _verified(ds, path, force=True)


def _uid(value) -> str | None:
    """A UID as text, stripped of padding; None when empty."""
    text = str(value or "").strip().rstrip("\x00").strip()
    return text or None


def _verified(ds, path: Path, *, force: bool = False):
    """Check the UIDs of a partial header; read the full header if they are empty or malformed.

    A header read with ``specific_tags`` holds only the tags asked for. If the
    SeriesInstanceUID is empty or not a valid UID, the header is read again in full
    (without ``specific_tags``) and that one is used, so that grouping never rests on
    the partial parse alone. Anonymised exports (e.g. the Siemens JPEG 2000 series of
    ``../shared/data/real/ts_siemens_j2k_dicom``) store these UIDs with length 0; the
    full read confirms it and the series is then grouped by :func:`_series_key`.
    """
    import pydicom
    from pydicom.uid import UID

    uid = _uid(ds.get("SeriesInstanceUID"))
    if uid is not None and UID(uid).is_valid:
        return ds
    try:
        full = pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except Exception as err:  # the partial read worked, so keep it
        logger.debug("%s: full header read failed (%s); keeping the partial header", path, err)
        return ds
    logger.debug("%s: SeriesInstanceUID %r in the partial header; full header says %r", path,
                 uid, _uid(full.get("SeriesInstanceUID")))
    return full


def _sop_class(ds) -> str:
    """SOPClassUID, or the file meta MediaStorageSOPClassUID when the former is empty."""
    uid = _uid(ds.get("SOPClassUID"))
    if uid is None and getattr(ds, "file_meta", None) is not None:
        uid = _uid(ds.file_meta.get("MediaStorageSOPClassUID"))
    return uid or ""


def _sop_instance(ds) -> str | None:
    """SOPInstanceUID, or the file meta MediaStorageSOPInstanceUID when the former is empty."""
    uid = _uid(ds.get("SOPInstanceUID"))
    if uid is None and getattr(ds, "file_meta", None) is not None:
        uid = _uid(ds.file_meta.get("MediaStorageSOPInstanceUID"))
    return uid


def _series_key(ds) -> str | None:
    """SeriesInstanceUID; for files without one, a key derived from the series' other tags.

    The derived key (``"no-uid-"`` + 12 hex digits) hashes the tags that are equal
    across one series and differ between series of a study: StudyInstanceUID,
    FrameOfReferenceUID, Modality, SeriesNumber, SeriesDescription, SeriesTime,
    ImageType, ConvolutionKernel, image size, pixel spacing and orientation.
    Returns None for a file that has neither a UID nor any image geometry.
    """
    uid = _uid(ds.get("SeriesInstanceUID"))
    if uid is not None:
        return uid
    if "Rows" not in ds or "ImageOrientationPatient" not in ds:
        return None
    parts = [_text(ds, k) for k in ("StudyInstanceUID", "FrameOfReferenceUID", "Modality",
                                    "SeriesNumber", "SeriesDescription", "SeriesTime",
                                    "ImageType", "ConvolutionKernel", "Rows", "Columns")]
    for keyword in ("PixelSpacing", "ImageOrientationPatient"):
        value = ds.get(keyword)
        parts.append(None if value is None else repr(np.round([float(v) for v in value], 4)))
    digest = hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:12]
    return NO_UID_PREFIX + digest


def _iter_files(path: Path) -> Iterable[Path]:
    """Files under `path`; linked folders are followed, each real folder once (no loops)."""
    if path.is_file():
        yield path
        return
    seen: set[str] = set()
    for root, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link to a folder already searched (or to a parent)
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def _scan(path) -> tuple[Path, dict[str, list[_Header]], list[Path]]:
    """Header pass: (folder, series UID -> headers, the files skipped as not DICOM)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; expected a DICOM folder or file, "
                         "a .nii/.nii.gz, .mha/.mhd or .nrrd file")
    if path.is_file():
        header = _read_header(path)
        if header is not None and _sop_class(header) == _DICOMDIR:
            logger.info("%s: a DICOMDIR; reading the folder that holds it", path)
            path = path.parent
    files = list(_iter_files(path))
    if not files:
        raise DicomSeriesError(f"{path}: the folder is empty (searched recursively); "
                               "expected the files of a DICOM series")
    series: dict[str, list[_Header]] = {}
    skipped: list[Path] = []
    not_dicom: list[Path] = []
    for file in files:
        ds = _read_header(file)
        if ds is None:
            skipped.append(file)
            not_dicom.append(file)
            continue
        sop_class = _sop_class(ds)
        uid = _series_key(ds)
        if not uid and sop_class in (_CT_IMAGE_STORAGE, _ENHANCED_CT_IMAGE_STORAGE):
            # pydicom reads a file cut inside its header without complaint: what is left is
            # a CT image (by its file meta) without SeriesInstanceUID and geometry
            raise DicomSeriesError(
                f"{file}: truncated or corrupt DICOM file (a CT image without SeriesInstanceUID "
                "and geometry: the header ends early?); expected a complete CT image; remove "
                "the file or export the series again")
        if not uid and sop_class != _DICOMDIR and len(ds) == 0:
            skipped.append(file)  # nothing after the preamble and file meta: cut short
            not_dicom.append(file)
            continue
        if sop_class == _DICOMDIR or not uid:
            logger.debug("%s: DICOM file without an image series (DICOMDIR, truncated header?)",
                         file)
            skipped.append(file)
            continue
        series.setdefault(uid, []).append(_Header(file, ds))
    if not series:
        example = ", ".join(p.name for p in skipped[:3])
        raise DicomSeriesError(
            f"{path}: no DICOM image series found among {len(files)} file(s) searched "
            f"recursively (e.g. {example}); expected DICOM files of a CT series, "
            "or a .nii/.nii.gz, .mha/.mhd or .nrrd file")
    if not_dicom:
        logger.warning("%s: %d file(s) skipped, not readable as DICOM (e.g. %s)", path,
                       len(not_dicom), _some_names(not_dicom, path, 5))
    if len(skipped) > len(not_dicom):
        logger.debug("%s: %d DICOM file(s) without an image series were skipped", path,
                     len(skipped) - len(not_dicom))
    return path, series, not_dicom


def _some_names(files: list[Path], root: Path, n: int) -> str:
    """The first `n` of `files`, relative to the folder `root` searched (the file's name if it is `root`)."""
    return ", ".join(os.path.relpath(p, root) if p != root else p.name for p in files[:n])


def _text(ds, keyword) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    value = str(value).strip()
    return value or None


def _number(ds, keyword) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _numbers(value, size: int) -> np.ndarray | None:
    """`size` finite numbers from a DICOM multi-value (or a single value); None if not that."""
    if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        value = [] if value is None or value == "" else [value]
    try:
        numbers = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == size and np.all(np.isfinite(numbers)) else None


def _n_frames(ds) -> int:
    """NumberOfFrames; 1 when absent, empty or not a positive integer (as pydicom assumes)."""
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _thickness(ds) -> float | None:
    """SliceThickness in mm; None when absent or not positive (never a guessed value)."""
    value = _number(ds, "SliceThickness")
    return value if value is not None and value > 0 else None


def _plane(iop) -> str | None:
    if iop is None or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < np.cos(np.deg2rad(1.0)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _kind_of(ds) -> str:
    """"localizer", "derived" or "image" from ImageType and the SOP class."""
    image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
    if _LOCALIZER_TYPES & set(image_type):
        return "localizer"
    if (image_type and image_type[0] == "DERIVED") or _sop_class(ds) == _SECONDARY_CAPTURE:
        return "derived"
    return "image"


def _series_info(uid: str, headers: list[_Header]) -> SeriesInfo:
    ds = headers[0].ds
    frames = sum(_n_frames(h.ds) for h in headers)
    folder = Path(os.path.commonpath([str(h.path.parent) for h in headers]))
    rows, cols = ds.get("Rows"), ds.get("Columns")
    return SeriesInfo(
        uid=uid, n_files=len(headers), n_slices=frames, modality=_text(ds, "Modality"),
        description=_text(ds, "SeriesDescription"),
        rows=int(rows) if rows is not None else None, cols=int(cols) if cols is not None else None,
        kvp=_number(ds, "KVP"), slice_thickness_mm=_thickness(ds),
        plane=_plane(ds.get("ImageOrientationPatient")), study_uid=_text(ds, "StudyInstanceUID"),
        folder=folder, files=tuple(h.path for h in headers), patient_id=_text(ds, "PatientID"),
        image_type=_text(ds, "ImageType"), kernel=_text(ds, "ConvolutionKernel"),
        kind=_kind_of(ds))


def _rank(info: SeriesInfo) -> tuple:
    """Sort key of the series-choice rule (smaller is preferred; see :func:`choose_series`)."""
    return (info.modality != "CT", info.kind == "localizer", info.kind == "derived",
            info.plane not in ("axial", None), -info.n_slices)


def _sorted_infos(series: Mapping[str, list[_Header]]) -> list[SeriesInfo]:
    infos = [_series_info(uid, hs) for uid, hs in series.items()]
    # The rule of choose_series, then the UID: the first entry is what load_ct chooses.
    return sorted(infos, key=lambda s: (_rank(s), s.uid))


def list_series(path) -> list[SeriesInfo]:
    """List the DICOM series under a folder (searched recursively) or in one file.

    Parameters
    ----------
    path : str or os.PathLike
        A folder (file names need no ``.dcm`` suffix) or a single DICOM file.

    Returns
    -------
    list of SeriesInfo
        In the order of the series-choice rule (CT image series first, localizers
        and derived series after, axial before other planes, then by decreasing
        number of slices); the first one is the series that
        :func:`bmdqct.io.load_ct` reads when no ``series_uid`` is given and the
        choice is not ambiguous (see :func:`choose_series`).

    Raises
    ------
    InputError
        If `path` does not exist.
    DicomSeriesError
        If the folder is empty or holds no DICOM image.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from bmdqct.volume import CTVolume
    >>> from bmdqct.io import write_dicom_series
    >>> vol = CTVolume.from_spacing(np.zeros((3, 4, 5)), spacing=(2.0, 0.5, 0.5))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_dicom_series(vol, tmp, series_uid="1.2.3.4")
    ...     [(s.uid, s.n_slices, s.modality, s.plane) for s in list_series(tmp)]
    [('1.2.3.4', 3, 'CT', 'axial')]
    """
    _, series, _ = _scan(path)
    return _sorted_infos(series)


# --------------------------------------------------------------------------- reading


def choose_series(infos: list[SeriesInfo], root, *, series_uid: str | None = None
                  ) -> tuple[SeriesInfo, str | None]:
    """Pick the series to read from a folder's series, by one documented rule.

    **Rule**: the CT image series (ImageType not LOCALIZER/SCOUT/TOPOGRAM, not
    DERIVED, not a secondary capture) with axial slices and the most slices. A
    derived or non-axial CT series is read only when no such series exists; a
    localizer never. The choice is refused, with the series listed, when

    * two series tie under the rule (same number of axial slices, e.g. a soft-tissue
      and a bone-kernel reconstruction): which kernel to measure is the user's
      choice, because HU, hence BMD, depend on it;
    * the folder holds series of different patients (different non-empty
      PatientID): a mixed-up export.

    `series_uid` overrides the rule (and both refusals); it must name a CT series.

    Returns
    -------
    (SeriesInfo, str or None)
        The series, and a sentence describing the choice when the folder held
        other series (None otherwise).
    """
    hint = (f"pass series_uid=... to load_ct (bmdqct info: --series-uid UID); "
            f"`bmdqct series {root}` lists the series")
    listing = "; ".join(s.describe() for s in infos)
    if series_uid is not None:
        chosen = next((s for s in infos if s.uid == str(series_uid)), None)
        if chosen is None:
            found = ", ".join(f"{s.uid} ({s.modality}, {s.n_slices} slices)" for s in infos)
            raise DicomSeriesError(f"{root}: no series with SeriesInstanceUID {series_uid}; "
                                   f"found {found}; see `bmdqct series {root}`")
        if chosen.modality != "CT":
            raise DicomSeriesError(
                f"{root}: series {chosen.uid} has modality {chosen.modality}, expected CT; "
                "bmdqct measures bone density in Hounsfield units from CT only")
        note = None if len(infos) == 1 else (
            f"series {chosen.uid} chosen by series_uid among {len(infos)} series")
        return chosen, note
    patients = sorted({s.patient_id for s in infos if s.patient_id})
    if len(patients) > 1:
        raise DicomSeriesError(
            f"{root}: the folder holds series of {len(patients)} different patients "
            f"(PatientID {', '.join(patients)}): {listing}; expected the series of one "
            f"patient; separate the patients' files, or {hint}")
    cts = [s for s in infos if s.modality == "CT" and s.kind != "localizer"]
    if not cts:
        found = ", ".join(f"{s.modality} series {s.uid}" + (f" ({s.kind})" if s.kind != "image"
                                                              else "") for s in infos)
        raise DicomSeriesError(
            f"{root}: no CT series found (found {found}); expected Modality CT images, not a "
            "localizer; bmdqct measures bone density in Hounsfield units from CT only")
    chosen = cts[0]
    ties = [s for s in cts[1:] if _rank(s) == _rank(chosen)]
    if ties:
        raise DicomSeriesError(
            f"{root}: {len(ties) + 1} series are equally eligible under the rule 'the axial CT "
            f"image series with the most slices': {'; '.join(s.describe() for s in [chosen, *ties])}"
            f"; expected one; {hint}")
    if len(infos) == 1:
        return chosen, None
    others = [s for s in infos if s.uid != chosen.uid]
    note = (f"{len(infos)} series found; read {chosen.describe()} by the rule 'the axial CT "
            f"image series with the most slices, never a localizer or derived series'; "
            f"others: {'; '.join(s.describe() for s in others)}")
    return chosen, note


def read_dicom(path, *, series_uid: str | None = None):
    """Read a DICOM series or multi-frame file.

    Returns ``(volume, padding, notes, metadata)``: a CTVolume in acquisition order
    (axes: slice, row, column), ``(padding_hu, padding_voxels)``, a list of
    resampling notes and the scanner metadata (see :func:`dicom_metadata`), which
    also holds ``series_choice`` (see :func:`choose_series`) and ``input_flags``
    (``(code, message)`` pairs: ``files_skipped``, ``series_chosen``, ``series_uid_missing``,
    ``derived_series``, ``irregular_spacing``, ``rescale_assumed``).
    """
    root, series, not_dicom = _scan(path)
    infos = _sorted_infos(series)
    chosen, choice = choose_series(infos, root, series_uid=series_uid)
    input_flags: list[tuple[str, str]] = []
    if not_dicom:
        input_flags.append(("files_skipped", (
            f"{len(not_dicom)} file(s) in {root} are not readable as DICOM and were skipped "
            f"(e.g. {_some_names(not_dicom, root, 3)}); a damaged slice of the series would leave a gap")))
    if choice is not None:
        logger.warning("%s: %s", root, choice)
        if series_uid is None:
            input_flags.append(("series_chosen", choice))
    if chosen.uid_missing:
        input_flags.append(("series_uid_missing", (
            f"the files have an empty SeriesInstanceUID (anonymised export?); grouped as one "
            f"series by their other tags (key {chosen.uid})")))
    if chosen.kind == "derived":
        input_flags.append(("derived_series", (
            f"series {chosen.uid} is a derived image (ImageType {chosen.image_type}); "
            "HU of reformats may be smoothed")))
    headers = series[chosen.uid]
    multi = [h for h in headers if _n_frames(h.ds) > 1]
    if multi:
        headers = _unique_files(headers, chosen)
        multi = [h for h in headers if _n_frames(h.ds) > 1]
        if len(headers) > 1:
            raise DicomSeriesError(
                f"{chosen.folder}: series {chosen.uid} mixes {len(multi)} multi-frame file(s) "
                f"with {len(headers) - len(multi)} other file(s); expected either one "
                "multi-frame file or one file per slice")
        result = _read_multiframe(headers[0].path)
    else:
        result = _read_series(chosen, headers)
    *parts, metadata = result
    input_flags += metadata.pop("input_flags", [])
    return (*parts, {**metadata, "series_choice": choice, "input_flags": tuple(input_flags)})


def _where(info: SeriesInfo) -> str:
    return f"{info.folder} (series {info.uid})"


def _unique_files(headers: list[_Header], info: SeriesInfo) -> list[_Header]:
    """Drop byte-identical copies of a file (same SOPInstanceUID); refuse differing ones."""
    import filecmp

    unique: dict[str, _Header] = {}
    for h in headers:
        key = _sop_instance(h.ds) or str(h.path)
        if key not in unique:
            unique[key] = h
            continue
        if not filecmp.cmp(h.path, unique[key].path, shallow=False):
            raise DicomSeriesError(
                f"{_where(info)}: {unique[key].path} and {h.path} have the same SOPInstanceUID "
                "but different contents; expected copies of one image at most; keep one of them")
        logger.info("%s: %s duplicates %s (same SOPInstanceUID); ignored", _where(info),
                    h.path.name, unique[key].path.name)
    return list(unique.values())


def _vector(ds, keyword, size, where, *, positive: bool = False) -> np.ndarray:
    value = ds.get(keyword)
    vector = _numbers(value, size)
    if vector is None or (positive and np.any(vector <= 0)):
        which = "positive numbers" if positive else "numbers"
        raise DicomSeriesError(f"{where}: {keyword} is missing or malformed (got {value!r}); "
                               f"expected {size} {which}, which bmdqct needs for the geometry")
    return vector


def _position_key(ds):
    """ImagePositionPatient rounded to 1 um (the same position written as other text)."""
    position = _numbers(ds.get("ImagePositionPatient"), 3)
    return str(ds.get("ImagePositionPatient")) if position is None else tuple(np.round(position, 3))


def _check_grayscale(ds, path: Path) -> None:
    """Refuse a colour image (SamplesPerPixel > 1): a screen capture, not HU."""
    samples = ds.get("SamplesPerPixel")
    if samples not in (None, "") and _numbers(samples, 1) is not None and float(samples) != 1:
        raise DicomSeriesError(
            f"{path}: a colour image (SamplesPerPixel {samples}, PhotometricInterpretation "
            f"{_text(ds, 'PhotometricInterpretation')}); expected grayscale CT slices in HU "
            "(a screen capture or dose report?); read the series of the original CT images")


def _read_series(info: SeriesInfo, headers: list[_Header]):
    where = _where(info)
    # De-duplicate copies of the same image (a folder copied into itself, ...); the pixels
    # of each copy are compared with its original's after the pixel pass.
    unique: dict[tuple, _Header] = {}
    copies: list[tuple[_Header, _Header]] = []
    for h in headers:
        key = (_sop_instance(h.ds) or str(h.path), _position_key(h.ds),
               h.ds.get("Rows"), h.ds.get("Columns"))
        if key in unique:
            logger.info("%s: %s duplicates %s (same SOPInstanceUID); ignored", where, h.path.name,
                        unique[key].path.name)
            copies.append((h, unique[key]))
            continue
        unique[key] = h
    headers = list(unique.values())
    for h in headers:
        _check_grayscale(h.ds, h.path)
    if len(headers) < 2:
        rows, cols = info.rows, info.cols
        raise DicomSeriesError(
            f"{where}: a single 2-D slice ({rows}x{cols} pixels, {headers[0].path.name}); "
            "expected a 3-D series of at least 2 slices; pass the folder holding the whole series")
    iops = np.array([_vector(h.ds, "ImageOrientationPatient", 6, f"{where} {h.path.name}")
                     for h in headers])
    sizes = {(int(h.ds.get("Rows") or 0), int(h.ds.get("Columns") or 0)) for h in headers}
    spacings = np.array([_vector(h.ds, "PixelSpacing", 2, f"{where} {h.path.name}", positive=True)
                         for h in headers])
    if len(sizes) > 1 or not np.allclose(iops, iops[0], atol=1e-4) \
            or not np.allclose(spacings, spacings[0], rtol=1e-4):
        n_orient = len({tuple(np.round(v, 3)) for v in iops})
        raise DicomSeriesError(
            f"{where}: mixed series: the same SeriesInstanceUID holds images of {n_orient} "
            f"orientation(s), {len(sizes)} size(s) {sorted(sizes)} and "
            f"{len({tuple(np.round(s, 4)) for s in spacings})} pixel spacing(s); expected one "
            "stack of equal slices; put each kind of image in its own folder")
    positions = np.array([_vector(h.ds, "ImagePositionPatient", 3, f"{where} {h.path.name}")
                          for h in headers])
    rows, cols = sizes.pop()
    stack = _stack_geometry(positions, iops[0], spacings[0], where)
    input_flags = _check_rescale(headers, where)
    out = np.empty((len(headers), rows, cols), dtype=np.float32)
    for slot, index in enumerate(stack.order):
        _slice_hu(headers[index], out[slot])
    slots = {id(headers[index]): slot for slot, index in enumerate(stack.order)}
    for copy, original in copies:
        pixels = np.empty((rows, cols), dtype=np.float32)
        _slice_hu(copy, pixels)
        if not np.array_equal(pixels, out[slots[id(original)]]):
            raise DicomSeriesError(
                f"{where}: {original.path} and {copy.path} have the same SOPInstanceUID and "
                "position but different pixels; expected copies of one image at most; keep the "
                "right one")
    # Exposure and CTDIvol vary per slice with tube current modulation: report the mean.
    means = {}
    for keyword in ("Exposure", "CTDIvol", "ExposureInuAs"):
        values = [_number(h.ds, keyword) for h in headers]
        if all(v is not None for v in values):
            means[keyword] = float(np.mean(values))
    metadata = dicom_metadata(headers[stack.order[0]].ds, means)
    if not stack.uniform:
        steps = np.diff(stack.distance_mm)
        found = ", ".join(f"{v:g}" for v in np.unique(np.round(steps, 3)))
        input_flags.append(("irregular_spacing", (
            f"slice spacing not uniform: steps of {found} mm between {len(steps) + 1} slices; "
            f"resampled to a uniform {float(np.median(steps)):.4g} mm grid (linear)")))
    metadata["input_flags"] = input_flags
    return _assemble(out, stack, where) + (metadata,)


def _check_rescale(headers: list[_Header], where: str) -> list[tuple[str, str]]:
    """Refuse unusable RescaleSlope values; flag files without rescale tags."""
    missing = []
    for h in headers:
        if "ModalityLUTSequence" in h.ds:
            continue
        slope = h.ds.get("RescaleSlope")
        if slope is None or slope == "":
            missing.append(h.path)
            continue
        value = _numbers(slope, 1)
        if value is None or value[0] <= 0:
            raise DicomSeriesError(
                f"{h.path}: RescaleSlope is {slope!r}; expected a positive number (HU = "
                "slope * stored value + intercept; a slope of 0 would make every voxel "
                "the intercept); the file is corrupt or was edited: export the series again")
        intercept = h.ds.get("RescaleIntercept")
        if intercept in (None, ""):
            missing.append(h.path)
        elif _numbers(intercept, 1) is None:
            raise DicomSeriesError(
                f"{h.path}: RescaleIntercept is {intercept!r}; expected a number (HU = slope * "
                "stored value + intercept); the file is corrupt or was edited: export the "
                "series again")
    if not missing:
        return []
    return [("rescale_assumed", (
        f"{len(missing)} of {len(headers)} file(s) lack RescaleSlope/RescaleIntercept "
        f"(e.g. {missing[0].name}): stored values taken as HU (slope 1, intercept 0); the "
        "air level was checked (about -1000 HU)"))]


def _slice_hu(header: _Header, out: np.ndarray) -> None:
    """Write the pixels of one file into `out` (float32) in HU, with its own rescale.

    ``pydicom.pixels.pixel_array(path)`` parses only what decoding needs; the rescale
    tags come from the header pass, so no file is parsed twice in full.
    """
    from pydicom.pixels import pixel_array

    path, ds = header.path, header.ds
    rows, cols = out.shape
    try:
        pixels = pixel_array(_pixel_source(path, ds))
    except (NotImplementedError, RuntimeError) as err:
        # pydicom has no decoder for this compressed transfer syntax: let GDCM decode it.
        logger.debug("%s: pydicom cannot decode (%s); using SimpleITK/GDCM", path, err)
        out[...] = _slice_hu_sitk(path, rows, cols, ds, err)
        return
    except Exception as err:
        raise DicomSeriesError(
            f"{path}: truncated or corrupt DICOM file ({err}); expected {rows}x{cols} pixels; "
            "remove the file or export the series again") from err
    if pixels.shape != (rows, cols):
        raise DicomSeriesError(f"{path}: image of {pixels.shape} pixels, expected {rows}x{cols}")
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        out[...] = apply_modality_lut(pixels, ds)
        return
    slope = _first_value(ds.get("RescaleSlope"), 1.0)
    intercept = _first_value(ds.get("RescaleIntercept"), 0.0)
    out[...] = pixels
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)


def _pixel_source(path: Path, ds):
    """What ``pydicom.pixels.pixel_array`` decodes: the file, or its full dataset.

    ``pixel_array(path)`` neither inflates a deflated file nor reads a raw dataset (no
    preamble, no file meta, hence no TransferSyntaxUID); for those the file is read in
    full and the transfer syntax it was read with is set.
    """
    import pydicom
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    meta = getattr(ds, "file_meta", None)
    syntax = None if meta is None else meta.get("TransferSyntaxUID")
    if syntax and syntax != DeflatedExplicitVRLittleEndian:
        return os.fspath(path)
    full = pydicom.dcmread(path, force=True)
    if not syntax:
        implicit, little = full.original_encoding
        full.file_meta = pydicom.dataset.FileMetaDataset()
        full.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return full


#: pip packages that give pydicom a decoder, by transfer syntax UID (pydicom's own
#: table "Supported Transfer Syntaxes"); bmdqct's install_requires has the first three.
_CODEC_PACKAGES = {
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless, process 14
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless, SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle (pydicom also decodes RLE itself)",
}


def codec_hint(transfer_syntax) -> str:
    """What to install so that pydicom decodes `transfer_syntax` (a sentence).

    Examples
    --------
    >>> codec_hint("1.2.840.10008.1.2.4.90")
    'JPEG 2000 Image Compression (Lossless Only): pip install pylibjpeg pylibjpeg-openjpeg'
    """
    from pydicom.uid import UID

    uid = UID(str(transfer_syntax or ""))
    name = uid.name if uid else "unknown transfer syntax"
    packages = _CODEC_PACKAGES.get(str(uid))
    if packages is None:
        return f"{name}: no pip package known to bmdqct decodes it; convert the series with " \
               "`gdcmconv --raw` (Debian package libgdcm-tools) or dcm2niix"
    return f"{name}: pip install {packages}"


def _slice_hu_sitk(path: Path, rows: int, cols: int, ds=None, first_error=None) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")  # GDCM applies RescaleSlope/Intercept itself
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as err:
        meta = getattr(ds, "file_meta", None)
        syntax = None if meta is None else meta.get("TransferSyntaxUID")
        raise DicomSeriesError(
            f"{path}: cannot decode the pixel data (pydicom: {first_error}; GDCM: "
            f"{str(err).strip().splitlines()[-1] if str(err).strip() else err}); a codec is "
            f"missing for {codec_hint(syntax)}") from err
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    return array.reshape(rows, cols)


def _functional(ds, sequence: str, keyword: str, frame: int | None = None):
    """Look a tag up in a per-frame, then the shared functional group of an enhanced image."""
    groups = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if sequence in group and len(group[sequence].value) and keyword in group[sequence][0]:
            return group[sequence][0].get(keyword)
    return None


def _first_value(*values) -> float:
    """The first value that is present (not None or empty), as a float."""
    return float(next(v for v in values if v is not None and v != ""))


def _read_multiframe(path: Path):
    """A single multi-frame (enhanced) CT file."""
    import pydicom

    where = str(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:
        raise DicomSeriesError(f"{path}: truncated or corrupt DICOM file ({err})") from err
    if str(ds.get("Modality")) != "CT":
        raise DicomSeriesError(f"{path}: modality {ds.get('Modality')}, expected CT")
    n = _n_frames(ds)
    _check_grayscale(ds, path)
    if "PerFrameFunctionalGroupsSequence" not in ds:
        raise DicomSeriesError(
            f"{path}: multi-frame file without per-frame positions "
            "(PerFrameFunctionalGroupsSequence); expected an enhanced CT image; "
            "convert it to one file per slice or to NIfTI")
    if len(ds.PerFrameFunctionalGroupsSequence) != n:
        raise DicomSeriesError(
            f"{path}: NumberOfFrames is {n} but PerFrameFunctionalGroupsSequence has "
            f"{len(ds.PerFrameFunctionalGroupsSequence)} item(s); expected one item per frame; "
            "the file is corrupt or was edited: export it again")
    positions = [_numbers(_functional(ds, "PlanePositionSequence", "ImagePositionPatient", i), 3)
                 for i in range(n)]
    iop = _functional(ds, "PlaneOrientationSequence", "ImageOrientationPatient", 0)
    if iop is None:
        iop = ds.get("ImageOrientationPatient")
    spacing = _functional(ds, "PixelMeasuresSequence", "PixelSpacing", 0)
    if spacing is None:
        spacing = ds.get("PixelSpacing")
    iop, spacing = _numbers(iop, 6), _numbers(spacing, 2)
    if iop is None or spacing is None or np.any(spacing <= 0) or any(p is None for p in positions):
        raise DicomSeriesError(f"{path}: multi-frame file lacks ImagePositionPatient, "
                               "ImageOrientationPatient or PixelSpacing (or holds malformed "
                               "values); cannot place the frames")
    positions = np.array(positions)
    try:
        frames = ds.pixel_array
    except Exception as err:
        raise DicomSeriesError(f"{path}: truncated or corrupt pixel data ({err})") from err
    stack = _stack_geometry(positions, iop, spacing, where)
    out = np.empty(frames.shape, dtype=np.float32)
    for slot, index in enumerate(stack.order):
        # the functional group wins whenever present, also with a value of 0 (no `or` chain)
        try:
            slope = _first_value(_functional(ds, "PixelValueTransformationSequence", "RescaleSlope",
                                             index), ds.get("RescaleSlope"), 1.0)
            intercept = _first_value(_functional(ds, "PixelValueTransformationSequence",
                                                 "RescaleIntercept", index),
                                     ds.get("RescaleIntercept"), 0.0)
        except (TypeError, ValueError) as err:
            raise DicomSeriesError(
                f"{path}: RescaleSlope or RescaleIntercept of frame {index + 1} is not a number "
                f"({err}); export the series again") from err
        if not np.isfinite(slope) or slope <= 0 or not np.isfinite(intercept):
            raise DicomSeriesError(
                f"{path}: RescaleSlope of frame {index + 1} is {slope:g} (intercept "
                f"{intercept:g}); expected a positive slope and a finite intercept (HU = slope * "
                "stored value + intercept); export the series again")
        out[slot] = frames[index].astype(np.float32) * np.float32(slope) + np.float32(intercept)
    # Metadata of enhanced images sits in functional groups; copy it to the top level.
    for sequence, keyword in (("CTAcquisitionDetailsSequence", "KVP"),
                              ("CTExposureSequence", "CTDIvol"),
                              ("CTReconstructionSequence", "ConvolutionKernel"),
                              ("PixelMeasuresSequence", "SliceThickness")):
        value = _functional(ds, sequence, keyword, 0)
        if keyword not in ds and value is not None:
            setattr(ds, keyword, value)
    mas = _functional(ds, "CTExposureSequence", "ExposureInmAs", 0)
    means = {"Exposure": float(mas)} if mas is not None and "Exposure" not in ds else {}
    del ds.PixelData
    return _assemble(out, stack, where) + (dicom_metadata(ds, means),)


@dataclass(frozen=True, eq=False)
class _Stack:
    order: np.ndarray  # file/frame index of each slice, inferior-first along the normal
    distance_mm: np.ndarray  # slice positions along the normal, sorted
    origin_mm: np.ndarray  # position of the first sorted slice
    normal: np.ndarray
    row_dir: np.ndarray  # direction of increasing column index (IOP[:3])
    col_dir: np.ndarray  # direction of increasing row index (IOP[3:])
    pixel_mm: tuple[float, float]  # (between rows, between columns)
    step_mm: float  # nominal slice spacing
    drift: np.ndarray  # in-plane shift per mm along the normal (tan of the tilt)
    uniform: bool


def _stack_geometry(positions, iop, pixel_spacing, where) -> _Stack:
    """Sort slices along the normal and check spacing, gaps and tilt."""
    row_dir = np.asarray(iop[:3], float)
    col_dir = np.asarray(iop[3:], float)
    if min(np.linalg.norm(row_dir), np.linalg.norm(col_dir)) < 1e-6:
        raise DicomSeriesError(
            f"{where}: ImageOrientationPatient {[float(v) for v in iop]} holds a zero direction; "
            "expected two perpendicular unit vectors (row and column directions)")
    row_dir /= np.linalg.norm(row_dir)
    col_dir /= np.linalg.norm(col_dir)
    # Scanners round the direction cosines (often to 6 decimals); remove that rounding so
    # the grid is exactly orthogonal, but refuse a real skew.
    dot = float(row_dir @ col_dir)
    if abs(dot) > 1e-3:
        raise DicomSeriesError(
            f"{where}: ImageOrientationPatient rows and columns are not perpendicular "
            f"(angle {np.degrees(np.arccos(dot)):.2f} deg); expected 90 deg")
    col_dir = col_dir - dot * row_dir
    col_dir /= np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    distance = positions @ normal
    order = np.argsort(distance, kind="stable")
    distance = distance[order]
    positions = positions[order]
    steps = np.diff(distance)
    if len(distance) < 2:
        raise DicomSeriesError(f"{where}: a single 2-D slice; expected a 3-D series of at "
                               "least 2 slices")
    if np.any(steps < 0.01):
        at = distance[1:][steps < 0.01][0]
        raise DicomSeriesError(
            f"{where}: {int(np.sum(steps < 0.01)) + 1} images share the slice position "
            f"{at:.2f} mm; expected one image per position (several acquisitions or phases "
            "under one SeriesInstanceUID?); put each acquisition in its own folder")
    median = float(np.median(steps))
    tol = max(0.01, 0.01 * median)
    uniform = bool(np.all(np.abs(steps - median) <= tol))
    # In-plane offset of each slice and its linear drift along the normal (gantry tilt).
    inplane = positions - np.outer(distance, normal)
    rel = distance - distance[0]
    if rel[-1] > 0:
        drift = np.linalg.lstsq(np.c_[np.ones_like(rel), rel], inplane, rcond=None)[0][1]
    else:  # pragma: no cover - excluded by the duplicate check
        drift = np.zeros(3)
    fitted = inplane[0] + np.outer(rel, drift)
    fitted += (inplane - fitted).mean(axis=0)
    residual = float(np.max(np.linalg.norm(inplane - fitted, axis=1)))
    pixel = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if residual > max(0.1 * min(pixel), 0.01):
        raise DicomSeriesError(
            f"{where}: slice positions do not form one straight stack (in-plane jumps of up "
            f"to {residual:.2f} mm); expected a single series; put each series in its own folder")
    anchor = fitted[0]
    if np.linalg.norm(drift) * rel[-1] <= SNAP_MM:
        drift = np.zeros(3)  # rounding of positions: centre the stack on the mean offset
        anchor = inplane.mean(axis=0)
    if not uniform:
        worst = float(steps.max())
        if worst > MAX_GAP_FACTOR * median + tol or worst > MAX_GAP_MM:
            at = float(distance[int(np.argmax(steps))])
            raise DicomSeriesError(
                f"{where}: slice gap of {worst:.2f} mm after the slice at {at:.2f} mm "
                f"(nominal spacing {median:.2f} mm, {len(distance)} slices): slices missing? "
                f"bmdqct interpolates gaps up to {MAX_GAP_FACTOR:g}x the spacing "
                f"(one missing slice) and {MAX_GAP_MM:g} mm; export the complete series")
        if np.any(drift):
            raise DicomSeriesError(
                f"{where}: gantry tilt together with irregular slice spacing; expected one of "
                "the two at most; export a complete series or a tilt-corrected one")
    tilt_deg = float(np.degrees(np.arctan(np.linalg.norm(drift))))
    if tilt_deg > MAX_TILT_DEG:
        raise DicomSeriesError(f"{where}: gantry tilt of {tilt_deg:.1f} deg, expected at most "
                               f"{MAX_TILT_DEG:g} deg; export a tilt-corrected series")
    return _Stack(order=order, distance_mm=distance, origin_mm=distance[0] * normal + anchor,
                  normal=normal, row_dir=row_dir, col_dir=col_dir, pixel_mm=pixel,
                  step_mm=median if not uniform else float(rel[-1] / (len(rel) - 1)),
                  drift=drift, uniform=uniform)


def _assemble(hu: np.ndarray, stack: _Stack, where: str):
    """CTVolume (slice, row, column) on an orthogonal uniform grid, and notes."""
    notes: list[str] = []
    padding = replace_padding(hu)
    distance = stack.distance_mm
    if not stack.uniform:
        hu, step = _interpolate_slices(hu, distance)
        gaps = int(np.sum(np.diff(distance) > 1.5 * stack.step_mm))
        notes.append(f"irregular slice spacing ({len(distance)} slices, {gaps} gap(s), steps "
                     f"{np.diff(distance).min():.3g}-{np.diff(distance).max():.3g} mm): "
                     f"resampled to {hu.shape[0]} slices at {step:.4g} mm along the slice "
                     "normal (linear)")
    else:
        step = stack.step_mm
    origin = stack.origin_mm.copy()
    if np.any(stack.drift):
        hu, origin = _correct_tilt(hu, stack, step)
        tilt = np.degrees(np.arctan(np.linalg.norm(stack.drift)))
        notes.append(f"gantry tilt {tilt:.2f} deg corrected: each slice shifted in-plane "
                     "(linear), no interpolation across slices")
    affine = np.eye(4)
    affine[:3, 0] = stack.normal * step
    affine[:3, 1] = stack.col_dir * stack.pixel_mm[0]
    affine[:3, 2] = stack.row_dir * stack.pixel_mm[1]
    affine[:3, 3] = origin
    for note in notes:
        logger.info("%s: %s", where, note)
    return CTVolume(hu, affine), padding, notes


def _interpolate_slices(hu: np.ndarray, distance: np.ndarray):
    """Linear interpolation along axis 0 from irregular positions onto a uniform grid.

    Hand-written because the input grid is not affine, so neither SimpleITK nor
    ``scipy.ndimage.affine_transform`` can describe it; it blends two float32 slices at
    a time, so memory stays at one output volume.
    """
    steps = np.diff(distance)
    step0 = float(np.median(steps))
    n_out = int(round((distance[-1] - distance[0]) / step0)) + 1
    step = float((distance[-1] - distance[0]) / (n_out - 1))
    target = distance[0] + step * np.arange(n_out)
    upper = np.clip(np.searchsorted(distance, target, side="right"), 1, len(distance) - 1)
    out = np.empty((n_out,) + hu.shape[1:], dtype=np.float32)
    for m, (z, hi) in enumerate(zip(target, upper)):
        lo = hi - 1
        w = float((z - distance[lo]) / (distance[hi] - distance[lo]))
        if w <= 1e-6:
            out[m] = hu[lo]
        elif w >= 1 - 1e-6:
            out[m] = hu[hi]
        else:
            np.multiply(hu[lo], np.float32(1 - w), out=out[m])
            out[m] += np.float32(w) * hu[hi]
    return out, step


def _correct_tilt(hu: np.ndarray, stack: _Stack, step: float):
    """Shift every slice in-plane onto an orthogonal stack centred on the middle slice."""
    from scipy import ndimage

    n = hu.shape[0]
    mid = (n - 1) / 2
    out = np.empty_like(hu)
    for k in range(n):
        shift_mm = stack.drift * step * (k - mid)  # offset of slice k vs the middle slice
        # output pixel x of slice k shows input pixel x - shift (ndimage.shift semantics)
        # rounded: a shift of 1e-17 pixel would put a whole edge row "outside" the slice
        shift = (round(float(shift_mm @ stack.col_dir) / stack.pixel_mm[0], 6),
                 round(float(shift_mm @ stack.row_dir) / stack.pixel_mm[1], 6))
        ndimage.shift(hu[k], shift, output=out[k], order=1, mode="constant",
                      cval=HU_AIR, prefilter=False)
    origin = stack.origin_mm + stack.drift * step * mid
    return out, origin


def replace_padding(hu: np.ndarray) -> tuple[float | None, int]:
    """Set outside-field-of-view padding to air, in place; return (padding_hu, count).

    Padding is every voxel at or below :data:`PADDING_THRESHOLD_HU`; ``padding_hu`` is
    the smallest such value (the padding value itself: -2048, -3024, ...). The DICOM
    tag PixelPaddingValue is not trusted: in the LIDC slabs it disagrees with the data.
    """
    low = float(hu.min())
    if low > PADDING_THRESHOLD_HU:
        return None, 0
    mask = hu <= PADDING_THRESHOLD_HU
    count = int(np.count_nonzero(mask))
    hu[mask] = HU_AIR
    return low, count


# --------------------------------------------------------------------------- metadata


def _iso_date(value) -> str | None:
    text = str(value or "").strip()
    try:
        return datetime.datetime.strptime(text[:8], "%Y%m%d").date().isoformat()
    except ValueError:
        if text:
            logger.debug("unreadable DICOM date %r", text)
        return None


def _age_years(value) -> float | None:
    text = str(value or "").strip().upper()
    if len(text) != 4 or not text[:3].isdigit() or text[3] not in "DWMY":
        return None
    per_year = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0}[text[3]]
    return round(int(text[:3]) / per_year, 2)


def dicom_metadata(ds, means: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Scanner and patient metadata (keys of METADATA_KEYS) from a pydicom header.

    `means` overrides per-slice tags with their series mean (``Exposure``, ``CTDIvol``,
    ``ExposureInuAs``). Absent or empty tags give None, never a guessed value.
    """
    means = means or {}
    exposure = means.get("Exposure", _number(ds, "Exposure"))
    if exposure is None:
        micro = means.get("ExposureInuAs", _number(ds, "ExposureInuAs"))
        exposure = micro / 1000.0 if micro is not None else None
    sex = _text(ds, "PatientSex")
    return {
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_description": _text(ds, "SeriesDescription"),
        "modality": _text(ds, "Modality"),
        "kvp": _number(ds, "KVP"),
        "exposure_mas": exposure,
        "ctdi_vol_mgy": means.get("CTDIvol", _number(ds, "CTDIvol")),
        "manufacturer": _text(ds, "Manufacturer"),
        "model": _text(ds, "ManufacturerModelName"),
        "device_serial": _text(ds, "DeviceSerialNumber"),
        "station": _text(ds, "StationName"),
        "kernel": _text(ds, "ConvolutionKernel"),
        "slice_thickness_mm": _thickness(ds),
        "study_date": _iso_date(ds.get("StudyDate")),
        "acquisition_date": _iso_date(ds.get("AcquisitionDate")),
        "patient_id": _text(ds, "PatientID"),
        "patient_sex": sex.upper() if sex else None,
        "patient_age_years": _age_years(ds.get("PatientAge")),
        "contrast_agent": _text(ds, "ContrastBolusAgent"),
    }
