"""Internals of :mod:`bmdqct.io`: the NIfTI/MetaImage readers, label maps and writers."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._grid import bounding_grid as _bounding_grid
from .._grid import resample_array as _resample_array
from .._grid import resample_volume as _resample_volume
from .._util import atomic_write_text, iso_date, json_safe, strip_image_suffix
from ..errors import GeometryError, InputError
from ..levels import level_id, scheme_ids
from ..volume import (
    _LPS_TO_RAS,
    METADATA_KEYS,
    CTVolume,
    LabelVolume,
    axis_codes,
    same_grid,
    to_canonical,
)
from . import _dicom
from ._dicom import HU_AIR, replace_padding

logger = logging.getLogger(__name__)

#: Axes closer than this (degrees) to the patient axes are kept without resampling.
KEEP_OBLIQUE_DEG = 1.0
#: Axes up to this far (degrees) from the patient axes are resampled; beyond, refused.
MAX_OBLIQUE_DEG = 30.0

_NIFTI = (".nii", ".nii.gz")
_ITK = (".mha", ".mhd", ".nrrd", ".nhdr")
_FORMATS = "a DICOM series folder or file, .nii/.nii.gz, .mha/.mhd or .nrrd"


# --------------------------------------------------------------------------- reading


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_NIFTI):
        return "nifti"
    if name.endswith(_ITK):
        return "itk"
    return "dicom"


def _format_name(path: Path, kind: str) -> str:
    """``metadata["format"]``: "dicom", "nifti", "mha" (MetaImage) or "nrrd"."""
    if kind != "itk":
        return kind
    return "nrrd" if path.name.lower().endswith((".nrrd", ".nhdr")) else "mha"


def _check_path(path) -> Path:
    if isinstance(path, str) and not path.strip():
        raise InputError(f"empty path {path!r}; expected {_FORMATS}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; expected {_FORMATS}")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes); expected {_FORMATS}")
    return path


def load_ct(path, *, series_uid: str | None = None) -> CTVolume:
    """Read a CT scan as a canonical volume in Hounsfield units.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM series folder (searched recursively; file names need no ``.dcm``),
        a single multi-frame DICOM file, or a ``.nii``, ``.nii.gz``, ``.mha``,
        ``.mhd`` or ``.nrrd`` file.
    series_uid : str, optional
        SeriesInstanceUID to read when a folder holds several series (see
        :func:`list_series`). By default the CT series with the most slices is read
        and the others are logged at INFO.

    Returns
    -------
    CTVolume
        Float32 HU in orientation ``('S', 'P', 'L')``; ``metadata`` holds every key of
        :data:`bmdqct.volume.METADATA_KEYS` (None when the file does not say) plus
        ``input_affine``, ``input_shape`` and ``input_orientation``. A NIfTI, MHA or
        NRRD file has no scanner metadata of its own: a JSON sidecar beside it
        (``ct.nii.gz`` -> ``ct.json``, as dcm2niix writes) supplies kVp, dates and the
        scanner (:func:`read_sidecar`), which calibration from a store needs.

    Raises
    ------
    InputError
        If `path` does not exist, is empty or is not a supported format, or its voxels
        cannot be HU: a single 2-D slice, 8-bit integers (a label map or mask?),
        NaN or infinite values, complex or colour voxels.
    DicomSeriesError
        For an empty folder, no DICOM files, a truncated file, no CT series, a single
        2-D slice, a mixed series, a colour image, malformed geometry tags, or slice
        gaps / tilt beyond the documented rules.
    GeometryError
        For a strongly oblique or sheared image, or a NIfTI without orientation or with
        a singular affine.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from bmdqct.volume import CTVolume
    >>> vol = CTVolume.from_spacing(np.full((3, 4, 5), 40.0), spacing=(2.0, 0.8, 0.8))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ct = load_ct(write_nifti(vol, f"{tmp}/ct.nii.gz"))
    >>> ct, ct.metadata["format"], float(ct.hu.mean())
    (CTVolume(shape=(3, 4, 5), spacing=(2, 0.8, 0.8) mm, orientation=SPL), 'nifti', 40.0)
    """
    path = _check_path(path)
    kind = "dicom" if path.is_dir() else _kind(path)
    if series_uid is not None and kind != "dicom":
        raise ValueError(f"series_uid applies to DICOM input only; {path} is {kind}")
    metadata: dict[str, Any] = dict.fromkeys(METADATA_KEYS)
    metadata.update(source=str(path), format=_format_name(path, kind))
    notes: list[str] = []
    if kind == "dicom":
        if path.is_file() and _dicom._read_header(path) is None:
            raise InputError(f"{path}: unsupported file (not DICOM, unknown suffix); "
                             f"expected {_FORMATS}")
        volume, padding, notes, dicom_meta = _dicom.read_dicom(path, series_uid=series_uid)
        metadata.update(dicom_meta)
        input_flags = list(metadata.pop("input_flags", ()))
        reversed_axes = True  # (slice, row, column) arrays; files index (column, row, slice)
    else:
        array, affine, reversed_axes = (_read_nifti if kind == "nifti" else _read_itk)(path)
        padding = replace_padding(array)
        volume = CTVolume(array, affine)
        input_flags = []
        metadata.update(read_sidecar(path))
    metadata["padding_hu"], metadata["padding_voxels"] = padding
    check_hu_scale(volume.hu, path)
    if padding[0] is not None:
        logger.info("%s: %d voxels of outside-field-of-view padding (%g HU) set to %g HU",
                    path, padding[1], padding[0], HU_AIR)
    volume, note = _regularize(volume, path)
    notes += [note] if note else []
    metadata["resampled"] = "; ".join(notes) or None
    order = (2, 1, 0) if reversed_axes else (0, 1, 2)
    input_affine = volume.affine[:, list(order) + [3]]
    metadata["input_affine"] = tuple(tuple(float(v) for v in row) for row in input_affine)
    metadata["input_shape"] = tuple(volume.shape[i] for i in order)
    metadata["input_orientation"] = axis_codes(input_affine)
    metadata["input_flags"] = tuple(tuple(f) for f in input_flags)
    canonical = to_canonical(volume)
    logger.debug("%s: read %s, input orientation %s", path, canonical,
                 "".join(metadata["input_orientation"]))
    return canonical.with_metadata(**metadata)


#: Share of voxels at 800-1150 HU (where fat and soft tissue sit when 1024 was added)
#: above which a scan without any voxel below -200 HU counts as stored as HU + 1024.
OFFSET_TISSUE_FRACTION = 0.10


def check_hu_scale(hu: np.ndarray, source) -> None:
    """Refuse an image whose values are HU + 1024 (air at 0) instead of HU.

    A CT in Hounsfield units has air at -1000 HU, fat at about -100 HU and soft
    tissue at 0-80 HU; cortical bone above 800 HU fills a few percent of a scan at
    most. Stored as HU + 1024 (an unsigned export, a missing RescaleIntercept), air
    sits at about 0, fat at about 920 and soft tissue at 1030-1100. The rule: fewer
    than 0.1 % of the voxels below -200 HU (no air, no lung, no fat) **and** at least
    :data:`OFFSET_TISSUE_FRACTION` of them at 800-1150 HU. A constant padding value
    (the minimum, when it holds over 1 % of the voxels) is left out first, because
    -2048 padding becomes -1024 after adding 1024. Every 2nd voxel along each axis is
    looked at.

    Raises
    ------
    InputError
        Naming `source`, the air level found and what to do.

    Examples
    --------
    >>> hu = np.full((20, 20, 20), -1000.0); hu[5:15, 5:15, 5:15] = 40.0
    >>> check_hu_scale(hu, "ct.nii")  # air at -1000 HU: fine
    >>> check_hu_scale(hu + 1024, "ct.nii")
    Traceback (most recent call last):
    ...
    bmdqct.errors.InputError: ct.nii: the values look like HU + 1024, not Hounsfield units: ...
    """
    sample = np.asarray(hu)[::2, ::2, ::2].ravel()
    if sample.size == 0:
        return
    low = float(sample.min())
    if low <= -500 and np.count_nonzero(sample == low) > 0.01 * sample.size:
        sample = sample[sample != low]  # constant padding
        if sample.size == 0:
            return
    below = float(np.mean(sample < -200))
    tissue = float(np.mean((sample >= 800) & (sample <= 1150)))
    if below < 0.001 and tissue >= OFFSET_TISSUE_FRACTION:
        air = float(np.percentile(sample, 1))
        raise InputError(
            f"{source}: the values look like HU + 1024, not Hounsfield units: no voxel below "
            f"-200 HU (air and fat missing; lowest level about {air:.0f}, where air sits if 1024 "
            f"was added) and {tissue:.0%} of the voxels at 800..1150, where fat and soft tissue "
            "sit if 1024 was added; expected air at about -1000 HU; subtract 1024 from the "
            "image (or fix its RescaleIntercept) and read it again")


def _squeeze3d(array: np.ndarray, path: Path) -> np.ndarray:
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"{path}: image of shape {array.shape}; expected a 3-D volume "
                         "(a single 2-D slice or a 4-D/multi-component image cannot be measured)")
    _check_real(array, path)
    return array


def _check_real(array: np.ndarray, path: Path) -> None:
    """Refuse voxels that are not one real number (complex; a colour/structured dtype)."""
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: voxels of type {array.dtype} (complex or colour); expected one "
                         "real number per voxel")


def _check_ct_array(array: np.ndarray, path: Path) -> None:
    """Refuse what a file may hold but a CT in HU cannot: one slice, 8-bit values, NaN.

    An 8-bit integer image (without scaling, which nibabel has applied by now) cannot
    hold air at -1000 HU nor HU + 1024: a label map, a mask or a windowed 8-bit export.
    """
    if min(array.shape) < 2:
        what = "no voxels" if min(array.shape) == 0 else "a single 2-D slice"
        raise InputError(f"{path}: image of shape {array.shape}: {what}; expected a 3-D volume "
                         "of at least 2 slices")
    if array.dtype.kind == "b" or (array.dtype.kind in "iu" and array.dtype.itemsize == 1):
        raise InputError(
            f"{path}: {array.dtype} values ({array.min()}..{array.max()}) cannot be Hounsfield "
            "units (air is -1000 HU): a label map, a mask or an 8-bit (windowed) export?; "
            "expected a CT in HU (16-bit integers or floats)")
    if array.dtype.kind == "f" and not np.isfinite(np.sum(array, dtype=np.float64)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))  # the sum is NaN or inf
        if bad:
            raise InputError(
                f"{path}: {bad} voxel(s) ({bad / array.size:.2%}) are NaN or infinite; expected "
                "finite Hounsfield units; fill them (e.g. with -1000 HU, air, outside the "
                "scanned field) and read the file again")


def _read_nifti(path: Path):
    """Float32 array (file index order; its own memory, never a view of the file) and LPS affine of a NIfTI file."""
    array, affine = _read_nifti_raw(path)
    _check_ct_array(array, path)
    # nibabel hands a compressed file's data as a fresh array: keep it when it is float32
    # already (a copy of a 512 x 512 x 350 scan costs 0.7 s); copy a memory map or a view
    # of the file, and anything read-only
    fresh = type(array) is np.ndarray and array.flags.writeable and not _maps_a_file(array)
    return array.astype(np.float32, copy=not fresh), affine, False


def _maps_a_file(array: np.ndarray) -> bool:
    """True if `array` (or what it is a view of) is memory-mapped."""
    import mmap

    base = array
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


def _load_nifti(path: Path):
    """nibabel image of `path`, also when its name lies about gzip compression."""
    import gzip

    import nibabel as nib

    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped == path.name.lower().endswith(".gz"):
        return nib.load(path)
    logger.warning("%s: the file is %sgzip-compressed, unlike its name says; read as such", path,
                   "" if gzipped else "not ")
    with (gzip.open if gzipped else open)(path, "rb") as fh:
        data = fh.read()
    sizes = {int.from_bytes(data[:4], order) for order in ("little", "big")}
    if not sizes & {348, 540}:
        raise ValueError("no NIfTI header: sizeof_hdr is neither 348 nor 540")
    return (nib.Nifti2Image if 540 in sizes else nib.Nifti1Image).from_bytes(data)


#: Name and millimetres per unit of the NIfTI spatial unit codes (``xyzt_units & 7``) that are
#: not mm; every other code (2 mm, 0 "unknown", written by many tools) is read as mm.
_NIFTI_UNITS_NOT_MM = {1: ("meter", 1000.0), 3: ("micron", 0.001)}


def _read_nifti_raw(path: Path):
    """Array in the file's dtype and LPS affine of a NIfTI file (nibabel)."""
    try:
        image = _load_nifti(path)
        array = np.asanyarray(image.dataobj)
    except Exception as err:
        raise InputError(f"{path}: cannot read this NIfTI file ({err}); "
                         "expected a valid .nii/.nii.gz") from err
    if image.header["sform_code"] == 0 and image.header["qform_code"] == 0:
        raise GeometryError(f"{path}: NIfTI without orientation (sform_code and qform_code "
                            "are 0); expected a scanner-aligned affine; rewrite the file "
                            "with its true orientation (e.g. dcm2niix)")
    affine = image.affine
    # the spatial unit from its code bits (nibabel's get_xyzt_units raises on an unknown time code)
    unit = _NIFTI_UNITS_NOT_MM.get(int(image.header["xyzt_units"]) & 7)
    if unit is not None:
        affine = affine.copy()
        affine[:3] *= unit[1]
        logger.info("%s: NIfTI spatial unit %r: geometry scaled to mm", path, unit[0])
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GeometryError(f"{path}: the NIfTI affine (sform/qform) is not finite or not "
                            f"invertible ({np.round(affine[:3], 4).tolist()}); expected voxel axes "
                            "of non-zero size; rewrite the file with its true orientation")
    return _squeeze3d(array, path), _LPS_TO_RAS @ affine


