"""CT volumes and label volumes on a common grid.

Geometry convention (the only one in bmdqct)
--------------------------------------------
``hu[i, j, k]`` is the voxel whose centre lies at ``affine @ (i, j, k, 1)``, in
millimetres, in **patient LPS** coordinates (the DICOM/ITK convention: +x points
to the patient's Left, +y to Posterior, +z to Superior). The affine is the single
source of geometry: ``spacing`` (mm, array-axis order) is derived from it and goes
unchanged to ``scipy.ndimage`` (``sampling=``) and ``skimage.measure``
(``spacing=``).

Every reader returns volumes in the **canonical orientation** ``('S', 'P', 'L')``:
array axis 0 runs inferior to superior, axis 1 anterior to posterior and axis 2
right to left. ``hu[k]`` is therefore an axial slice seen as in a radiology
viewer after ``np.flipud`` of nothing: rows run anterior to posterior and
columns the patient's right to left, exactly what SimpleITK returns for an axial
series with identity direction. Axis codes name the direction in which the
index *increases*.

Examples
--------
>>> import numpy as np
>>> vol = CTVolume.from_spacing(np.zeros((4, 5, 6)), spacing=(2.5, 0.7, 0.7))
>>> vol
CTVolume(shape=(4, 5, 6), spacing=(2.5, 0.7, 0.7) mm, orientation=SPL)
>>> vol.spacing
(2.5, 0.7, 0.7)
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import GeometryError

__all__ = [
    "CTVolume",
    "LabelVolume",
    "CANONICAL_ORIENTATION",
    "METADATA_KEYS",
    "axis_codes",
    "to_canonical",
    "same_grid",
]

logger = logging.getLogger(__name__)

#: Axis codes of every volume bmdqct returns: index 0 -> Superior, 1 -> Posterior, 2 -> Left.
CANONICAL_ORIENTATION = ("S", "P", "L")

#: Scanner and patient metadata keys of a :class:`CTVolume`; absent values are ``None``.
METADATA_KEYS = (
    "source",  # file or folder the volume was read from
    "format",  # "dicom", "nifti", "mha", "nrrd", "synthetic", ...
    "series_uid",
    "study_uid",
    "series_description",
    "modality",
    "kvp",  # tube voltage, kV
    "exposure_mas",  # tube current-time product, mAs
    "ctdi_vol_mgy",
    "manufacturer",
    "model",
    "device_serial",
    "station",
    "kernel",
    "slice_thickness_mm",
    "study_date",  # ISO date "YYYY-MM-DD"
    "acquisition_date",
    "patient_id",
    "patient_sex",
    "patient_age_years",
    "contrast_agent",
    "padding_hu",  # outside-FOV padding value that was replaced by air
    "padding_voxels",
    "resampled",  # description of any resampling done by the reader
)

# Flip between LPS (ours) and RAS (nibabel's orientation utilities).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# nibabel's labels: (negative end, positive end) of each RAS axis.
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _readonly(array: np.ndarray, dtype) -> np.ndarray:
    """Return `array` as `dtype`, read-only, without touching the caller's array."""
    out = np.asarray(array, dtype=dtype)
    out = out.view() if out is array else out
    out.setflags(write=False)
    return out


