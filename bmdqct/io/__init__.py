"""Read CT scans and label maps into canonical volumes; write them back aligned.

:func:`load_ct` reads a DICOM series folder (searched recursively, any file names,
linked folders followed; a DICOMDIR stands for its folder),
a single multi-frame DICOM file, NIfTI (``.nii``, ``.nii.gz``, via nibabel) or
MetaImage/NRRD (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, via SimpleITK), and returns
a :class:`~bmdqct.volume.CTVolume` in Hounsfield units in the canonical orientation
``('S', 'P', 'L')`` described in :mod:`bmdqct.volume`. :func:`load_labels` reads a
label map and moves it onto a CT's grid in physical space. :func:`write_nifti`
writes either back on the grid of the original input file, so that a CT and its
masks open aligned in ITK-SNAP or 3D Slicer.

What the readers do to the data (logged at INFO, recorded in ``metadata``):

* **HU**: DICOM RescaleSlope/RescaleIntercept per slice; outside-field-of-view padding
  (any value <= ``PADDING_THRESHOLD_HU`` = -1500 HU, e.g. -2048 or -3024) set to air,
  -1000 HU, with ``metadata["padding_hu"]`` and ``["padding_voxels"]``.
* **DICOM geometry**: slice order from ImagePositionPatient; missing slices, irregular
  spacing and gantry tilt handled by the rules of ``bmdqct.io._dicom`` (at most one
  missing slice in a row is interpolated; tilt up to 30 deg is corrected in-plane;
  anything else raises :class:`~bmdqct.errors.DicomSeriesError`).
* **Obliquity** (any format): axes within ``KEEP_OBLIQUE_DEG`` (1 deg) of the
  patient axes are kept exactly (the affine stays slightly oblique; no
  interpolation); up to ``MAX_OBLIQUE_DEG`` (30 deg) the image is resampled
  (linear, fill -1000 HU) onto an axis-aligned grid with the same voxel sizes;
  beyond that it is refused with :class:`~bmdqct.errors.GeometryError`, because
  which axis is "axial" becomes ambiguous.
* ``metadata["input_affine"]``, ``["input_shape"]``, ``["input_orientation"]``
  describe the grid in the file's own index order (for DICOM: column, row, slice,
  as ITK and dcm2niix write it), after any resampling above; :func:`write_nifti`
  uses them to restore that grid exactly.
"""

from ._dicom import HU_AIR, PADDING_THRESHOLD_HU, SeriesInfo, list_series
from ._dicom_write import write_dicom_series
from ._read import KEEP_OBLIQUE_DEG, MAX_OBLIQUE_DEG, load_ct, load_labels, write_nifti

__all__ = [
    "load_ct",
    "load_labels",
    "list_series",
    "SeriesInfo",
    "write_nifti",
    "write_dicom_series",
    "HU_AIR",
    "PADDING_THRESHOLD_HU",
    "KEEP_OBLIQUE_DEG",
    "MAX_OBLIQUE_DEG",
]