def _read_itk(path: Path):
    """Float32 array (z, y, x) and LPS affine of a MetaImage/NRRD file (SimpleITK)."""
    array, affine = _read_itk_raw(path)
    _check_ct_array(array, path)
    return array.astype(np.float32, copy=False), affine, True


def _itk_reason(err: RuntimeError) -> str:
    """The informative end of a SimpleITK error: its last line, with the line before a "Reason"."""
    import re

    lines = [re.sub(r"^(ITK ERROR|itk::ERROR): \w+\(0x[0-9a-fA-F]+\): ", "", line.strip())
             for line in str(err.args[0] if err.args else err).splitlines()]
    lines = [line for line in lines if line and not line.startswith("Exception thrown in")
             and line != "Reason: Success"] or [str(err)]
    if lines[-1].startswith("Reason:") and len(lines) > 1:
        return f"{lines[-2]} {lines[-1]}"
    return lines[-1]


def _check_data_file(path: Path) -> None:
    """Refuse a MetaImage header whose ElementDataFile is missing (ITK would only say "cannot read")."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(4096).decode("latin-1")
    except OSError:
        return  # SimpleITK reports it
    for line in header.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            name = value.strip()
            if name.upper() not in ("LOCAL", "LIST") and "%" not in name \
                    and not (path.parent / name).is_file():
                raise InputError(f"{path}: its data file {name} (ElementDataFile) is missing; "
                                 "expected it beside the header; copy the .raw/.zraw file too")
            return


def _read_itk_raw(path: Path):
    """Array (z, y, x) in the file's dtype and LPS affine of a MetaImage/NRRD file (SimpleITK)."""
    import SimpleITK as sitk

    # The ImageIO is named, not guessed from the suffix: ITK's guess is case-sensitive
    # and refuses "CT.MHA" or "CT.MHD".
    io_name = "NrrdImageIO" if path.name.lower().endswith((".nrrd", ".nhdr")) else "MetaImageIO"
    if io_name == "MetaImageIO":
        _check_data_file(path)
    try:
        image = sitk.ReadImage(str(path), imageIO=io_name)
    except RuntimeError as err:
        raise InputError(f"{path}: cannot read this image ({_itk_reason(err)}); "
                         "expected a valid .mha/.mhd/.nrrd") from err
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        direction = np.asarray(image.GetDirection()).reshape(4, 4)
        if np.allclose(direction[3, :3], 0) and np.allclose(direction[:3, 3], 0):
            image = image[:, :, :, 0]  # a single volume: drop the 4th axis, as for NIfTI
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise InputError(f"{path}: {image.GetDimension()}-D image of size {image.GetSize()} with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel; "
                         "expected a 3-D scalar volume (a single 2-D slice, a 4-D series or a "
                         "vector/colour image cannot be measured)")
    array = sitk.GetArrayFromImage(image)
    _check_real(array, path)
    return array, _itk_affine(image)