def _check_affine(affine) -> np.ndarray:
    affine = np.array(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise GeometryError(f"affine must have shape (4, 4), got {affine.shape}")
    if not np.all(np.isfinite(affine)):
        raise GeometryError("affine must be finite; got NaN or infinity")
    if not np.allclose(affine[3], [0, 0, 0, 1]):
        raise GeometryError(f"affine's last row must be (0, 0, 0, 1), got {affine[3]}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GeometryError("affine must be invertible (zero voxel volume)")
    affine.setflags(write=False)
    return affine


class _Grid:
    """Geometry shared by :class:`CTVolume` and :class:`LabelVolume`."""

    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self._array().shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Axis codes, e.g. ``('S', 'P', 'L')``; see :func:`axis_codes`."""
        return axis_codes(self.affine)

    def index_to_world(self, index) -> np.ndarray:
        """Map voxel indices, shape ``(..., 3)``, to LPS mm."""
        index = np.asarray(index, dtype=np.float64)
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, point_mm) -> np.ndarray:
        """Map LPS mm, shape ``(..., 3)``, to (fractional) voxel indices."""
        point_mm = np.asarray(point_mm, dtype=np.float64)
        inverse = np.linalg.inv(self.affine)
        return point_mm @ inverse[:3, :3].T + inverse[:3, 3]

    def _array(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class CTVolume(_Grid):
    """A CT image in Hounsfield units and the affine that places it in space.

    Parameters
    ----------
    hu : (I, J, K) array_like
        Attenuation in Hounsfield units; stored as a read-only float32 array.
    affine : (4, 4) array_like
        Maps array indices ``(i, j, k, 1)`` to patient LPS millimetres.
    metadata : mapping, optional
        Provenance and scanner information (see :data:`METADATA_KEYS`); never
        used in computations except where a function says so (calibration
        lookup by scanner and kVp). Stored as a read-only mapping.

    Examples
    --------
    >>> vol = CTVolume.from_spacing(np.full((2, 3, 4), 40.0), spacing=(3, 1, 1),
    ...                             metadata={"kvp": 120.0})
    >>> vol.shape, vol.metadata["kvp"], round(vol.voxel_volume_mm3, 6)
    ((2, 3, 4), 120.0, 3.0)
    """

    hu: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        hu = _readonly(self.hu, np.float32)
        if hu.ndim != 3:
            raise GeometryError(f"hu must be a 3-D array, got shape {hu.shape}")
        if min(hu.shape) < 1:
            raise GeometryError(f"hu must not be empty, got shape {hu.shape}")
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "affine", _check_affine(self.affine))
        object.__setattr__(self, "metadata", types.MappingProxyType(dict(self.metadata)))

    def _array(self) -> np.ndarray:
        return self.hu

    @classmethod
    def from_spacing(cls, hu, spacing, origin=(0.0, 0.0, 0.0), **kwargs) -> CTVolume:
        """Axis-aligned canonical volume from voxel spacing (mm) and origin (mm).

        The axes point to S, P, L (see the module docstring), so the affine is
        diagonal in LPS with its axes permuted: axis 0 is +z, 1 is +y, 2 is +x.
        """
        return cls(hu, _spacing_affine(spacing, origin), **kwargs)

    def with_hu(self, hu) -> CTVolume:
        """Same grid and metadata, new voxel values."""
        return replace(self, hu=hu)

    def with_metadata(self, **changes) -> CTVolume:
        """Same voxels, metadata updated with `changes`."""
        return replace(self, metadata={**self.metadata, **changes})

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (f"CTVolume(shape={self.shape}, spacing=({spacing}) mm, "
                f"orientation={''.join(self.orientation)})")


@dataclass(frozen=True, eq=False)
class LabelVolume(_Grid):
    """Integer labels on a CT grid, with a table of names; 0 is background.

    Parameters
    ----------
    labels : (I, J, K) array_like of int
        Label ids; stored as read-only int16.
    affine : (4, 4) array_like
        Same convention as :class:`CTVolume`.
    names : mapping of str to int, optional
        Name of each label id, e.g. ``{"T12": 19, "L1": 20}``.

    Examples
    --------
    >>> lab = LabelVolume.from_spacing(np.array([[[0, 20, 21]]]), spacing=(1, 1, 1),
    ...                                names={"L1": 20, "L2": 21})
    >>> int(lab.mask("L2").sum()), lab.name_of(20)
    (1, 'L1')
    """

    labels: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    names: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        raw = np.asarray(self.labels)
        if raw.dtype.kind not in "biu":
            if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
                raw = raw.astype(np.int64)
            else:
                raise GeometryError(f"labels must be integers, got dtype {raw.dtype}")
        if raw.size and (raw.min() < 0 or raw.max() > np.iinfo(np.int16).max):
            raise GeometryError(f"label ids must lie in 0..32767, got {raw.min()}..{raw.max()}")
        labels = _readonly(raw, np.int16)
        if labels.ndim != 3:
            raise GeometryError(f"labels must be a 3-D array, got shape {labels.shape}")
        names = {str(k): int(v) for k, v in dict(self.names).items()}
        if len(set(names.values())) != len(names):
            raise GeometryError(f"label names must have distinct ids, got {names}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "affine", _check_affine(self.affine))
        object.__setattr__(self, "names", types.MappingProxyType(names))

    def _array(self) -> np.ndarray:
        return self.labels

    @classmethod
    def from_spacing(cls, labels, spacing, origin=(0.0, 0.0, 0.0), **kwargs) -> LabelVolume:
        """Axis-aligned canonical label volume; see :meth:`CTVolume.from_spacing`."""
        return cls(labels, _spacing_affine(spacing, origin), **kwargs)

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of the label called `name`.

        Raises
        ------
        KeyError
            If no label has that name.
        """
        if name not in self.names:
            raise KeyError(f"no label named {name!r}; names are {sorted(self.names)}")
        return self.labels == self.names[name]

    def name_of(self, label_id: int) -> str | None:
        """Name of `label_id`, or ``None`` if it has none."""
        for name, value in self.names.items():
            if value == label_id:
                return name
        return None

    def present(self) -> list[str]:
        """Names whose label occurs at least once, in id order."""
        ids = set(np.unique(self.labels).tolist())
        return [n for n, v in sorted(self.names.items(), key=lambda kv: kv[1]) if v in ids]

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (f"LabelVolume(shape={self.shape}, spacing=({spacing}) mm, "
                f"orientation={''.join(self.orientation)}, names={len(self.names)})")


def _spacing_affine(spacing, origin) -> np.ndarray:
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise GeometryError(f"spacing must be 3 positive values in mm, got {spacing}")
    affine = np.zeros((4, 4))
    # canonical S, P, L: array axis 0 -> +z, 1 -> +y, 2 -> +x (LPS)
    affine[2, 0], affine[1, 1], affine[0, 2] = spacing
    affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    affine[3, 3] = 1.0
    return affine


def axis_codes(affine) -> tuple[str, str, str]:
    """Direction (``L``/``R``, ``P``/``A``, ``S``/``I``) in which each array index increases.

    Parameters
    ----------
    affine : (4, 4) array_like
        Voxel-to-LPS affine.

    Examples
    --------
    >>> axis_codes(np.diag([1.0, 1.0, 1.0, 1.0]))   # identity in LPS
    ('L', 'P', 'S')
    """
    import nibabel.orientations as nio

    ras = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    return tuple(nio.aff2axcodes(ras, labels=_RAS_LABELS))


def to_canonical(volume):
    """Reorder and flip array axes so that they point to S, P, L.

    Works on a :class:`CTVolume` or a :class:`LabelVolume`; voxels keep their
    world positions (the affine is updated), no interpolation happens. An oblique
    affine keeps its obliquity; the nearest axes are used.

    Examples
    --------
    >>> lps_affine = np.diag([-0.7, -0.7, 2.5, 1.0])   # array stored R, A, S
    >>> vol = CTVolume(np.arange(120.0).reshape(4, 5, 6), lps_affine)
    >>> vol.orientation
    ('R', 'A', 'S')
    >>> can = to_canonical(vol)
    >>> can.orientation, can.shape, can.spacing
    (('S', 'P', 'L'), (6, 5, 4), (2.5, 0.7, 0.7))
    """
    import nibabel.orientations as nio

    array = volume._array()
    ras = _LPS_TO_RAS @ volume.affine
    current = nio.io_orientation(ras)
    target = nio.axcodes2ornt(CANONICAL_ORIENTATION, labels=_RAS_LABELS)
    transform = nio.ornt_transform(current, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return volume
    data = np.ascontiguousarray(nio.apply_orientation(array, transform))
    affine = volume.affine @ nio.inv_ornt_aff(transform, array.shape)
    logger.debug("reoriented %s -> %s", "".join(volume.orientation), "".join(CANONICAL_ORIENTATION))
    if isinstance(volume, CTVolume):
        return replace(volume, hu=data, affine=affine)
    return replace(volume, labels=data, affine=affine)


def same_grid(a, b, *, atol_mm: float = 1e-3) -> bool:
    """True if two volumes share shape and affine (within `atol_mm`)."""
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=atol_mm)
