"""The result types of the labelling: one body's geometry, the rib check, the labelled spine."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .._util import record_dict
from ..levels import level_index
from ..qc import QCFlag
from ..volume import LabelVolume

__all__ = ["LevelInfo", "RibCheck", "VertebraLabels"]


@dataclass(frozen=True)
class RibCheck:
    """Independent check of the level names from the ribs seen in the CT.

    Attributes
    ----------
    rib_bearing : mapping of str to bool
        For each checked body, whether ribs attach to it (a body cut by the
        scan's edge is listed only if ribs were found on it).
    lowest_rib_level : str or None
        Name the labels gave to the lowest body with ribs (None if no checked
        body has ribs).
    consistent : bool or None
        True if that body is T12 and the body below it (if labelled) has no
        ribs; None if the check cannot decide (T12/L1 not both checkable).
    reach_mm : mapping of str to (float, float)
        Lateral reach (right, left) of the ribs leaving each body's level, in
        mm beyond the body's lateral wall.
    head_mm3 : mapping of str to float
        Bone beside the posterior half of each body (rib heads), mm³.
    """

    rib_bearing: Mapping[str, bool]
    lowest_rib_level: str | None
    consistent: bool | None
    reach_mm: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    head_mm3: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe dictionary; `reach_mm` and `head_mm3` rounded to 0.1."""
        return record_dict(self, reach_mm={k: [round(x, 1) for x in v] for k, v in self.reach_mm.items()},
                           head_mm3={k: round(v, 1) for k, v in self.head_mm3.items()})


@dataclass(frozen=True)
class LevelInfo:
    """Geometry and quality of one labelled vertebral body.

    Attributes
    ----------
    level : str
        Level name, e.g. ``"L1"``.
    label_id : int
        VerSe id of the level in :attr:`VertebraLabels.labels`.
    source_class : int or None
        Segmentation class the body came from (None for an external map).
    slice_range : (int, int)
        First and last axial slice (array axis 0) holding the body.
    z_range_mm : (float, float)
        Positions of those slices' centres along the body axis, in mm.
    height_mm : float
        Height of the body along axis 0: the length over which its section
        area is at least half the largest section (robust to tilt and to
        partial-volume slivers at the endplates).
    heights_mm : (float, float, float)
        Anterior, middle and posterior heights about the body's sagittal
        midplane, in mm: mean heights along axis 0 of the body's columns over
        5-20 % and 80-95 % of its depth within +-3 mm of the midplane, and
        over 30-70 % of its depth within +-10 mm (the middle height, which
        the fracture check of :func:`bmdqct.measure` compares with the
        neighbours').
    n_voxels : int
        Size of the body mask.
    volume_mm3 : float
        ``n_voxels`` times the voxel volume.
    centroid_mm : (float, float, float)
        Centre of mass in patient LPS mm.
    partial : bool
        True if the body touches the edge of the scanned volume.
    confidence : float
        Mean class probability over the body (NaN without a confidence map).
    rib_bearing : bool or None
        Result of the rib check for this body (None if not checked).
    bbox : tuple of 3 (start, stop) or None
        Index ranges (stop exclusive) of the body's bounding box along each
        array axis; lets later steps work on the body's crop.
    probability : float
        Posterior probability of the level name from the level decoder
        (:func:`bmdqct.labeling.decode_levels`); NaN when the name was not
        decoded (an external label map's own names).
    """

    level: str
    label_id: int
    source_class: int | None
    slice_range: tuple[int, int]
    z_range_mm: tuple[float, float]
    height_mm: float
    heights_mm: tuple[float, float, float]
    n_voxels: int
    volume_mm3: float
    centroid_mm: tuple[float, float, float]
    partial: bool
    confidence: float = float("nan")
    rib_bearing: bool | None = None
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    probability: float = float("nan")

    def to_dict(self) -> dict:
        """JSON-safe dictionary (NaN `confidence` and `probability` become None)."""
        return record_dict(self)


@dataclass(frozen=True, eq=False)
class VertebraLabels:
    """Per-level vertebral bodies, their geometry and the labelling QC.

    Attributes
    ----------
    labels : LabelVolume
        One label per body on the CT grid, VerSe ids, ``names`` = {level: id}.
    levels : mapping of str to LevelInfo
        In cranio-caudal order.
    flags : tuple of QCFlag
        Findings of the labelling (partial bodies, splits, dropped fragments,
        missing classes, rib-check mismatches, ...).
    rib_check : RibCheck or None
        The rib check, if it ran.
    """

    labels: LabelVolume
    levels: Mapping[str, LevelInfo]
    flags: tuple[QCFlag, ...] = ()
    rib_check: RibCheck | None = None

    def __post_init__(self):
        ordered = dict(sorted(dict(self.levels).items(), key=lambda kv: level_index(kv[0])))
        object.__setattr__(self, "levels", types.MappingProxyType(ordered))
        object.__setattr__(self, "flags", tuple(self.flags))

    def mask(self, level: str) -> np.ndarray:
        """Boolean mask of one body; raises ``KeyError`` if the level is absent."""
        if level not in self.levels:
            raise KeyError(f"level {level!r} is not labelled; labelled levels are {list(self.levels)}")
        return self.labels.labels == self.levels[level].label_id

    def __repr__(self) -> str:
        partial = [k for k, v in self.levels.items() if v.partial]
        return (f"VertebraLabels(levels={list(self.levels)}, partial={partial}, "
                f"flags={[str(f) for f in self.flags]})")