def _itk_affine(image) -> np.ndarray:
    """LPS affine of a SimpleITK image for its (z, y, x) numpy array."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = (direction * np.asarray(image.GetSpacing()))[:, ::-1]
    affine[:3, 3] = image.GetOrigin()
    return affine


def _axis_angles(affine) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Nearest patient axis, sign and angle (deg) of each array axis; max shear (deg)."""
    import nibabel.orientations as nio

    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    ornt = nio.io_orientation(_LPS_TO_RAS @ affine)
    axes, signs = ornt[:, 0].astype(int), ornt[:, 1]
    cosines = np.abs(columns[axes, np.arange(3)])
    angles = np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0)))
    gram = columns.T @ columns
    shear = float(np.degrees(np.arcsin(np.clip(np.max(np.abs(gram - np.eye(3))), 0, 1))))
    return axes, signs, angles, shear


def _regularize(volume: CTVolume, source) -> tuple[CTVolume, str | None]:
    """Apply the obliquity rule of the module docstring."""
    axes, signs, angles, shear = _axis_angles(volume.affine)
    if shear > 0.01:
        raise GeometryError(
            f"{source}: the image axes are not orthogonal (sheared by {shear:.2f} deg, e.g. "
            "an uncorrected gantry tilt); expected orthogonal axes; read the original DICOM "
            "series (bmdqct corrects tilt) or convert with tilt correction (dcm2niix)")
    worst = float(angles.max())
    if worst <= KEEP_OBLIQUE_DEG:
        return volume, None
    if worst > MAX_OBLIQUE_DEG:
        raise GeometryError(
            f"{source}: image axes {worst:.1f} deg from the patient axes, expected at most "
            f"{MAX_OBLIQUE_DEG:g} deg (axial, coronal or sagittal slices, slightly oblique "
            "at most); reformat the scan to axial slices")
    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    # same voxel sizes, each array axis along its nearest LPS axis (RAS signs flipped)
    lps_signs = signs * np.where(axes < 2, -1.0, 1.0)
    target = np.eye(4)
    target[:3, :3] = 0.0
    target[axes, np.arange(3)] = lps_signs * spacing
    affine, shape = _bounding_grid(volume.affine, volume.shape, target)
    hu = _resample_array(volume.hu, volume.affine, affine, shape, order=1, fill=HU_AIR)
    note = (f"oblique by {worst:.1f} deg: resampled onto an axis-aligned grid "
            f"{shape} at {tuple(round(float(s), 4) for s in spacing)} mm (linear)")
    logger.info("%s: %s", source, note)
    return CTVolume(hu, affine), note


