"""Vertebral levels from the 4-class spine segmentation, with quality checks.

The segmentation of Pan et al. (2020) has four classes (background, T1–T6,
T7–T12, L1–L2; :data:`bmdqct.levels.SEGMENTATION_CLASSES`).
:func:`label_vertebrae` turns it into one label per vertebral body, named with
**VerSe ids** (:func:`bmdqct.levels.level_id`):

* connected components of each class (face connectivity) are the bodies; the
  L1–L2 class is named ``L1``, ``L2`` from the top down, the thoracic classes
  from the bottom up (T7–T12: ``T12``, ``T11``, …; T1–T6: ``T6``, ``T5``, …);
* a component as tall as two or more bodies is split at the disc planes (the
  slices where the cross-section narrows and the CT is darkest), all in mm;
* small fragments are dropped; bodies touching the edge of the scan are kept
  for naming but marked **partial** (they are not measured);
* an independent check of the names: the lowest vertebra with ribs attached
  (rib heads and necks beside the body, a bone reaching far laterally) should
  be T12. A mismatch — mislabelling, or 11 or 13 rib pairs — raises a QC flag;
  the names are never silently changed (:func:`check_rib_levels`, written in
  ``bmdqct.labeling._ribs`` and exported here).

:func:`vertebra_labels_from_map` does the same bookkeeping (partial bodies,
heights, rib check) for an external per-level label map such as
TotalSegmentator's, after isolating the vertebral bodies from the posterior
elements.

Geometry follows :mod:`bmdqct.volume`: canonical ``('S', 'P', 'L')`` arrays,
axis 0 is the body axis (inferior to superior), distances in mm from the
affine's spacing.
"""

from ..qc import QCFlag
from ._labels import MIN_BODY_VOLUME_MM3, isolate_vertebral_body, label_vertebrae, level_steps, vertebra_labels_from_map
from ._ribs import check_rib_levels
from ._types import LevelInfo, RibCheck, VertebraLabels

__all__ = [
    "QCFlag",
    "LevelInfo",
    "RibCheck",
    "VertebraLabels",
    "label_vertebrae",
    "vertebra_labels_from_map",
    "check_rib_levels",
    "isolate_vertebral_body",
    "level_steps",
    "MIN_BODY_VOLUME_MM3",
]
