"""Vertebral levels from the 4-class spine segmentation, with quality checks.

The segmentation of Pan et al. (2020) has four classes (background, T1–T6,
T7–T12, L1–L2; :data:`bmdqct.levels.SEGMENTATION_CLASSES`).
:func:`label_vertebrae` turns it into one label per vertebral body, named with
**VerSe ids** (:func:`bmdqct.levels.level_id`):

* connected components of the segmentation (any class) are candidate bodies;
  a component as tall as two or more bodies is split at the disc planes (the
  slices where the cross-section narrows and the CT is darkest), all in mm;
  small fragments are dropped; bodies touching the edge of the scan are kept
  for naming but marked **partial** (they are not measured);
* a **guard** keeps only components on the vertebral column found from the
  image alone (:mod:`bmdqct.spine`), with a cortical rim, a body's size and
  bone's HU: the heart, aorta or a kidney is flagged ``non_vertebral`` and
  never named;
* the **level decoder** (:func:`decode_levels`, a hidden Markov model over the
  chain of bodies) names the bodies from all cues at once: the ribs seen beside
  each body (the lowest rib-bearing body is T12, the first T1), the network's
  class votes (weakly: one class boundary in the wrong place must not shift
  every name) and the distances between bodies (missed bodies). Each name has
  a probability; below :data:`MIN_LEVEL_PROBABILITY` it is flagged
  ``level_uncertain`` and :func:`bmdqct.measure` does not use it for a
  category. Transitional anatomy (11 or 13 rib-bearing vertebrae) is flagged
  with what was seen; a scan ending above L1 is flagged ``thoracic_only``;
* :func:`check_rib_levels` (in ``bmdqct.labeling._ribs``) remains as the
  report of which named bodies bear ribs.

:func:`vertebra_labels_from_map` does the same bookkeeping (partial bodies,
heights, rib check) for an external per-level label map such as
TotalSegmentator's, after isolating the vertebral bodies from the posterior
elements.

Geometry follows :mod:`bmdqct.volume`: canonical ``('S', 'P', 'L')`` arrays,
axis 0 is the body axis (inferior to superior), distances in mm from the
affine's spacing.
"""

from ..qc import QCFlag
from ._decode import (
    MIN_LEVEL_PROBABILITY,
    BodyCues,
    LevelDecoding,
    decode_levels,
    level_sequence,
)
from ._labels import (
    MIN_BODY_VOLUME_MM3,
    isolate_vertebral_body,
    label_vertebrae,
    level_steps,
    vertebra_labels_from_map,
)
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
    "BodyCues",
    "LevelDecoding",
    "decode_levels",
    "level_sequence",
    "MIN_LEVEL_PROBABILITY",
]