# --------------------------------------------------------------------------- resampling
# (the core lives in bmdqct._grid, shared with bmdqct.preprocess)


# --------------------------------------------------------------------------- labels


def _read_label_array(path: Path):
    kind = _kind(path)
    if kind == "nifti":
        array, affine = _read_nifti_raw(path)
    elif kind == "itk":
        array, affine = _read_itk_raw(path)
    else:
        raise InputError(f"{path}: unsupported label map format; expected .nii/.nii.gz, "
                         ".mha/.mhd or .nrrd")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise InputError(f"{path}: label map holds non-integer values; expected integer "
                             "label ids (is this an image rather than a label map?)")
        array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int16).max):
        raise InputError(f"{path}: label ids range {array.min()}..{array.max()}; expected "
                         "0..32767")
    return array, affine


def _extent_mm(affine, shape) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box of a grid's voxels (to their outer faces)."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape],
                                   indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:4]
    return world.min(axis=1), world.max(axis=1)


def load_labels(path, *, like=None, scheme: str | Mapping[str, int] | None = None) -> LabelVolume:
    """Read a label map, optionally name its vertebrae and move it onto a CT grid.

    Parameters
    ----------
    path : str or os.PathLike
        ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` or ``.nrrd`` with integer labels.
    like : CTVolume or LabelVolume, optional
        Grid to resample onto, **in physical space** (through both affines, nearest
        neighbour, 0 outside the label map); never by voxel index. By default the
        labels stay on their own grid, in canonical orientation.
    scheme : {"totalsegmentator", "verse"} or mapping of str to int, optional
        Label ids of the vertebrae in the file (TotalSegmentator v2 ``total``: L1 = 31;
        VerSe: L1 = 20; or a mapping such as ``{"L1": 5}``, see
        :func:`bmdqct.levels.scheme_ids`). When given, only vertebrae are kept,
        renumbered to VerSe ids and named (``names == {"L1": 20, ...}``). When None,
        every label is kept unchanged, without names.

    Returns
    -------
    LabelVolume
        Canonical, on `like`'s grid when given.

    Raises
    ------
    InputError
        Missing or unreadable file, non-integer values, no vertebra of `scheme`.
    GeometryError
        If the label map does not overlap `like` (e.g. another patient's map).
    TypeError
        If `like` is neither a CTVolume nor a LabelVolume.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from bmdqct.volume import CTVolume
    >>> ct = CTVolume.from_spacing(np.zeros((4, 4, 4)), spacing=(1, 1, 1))
    >>> ts = LabelVolume.from_spacing(np.full((2, 2, 2), 31), spacing=(2, 2, 2), origin=(0.5,) * 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_nifti(ts, f"{tmp}/ts.nii.gz")
    ...     lab = load_labels(path, like=ct, scheme="totalsegmentator")
    >>> lab.shape, dict(lab.names), int(lab.mask("L1").sum())
    ((4, 4, 4), {'L1': 20}, 64)
    """
    if like is not None and not isinstance(like, (CTVolume, LabelVolume)):
        raise TypeError(f"like must be a CTVolume or LabelVolume (the grid to resample onto), "
                        f"got {type(like).__name__}")
    path = _check_path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a label map file (.nii/.nii.gz, "
                         ".mha/.mhd or .nrrd)")
    array, affine = _read_label_array(path)
    names: dict[str, int] = {}
    if scheme is not None:
        ids = scheme_ids(scheme)
        lut = np.zeros(max(int(array.max()), max(ids.values())) + 1, dtype=np.int16)
        for name, file_id in ids.items():
            lut[file_id] = level_id(name)
        present = set(np.unique(array).tolist())
        names = {name: level_id(name) for name, file_id in ids.items() if file_id in present}
        if not names:
            found = sorted(present - {0})[:12]
            raise InputError(
                f"{path}: no vertebra of scheme {scheme!r} found (label ids present: {found}); "
                f"expected ids such as L1={ids.get('L1')}; pick the scheme that produced the map")
        array = lut[array]
    labels = to_canonical(LabelVolume(array, affine, names=names))
    if like is None:
        return labels
    had_labels = bool(np.any(labels.labels))
    low, high = _extent_mm(labels.affine, labels.shape)
    like_low, like_high = _extent_mm(like.affine, like.shape)
    if np.any(high <= like_low) or np.any(low >= like_high):
        raise GeometryError(
            f"{path}: label map does not overlap the CT: label box {np.round(low, 1)}.."
            f"{np.round(high, 1)} mm vs CT box {np.round(like_low, 1)}..{np.round(like_high, 1)}"
            " mm (LPS); expected a map of the same scan (another patient's or another "
            "study's map?)")
    moved = _resample_volume(labels, like.affine, like.shape, order=0, fill=0)
    if had_labels and not np.any(moved.labels):
        raise GeometryError(
            f"{path}: no labelled voxel of the label map falls inside the CT grid; expected a "
            "map of the same scan (another patient's or another study's map?)")
    if moved is not labels:
        logger.info("%s: labels resampled onto the CT grid %s (nearest neighbour, physical "
                    "space)", path, like.shape)
    kept = {name: i for name, i in moved.names.items() if np.any(moved.labels == i)}
    lost = sorted(set(moved.names) - set(kept))
    if lost:
        logger.info("%s: levels outside the CT field of view: %s", path, ", ".join(lost))
        moved = LabelVolume(moved.labels, moved.affine, names=kept)
    return moved


# --------------------------------------------------------------------------- writing


def _input_grid(volume) -> tuple[np.ndarray, tuple[int, ...]] | None:
    meta = getattr(volume, "metadata", {})
    if meta.get("input_affine") is None or meta.get("input_shape") is None:
        return None
    return np.array(meta["input_affine"], dtype=np.float64), tuple(meta["input_shape"])


def _reorient(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray):
    """Permute/flip `array` to the axis orientation of `target_affine` (no interpolation)."""
    import nibabel.orientations as nio

    current = nio.io_orientation(_LPS_TO_RAS @ affine)
    target = nio.io_orientation(_LPS_TO_RAS @ target_affine)
    transform = nio.ornt_transform(current, target)
    data = nio.apply_orientation(array, transform)
    return data, affine @ nio.inv_ornt_aff(transform, array.shape)


def write_nifti(volume_or_labels, path, *, like=None, sidecar: bool = False) -> Path:
    """Write a CT or label volume as NIfTI on the grid of the original input file.

    Parameters
    ----------
    volume_or_labels : CTVolume or LabelVolume
        What to write.
    path : str or os.PathLike
        Ends in ``.nii`` or ``.nii.gz``; parent folders are created.
    like : CTVolume, optional
        Reference CT: the volume is written on `like`'s input grid (its
        ``metadata["input_affine"]``), resampled there first (nearest neighbour for
        labels, linear for CT) if it is not on `like`'s grid. By default a CTVolume
        uses its own input grid, a LabelVolume its canonical grid.
    sidecar : bool, optional
        Also write the CT's scanner and acquisition metadata (kVp, dates, scanner,
        kernel, ...: the keys :data:`SIDECAR_KEYS` that are not None) to the JSON
        sidecar beside it (``ct.nii.gz`` -> ``ct.json``), which :func:`load_ct` reads
        back; NIfTI itself has no place for them. Ignored for a LabelVolume.

    Returns
    -------
    pathlib.Path
        `path`.

    Notes
    -----
    The round trip is exact for voxels (HU stored as int16 when all values are
    integers in range, otherwise float32; labels as int16). World coordinates are
    exact up to the float32 precision of the NIfTI sform: below 1e-4 mm for
    coordinates within +-1000 mm. sform and qform are both written (code 1, scanner),
    RAS as NIfTI requires.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> vol = CTVolume(np.arange(24.0).reshape(2, 3, 4), np.diag([-0.7, -0.7, 2.5, 1.0]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     back = load_ct(write_nifti(load_ct(write_nifti(vol, f"{tmp}/a.nii")), f"{tmp}/b.nii"))
    ...     import nibabel as nib
    ...     nib.aff2axcodes(nib.load(f"{tmp}/b.nii").affine)
    ('R', 'A', 'S')
    >>> np.array_equal(back.hu, to_canonical(vol).hu)
    True
    """
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith(_NIFTI):
        raise ValueError(f"{path}: write_nifti writes .nii or .nii.gz files; got suffix "
                         f"{''.join(path.suffixes) or 'none'}")
    obj = volume_or_labels
    is_labels = isinstance(obj, LabelVolume)
    if not is_labels and not isinstance(obj, CTVolume):
        raise TypeError(f"expected a CTVolume or LabelVolume, got {type(obj).__name__}")
    grid = _input_grid(like if like is not None else obj)
    if like is not None and not same_grid(obj, like):
        logger.info("%s: resampling onto the reference grid %s before writing", path, like.shape)
        obj = _resample_volume(obj, like.affine, like.shape)
    array = obj.labels if is_labels else obj.hu
    affine = obj.affine
    if grid is not None:
        array, affine = _reorient(array, affine, grid[0])
        if array.shape == grid[1] and np.allclose(affine, grid[0], rtol=0, atol=1e-3):
            affine = grid[0]  # the file's own numbers, not a recomputation
    if is_labels:
        data = np.asarray(array, dtype=np.int16)
    elif (np.all(array == np.round(array)) and array.min() >= -32768
          and array.max() <= 32767):
        data = np.asarray(array, dtype=np.int16)
    else:
        data = np.asarray(array, dtype=np.float32)
    ras = _LPS_TO_RAS @ affine
    image = nib.Nifti1Image(data, ras)
    image.set_sform(ras, code=1)
    image.set_qform(ras, code=1)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, os.fspath(path))
    if sidecar and not is_labels:
        known = {}
        for key in SIDECAR_KEYS:        # what read_sidecar would refuse (a kVp of 0, say) is left out
            value = obj.metadata.get(key)
            if value is None:
                continue
            try:
                known[key] = _sidecar_value(key, value)
            except (TypeError, ValueError):
                logger.warning("%s: metadata %s = %r not written to the sidecar (not a valid value)",
                               path, key, value)
        atomic_write_text(sidecar_path(path), json.dumps(json_safe(known), indent=2) + "\n")
    return path


#: Metadata keys a JSON sidecar may hold (:func:`read_sidecar`), ours and their BIDS /
#: dcm2niix names: scanner identity, acquisition and patient descriptors (never geometry,
#: which the image file holds).
SIDECAR_KEYS = ("series_uid", "study_uid", "series_description", "modality", "kvp", "exposure_mas",
                "ctdi_vol_mgy", "manufacturer", "model", "device_serial", "station", "kernel",
                "slice_thickness_mm", "study_date", "acquisition_date", "patient_id", "patient_sex",
                "patient_age_years", "contrast_agent")
_BIDS_NAMES = {"SeriesInstanceUID": "series_uid", "StudyInstanceUID": "study_uid",
               "SeriesDescription": "series_description", "Modality": "modality", "KVP": "kvp",
               "XRayExposure": "exposure_mas", "CTDIvol": "ctdi_vol_mgy", "Manufacturer": "manufacturer",
               "ManufacturersModelName": "model", "DeviceSerialNumber": "device_serial",
               "StationName": "station", "ConvolutionKernel": "kernel", "SliceThickness": "slice_thickness_mm",
               "StudyDate": "study_date", "AcquisitionDateTime": "acquisition_date",
               "AcquisitionDate": "acquisition_date", "PatientID": "patient_id", "PatientSex": "patient_sex",
               "ContrastBolusAgent": "contrast_agent"}
_SIDECAR_NUMBERS = {"kvp": (40.0, 200.0), "exposure_mas": (0.0, 1e5), "ctdi_vol_mgy": (0.0, 1e4),
                    "slice_thickness_mm": (0.0, 50.0), "patient_age_years": (0.0, 150.0)}


def sidecar_path(path) -> Path:
    """The JSON sidecar of an image file: ``DIR/ct.nii.gz`` -> ``DIR/ct.json`` (any image suffix).

    Examples
    --------
    >>> sidecar_path("cases/a/CT.NII.GZ").as_posix()
    'cases/a/CT.json'
    """
    path = Path(path)
    return path.with_name(strip_image_suffix(path.name) + ".json")


def read_sidecar(path) -> dict[str, Any]:
    """Scanner and acquisition metadata of an image file from its JSON sidecar, if any.

    The sidecar (:func:`sidecar_path`) may use bmdqct's names (:data:`SIDECAR_KEYS`) or
    the BIDS / dcm2niix ones (``Manufacturer``, ``ManufacturersModelName``,
    ``DeviceSerialNumber``, ``StationName``, ``KVP``, ``AcquisitionDateTime``,
    ``StudyDate``, ``ConvolutionKernel``, ...); other keys are ignored. Dates become
    ISO ``YYYY-MM-DD``; numbers are checked against plausible ranges.

    Returns
    -------
    dict
        The keys found (empty without a sidecar).

    Raises
    ------
    InputError
        If the sidecar cannot be read or is not a JSON object (naming it). A single value
        that is not what its key expects is left out with a warning naming the file and
        the key: the image itself is fine.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{side}: the JSON sidecar of {Path(path).name} cannot be read ({err}); "
                         "expected a JSON object of scanner metadata, or no such file") from err
    if not isinstance(data, Mapping):
        raise InputError(f"{side}: the JSON sidecar of {Path(path).name} must be a JSON object, "
                         f"got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in SIDECAR_KEYS else _BIDS_NAMES.get(key)
        if name is None or value is None:
            continue
        try:
            out[name] = _sidecar_value(name, value)
        except (TypeError, ValueError) as err:
            logger.warning("%s: %s = %r is not valid (%s); ignored", side, key, value, err)
    logger.info("%s: metadata from the sidecar %s: %s", path, side.name, ", ".join(sorted(out)) or "none")
    return out


def _sidecar_value(name: str, value):
    if name in ("study_date", "acquisition_date"):
        return iso_date(value)
    if name in _SIDECAR_NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number")
        lo, hi = _SIDECAR_NUMBERS[name]
        if not lo < float(value) <= hi:
            raise ValueError(f"expected a number in ({lo:g}, {hi:g}]")
        return float(value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TypeError("expected text")
    return str(value)
