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
  the names are never silently changed.

:func:`vertebra_labels_from_map` does the same bookkeeping (partial bodies,
heights, rib check) for an external per-level label map such as
TotalSegmentator's, after isolating the vertebral bodies from the posterior
elements.

Geometry follows :mod:`bmdqct.volume`: canonical ``('S', 'P', 'L')`` arrays,
axis 0 is the body axis (inferior to superior), distances in mm from the
affine's spacing.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .errors import GeometryError, LabelingError
from .levels import (
    CLASS_L1_L2,
    CLASS_T1_T6,
    CLASS_T7_T12,
    level_id,
    level_index,
)
from .volume import CTVolume, LabelVolume, same_grid

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

logger = logging.getLogger(__name__)

#: Components smaller than this (mm³) that do not touch the scan's edge are
#: fragments. A T1 body, the smallest measured level, is about 4,000 mm³.
MIN_BODY_VOLUME_MM3 = 1000.0

# Body heights (mm) used only to decide how many bodies a merged component
# holds when the scan offers no single body of the same class to compare with.
_PRIOR_BODY_HEIGHT_MM = {CLASS_T1_T6: 17.0, CLASS_T7_T12: 22.0, CLASS_L1_L2: 26.0}
_DISC_HEIGHT_MM = 6.0

# Level names of each class, top to bottom, and the end the names count from.
_CLASS_LEVELS = {
    CLASS_T1_T6: tuple(f"T{n}" for n in range(1, 7)),
    CLASS_T7_T12: tuple(f"T{n}" for n in range(7, 13)),
    CLASS_L1_L2: ("L1", "L2"),
}
_CLASS_ANCHOR = {CLASS_T1_T6: "bottom", CLASS_T7_T12: "bottom", CLASS_L1_L2: "top"}
_CLASS_NAME = {CLASS_T1_T6: "T1-T6", CLASS_T7_T12: "T7-T12", CLASS_L1_L2: "L1-L2"}

_FACE = ndi.generate_binary_structure(3, 1)

# Rib check: bone threshold (HU, after a 1 mm blur) and how far a rib reaches.
_BONE_HU = 200.0
_RIB_REACH_MM = 32.0      # beyond the body's lateral wall; lumbar transverse processes stay inside
# Levels the rib check looks at: T10 (enough to see 11 rib pairs) to L2 (below, the
# iliac crests lie beside the spine).
_RIB_CHECK_FIRST = "T10"
_RIB_CHECK_LAST = "L2"
_RIB_SEED_MM = 25.0       # rib necks lie behind the body's posterior half, up to this far behind its back
_RIB_ENTRY_MM = 15.0      # ribs are followed from this far beyond the lateral wall (past the pedicles)
# A short (lumbar) rib counts when it reaches this far and its head is seen beside the body:
# on synthetic scans lumbar ribs reach 21-24 mm with 830-1060 mm3 of head bone, transverse
# processes 15-24 mm with at most 530 mm3; TotalSegmentator's L2 (ts_abdomen_3mm) 18 mm, 700 mm3.
_SHORT_RIB_REACH_MM = 20.0
_RIB_HEAD_MM3 = 650.0


@dataclass(frozen=True)
class QCFlag:
    """One quality-control finding.

    Parameters
    ----------
    code : str
        Stable machine-readable code, e.g. ``"partial"``, ``"rib_mismatch"``.
    level : str or None
        The vertebral level concerned, if any.
    message : str
        A sentence for the reader of the report.

    Examples
    --------
    >>> str(QCFlag("partial", "T12", "cut by the scan's upper edge"))
    'partial:T12'
    """

    code: str
    level: str | None = None
    message: str = ""

    def __str__(self) -> str:
        return self.code if self.level is None else f"{self.code}:{self.level}"

    def to_dict(self) -> dict:
        return {"code": self.code, "level": self.level, "message": self.message}


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
        midplane (mean column heights over 5-20 %, 40-60 % and 80-95 % of its
        depth, +-3 mm about the midplane), in mm.
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

    def to_dict(self) -> dict:
        return {
            "level": self.level, "label_id": self.label_id, "source_class": self.source_class,
            "slice_range": list(self.slice_range), "z_range_mm": list(self.z_range_mm),
            "height_mm": self.height_mm, "heights_mm": list(self.heights_mm),
            "n_voxels": self.n_voxels, "volume_mm3": self.volume_mm3,
            "centroid_mm": list(self.centroid_mm), "partial": self.partial,
            "confidence": None if np.isnan(self.confidence) else self.confidence,
            "rib_bearing": self.rib_bearing,
        }


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
        return {"rib_bearing": dict(self.rib_bearing), "lowest_rib_level": self.lowest_rib_level,
                "consistent": self.consistent,
                "reach_mm": {k: [round(x, 1) for x in v] for k, v in self.reach_mm.items()},
                "head_mm3": {k: round(v, 1) for k, v in self.head_mm3.items()}}


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


# --------------------------------------------------------------------------- public functions


def label_vertebrae(volume: CTVolume, classes: LabelVolume, *, confidence=None,
                    min_volume_mm3: float = MIN_BODY_VOLUME_MM3,
                    check_ribs: bool = True) -> VertebraLabels:
    """Name each vertebral body of a 4-class spine segmentation.

    Parameters
    ----------
    volume : CTVolume
        The CT (canonical orientation); used to find disc planes when bodies
        touch and for the rib check.
    classes : LabelVolume
        Segmentation on the same grid, ids 0 background, 1 T1–T6, 2 T7–T12,
        3 L1–L2 (:data:`bmdqct.levels.SEGMENTATION_CLASSES`).
    confidence : (I, J, K) ndarray, optional
        Probability of the assigned class per voxel; its mean over a body is
        the body's ``confidence``.
    min_volume_mm3 : float, optional
        Components smaller than this that do not touch the scan's edge are
        dropped as fragments (a QC flag counts them).
    check_ribs : bool, optional
        Run the rib check (:func:`check_rib_levels`).

    Returns
    -------
    VertebraLabels

    Raises
    ------
    GeometryError
        If `classes` or `confidence` is not on the grid of `volume`.
    LabelingError
        If no vertebral body is found.

    Notes
    -----
    A class with fewer components than levels is named from its anchor end
    (the top of L1–L2, the bottom of the thoracic classes) unless that end is
    cut by the scan's edge and the other end is not, in which case it is named
    from the other end and flagged ``naming_uncertain``. Extra components
    beyond the class's levels are dropped with an ``extra_component`` flag.
    A piece of one class smaller than half the median body and touching a
    body of another class (part of a body given the wrong class) joins that
    body (``class_merged`` flag).

    Examples
    --------
    Two lumbar bodies of 24 mm, 6 mm apart, on a 2 mm grid:

    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> cls = np.zeros((40, 30, 30), np.int16)
    >>> cls[4:16, 5:25, 5:25] = 3
    >>> cls[19:31, 5:25, 5:25] = 3
    >>> ct = CTVolume.from_spacing(np.where(cls > 0, 200.0, 0.0), (2, 2, 2))
    >>> lab = label_vertebrae(ct, LabelVolume.from_spacing(cls, (2, 2, 2)), check_ribs=False)
    >>> list(lab.levels), lab.levels["L1"].slice_range, lab.levels["L1"].height_mm
    (['L1', 'L2'], (19, 30), 24.0)
    """
    _check_grid(volume, classes, "classes")
    conf = None
    if confidence is not None:
        conf = np.asarray(confidence)
        if conf.shape != volume.shape:
            raise GeometryError(f"confidence must have the CT's shape {volume.shape}, got {conf.shape}; "
                                "pass the confidence map of the same segmentation")
    cls = np.asarray(classes.labels)
    unexpected = _ids_present(cls) - {0, CLASS_T1_T6, CLASS_T7_T12, CLASS_L1_L2}
    if unexpected:
        raise LabelingError(f"segmentation classes must be 0-3 (background, T1-T6, T7-T12, L1-L2), got ids "
                            f"{sorted(unexpected)}; for a per-level label map use vertebra_labels_from_map")
    if not np.any(cls):
        raise LabelingError("no vertebral body in the segmentation (every voxel is background); "
                            "is the spine in the field of view?")
    spacing = volume.spacing
    voxel_mm3 = volume.voxel_volume_mm3
    flags: list[QCFlag] = []
    components: dict[int, list[_Crop]] = {}
    spine_box = _bbox(cls > 0, pad=(1, 1, 1))
    sub = _absorb_minority_islands(cls[spine_box], voxel_mm3, flags)
    offset = tuple(b.start for b in spine_box)
    for c in (CLASS_T1_T6, CLASS_T7_T12, CLASS_L1_L2):
        masks = _class_components(sub == c, offset, volume, spacing, voxel_mm3, min_volume_mm3, c, flags)
        if masks:
            components[c] = masks
    if not components:
        raise LabelingError("no vertebral body left after dropping fragments smaller than "
                            f"{min_volume_mm3:g} mm3; is the spine in the field of view?")
    for c in (CLASS_T7_T12, CLASS_L1_L2):
        if c not in components:
            flags.append(QCFlag("class_missing", None,
                                f"no body of class {_CLASS_NAME[c]} in the segmentation"))

    out = np.zeros(volume.shape, np.int16)
    names: dict[str, int] = {}
    infos: dict[str, LevelInfo] = {}
    for c, crops in components.items():
        for name, crop in _name_components(c, crops, components, flags):
            lid = level_id(name)
            out[crop.box][crop.mask] = lid
            names[name] = lid
            infos[name] = _level_info(name, lid, c, crop, volume, conf)
    labels = LabelVolume(out, volume.affine, names)
    _flag_gaps(infos, flags)
    for info in infos.values():
        if info.partial:
            flags.append(QCFlag("partial", info.level, "body cut by the edge of the scan; not measured"))
    return _finish(volume, labels, infos, flags, check_ribs)


def vertebra_labels_from_map(volume: CTVolume, labels: LabelVolume, *, isolate_bodies="auto",
                             min_volume_mm3: float = MIN_BODY_VOLUME_MM3,
                             check_ribs: bool = True) -> VertebraLabels:
    """Per-level bodies from an external vertebra label map (TotalSegmentator, VerSe).

    Parameters
    ----------
    volume : CTVolume
        The CT.
    labels : LabelVolume
        Label map on the CT grid whose ``names`` map level names to ids (as
        returned by ``bmdqct.io.load_labels(..., like=ct, scheme=...)``).
        Names that are not vertebral levels (organs, ribs) are ignored.
    isolate_bodies : {"auto", True, False}, optional
        Remove the posterior elements from each vertebra
        (:func:`isolate_vertebral_body`). ``"auto"`` keeps the isolated body
        when isolation removes more than 15 % of a level's voxels (a whole
        vertebra) and leaves body-only masks unchanged.
    min_volume_mm3 : float, optional
        Levels smaller than this are ignored unless they touch the scan's edge.
    check_ribs : bool, optional
        Run the rib check.

    Returns
    -------
    VertebraLabels
        VerSe ids; ``source_class`` is None.

    Raises
    ------
    GeometryError
        If `labels` is not on the grid of `volume`.
    LabelingError
        If the map holds no vertebral level.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> lab = np.zeros((20, 30, 30), np.int16)
    >>> lab[3:15, 5:25, 5:25] = 31          # TotalSegmentator id of L1
    >>> ct = CTVolume.from_spacing(np.where(lab > 0, 200.0, 0.0), (2, 2, 2))
    >>> vl = vertebra_labels_from_map(ct, LabelVolume.from_spacing(lab, (2, 2, 2), names={"L1": 31}),
    ...                               check_ribs=False)
    >>> vl.labels.names["L1"], vl.levels["L1"].height_mm
    (20, 24.0)
    """
    _check_grid(volume, labels, "labels")
    if isolate_bodies not in ("auto", True, False):
        raise ValueError(f"isolate_bodies must be 'auto', True or False, got {isolate_bodies!r}")
    present = _ids_present(np.asarray(labels.labels))
    levels = {}
    for name, lid in labels.names.items():
        try:
            level_index(name)
        except KeyError:
            continue
        if lid in present and lid != 0:
            levels[name] = lid
    if not levels:
        raise LabelingError(f"the label map holds no vertebral level (names {sorted(labels.names)[:8]}..., "
                            f"ids present {sorted(present)[:10]}); check the label scheme "
                            "(e.g. scheme='totalsegmentator' or 'verse')")
    spacing = volume.spacing
    voxel_mm3 = volume.voxel_volume_mm3
    out = np.zeros(volume.shape, np.int16)
    names: dict[str, int] = {}
    infos: dict[str, LevelInfo] = {}
    flags: list[QCFlag] = []
    raw = np.asarray(labels.labels)
    for name, lid in sorted(levels.items(), key=lambda kv: level_index(kv[0])):
        crop = _Crop.of(raw == lid, pad=1)
        if isolate_bodies is not False:
            body = isolate_vertebral_body(crop.mask, spacing)
            # a body-only mask loses a few corner voxels, a whole vertebra 30-50 %
            if isolate_bodies is True or body.sum() < 0.85 * crop.mask.sum():
                crop = _Crop(crop.box, body, crop.shape)
        n_voxels = int(crop.mask.sum())
        if n_voxels == 0:
            continue
        if n_voxels * voxel_mm3 < min_volume_mm3 and not crop.touches_edge():
            flags.append(QCFlag("fragment_dropped", name,
                                f"{name} holds only {n_voxels * voxel_mm3:.0f} mm3; ignored"))
            continue
        verse = level_id(name)
        out[crop.box][crop.mask] = verse
        names[name] = verse
        infos[name] = _level_info(name, verse, None, crop, volume, None)
        if infos[name].partial:
            flags.append(QCFlag("partial", name, "body cut by the edge of the scan; not measured"))
    if not infos:
        raise LabelingError("no vertebral body left in the label map after dropping fragments smaller "
                            f"than {min_volume_mm3:g} mm3")
    return _finish(volume, LabelVolume(out, volume.affine, names), infos, flags, check_ribs)


def isolate_vertebral_body(mask: np.ndarray, spacing, *, radius_mm: float = 9.0) -> np.ndarray:
    """Vertebral body of a whole-vertebra mask (posterior elements removed).

    An axial opening with a disc of `radius_mm` removes the pedicles, laminae
    and processes (thinner than the disc); the largest remaining 3-D
    component is the body, whose corners are then restored by an in-plane
    dilation of 0.45 `radius_mm` inside the original mask (a 3 mm stub of
    each process comes back with them).

    Parameters
    ----------
    mask : (I, J, K) bool ndarray
        One vertebra, canonical orientation.
    spacing : (3,) float
        Voxel size in mm, array order.
    radius_mm : float, optional
        Radius of the opening; half the thickness of the thickest posterior
        element to remove, and less than half the body's depth. With 9 mm the
        bodies match TotalSegmentator's body masks on ``ts_abdomen_3mm`` with
        Dice 0.935-0.95 for T12-L3 (7 mm leaves the thick pedicles of L3).

    Returns
    -------
    (I, J, K) bool ndarray

    Examples
    --------
    >>> m = np.zeros((5, 40, 40), bool)
    >>> m[:, 5:25, 10:30] = True           # 20 x 20 mm body
    >>> m[:, 25:38, 18:22] = True          # 4 mm-wide spinous process
    >>> body = isolate_vertebral_body(m, (1.0, 1.0, 1.0), radius_mm=7.0)
    >>> int(body.sum()), int(m.sum())
    (2060, 2260)
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    disc = _disc_element(radius_mm, spacing)
    box = _bbox(mask, pad=(0, disc.shape[1], disc.shape[2]))
    sub = mask[box]
    opened = ndi.binary_opening(sub, disc)
    lab, n = ndi.label(opened, _FACE)
    if n == 0:
        return mask.copy()
    sizes = ndi.sum_labels(opened, lab, np.arange(1, n + 1))
    core = lab == 1 + int(np.argmax(sizes))
    # corners cut by the opening lie within 0.41 radius of the opened shape
    # (sqrt(2) - 1 for a right-angled corner); a processes' stub of that length
    # is the price
    body = ndi.binary_dilation(core, _disc_element(0.45 * radius_mm, spacing)) & sub
    out = np.zeros_like(mask)
    out[box] = body
    return out


def check_rib_levels(volume: CTVolume, labels: VertebraLabels | LabelVolume, *,
                     bone_hu: float = _BONE_HU, reach_mm: float = _RIB_REACH_MM) -> RibCheck:
    """Find which labelled bodies bear ribs, from the bone beside them.

    For each labelled body from T10 to L2 (enough to tell 11, 12 or 13 rib
    pairs; below L2 the iliac crests lie beside the spine), bone (CT blurred
    by 1 mm, above `bone_hu`, outside the labelled bodies) in a slab from half
    a body height below to half above the body is examined on each side:

    * **reach** — bone more than 15 mm beyond the body's lateral wall (past
      the pedicles and transverse-process roots) is grouped into connected
      structures; a structure whose medial end (its top, as ribs descend
      laterally) lies beside or behind the body's posterior half within the
      body's slices belongs to this body (where two bodies' slices overlap,
      on a tilted spine, to the one whose centre is nearer); its lateral
      extent is the reach;
    * **head** — bone beside the posterior half of the body, within 12 mm of
      its lateral wall, in the body's central slices (rib heads articulate
      there; pedicles and transverse processes lie behind the body).

    A body is rib-bearing if a structure reaches more than `reach_mm` (ribs
    sweep round the chest; lumbar transverse processes end 15-24 mm beyond
    the wall on synthetic scans and ``ts_abdomen_3mm``, the ribs of T12 reach
    45-100 mm), or more than 20 mm with over 650 mm³ of head bone (a short
    lumbar rib).

    Parameters
    ----------
    volume : CTVolume
    labels : VertebraLabels or LabelVolume
        Per-level bodies (VerSe names).
    bone_hu : float, optional
        Bone threshold in HU.
    reach_mm : float, optional
        Lateral reach, beyond the body's wall, that makes a structure a rib.

    Returns
    -------
    RibCheck

    Notes
    -----
    A body counts as rib-bearing when a rib is found on at least one side.
    ``consistent`` is True when the lowest rib-bearing body is T12 and L1 (if
    checkable) has none; False when another body is the lowest rib-bearing one
    (mislabelling, or 11 / 13 rib pairs); None when T12 and L1 cannot both be
    judged.
    """
    if isinstance(labels, VertebraLabels):
        lab = labels.labels
        infos = labels.levels
    else:
        lab = labels
        infos = None
    _check_grid(volume, lab, "labels")
    spacing = np.asarray(volume.spacing)
    bearing: dict[str, bool] = {}
    reach: dict[str, tuple[float, float]] = {}
    heads: dict[str, float] = {}
    first, last = level_index(_RIB_CHECK_FIRST), level_index(_RIB_CHECK_LAST)
    raw = np.asarray(lab.labels)
    present = _ids_present(raw)
    names = sorted((n for n in lab.names if _is_level(n) and first - 1 <= level_index(n) <= last + 1
                    and lab.names[n] in present), key=level_index)
    crops = {n: _Crop.of(raw == lab.names[n]) for n in names}
    # slice extent and centroid slice of each body: a rib entering beside two bodies
    # (their extents overlap where the spine is tilted) belongs to the nearer one
    extents = {n: (int(c.box[0].start + np.nonzero(c.mask.any(axis=(1, 2)))[0][0]),
                   int(c.box[0].start + np.nonzero(c.mask.any(axis=(1, 2)))[0][-1]), float(c.centroid()[0]))
               for n, c in crops.items() if c is not None}
    for name in names:
        crop = crops[name]
        if crop is None or not first <= level_index(name) <= last:
            continue
        others = [e for n, e in extents.items() if n != name]
        right, left, head_mm3 = _rib_reach(volume, crop, raw, spacing, bone_hu, others)
        reach[name] = (right, left)
        heads[name] = head_mm3
        # a long rib, or a short one (a lumbar rib) whose head sits beside the body
        found = max(right, left) > reach_mm or (max(right, left) > _SHORT_RIB_REACH_MM
                                                and head_mm3 > _RIB_HEAD_MM3)
        # a body cut by the scan's edge may hide its rib heads: count only a find
        if found or not crop.touches_edge():
            bearing[name] = found
    lowest = None
    for name in sorted(bearing, key=level_index, reverse=True):
        if bearing[name]:
            lowest = name
            break
    consistent: bool | None
    if lowest is None:
        consistent = False if any(level_index(n) <= level_index("T12") for n in bearing) else None
    elif lowest == "T12":
        consistent = True if "L1" in bearing or "L2" in bearing else None
    elif level_index(lowest) > level_index("T12"):
        consistent = False
    else:
        consistent = False if "T12" in bearing else None
    return RibCheck(types.MappingProxyType(bearing), lowest, consistent, types.MappingProxyType(reach),
                    types.MappingProxyType(heads))


# --------------------------------------------------------------------------- internals


def level_steps(upper: str, lower: str) -> int:
    """Vertebrae from `upper` down to `lower` (T12 -> L1 is 1: T13 counts only if named).

    Examples
    --------
    >>> level_steps("T12", "L1"), level_steps("T11", "L2"), level_steps("T13", "L1")
    (1, 3, 1)
    """
    def rank(name):
        i = level_index(name)
        return i - 1 if i > level_index("T13") and "T13" not in (upper, lower) else i

    return rank(lower) - rank(upper)


def _ids_present(labels: np.ndarray) -> set[int]:
    """Label ids that occur in `labels` (0 included); sorts only the nonzero bounding box."""
    labels = np.asarray(labels)
    nonzero = labels != 0
    if not nonzero.any():
        return {0}
    return set(np.unique(labels[_bbox(nonzero)]).tolist()) | {0}


def _is_level(name: str) -> bool:
    try:
        level_index(name)
    except KeyError:
        return False
    return True


def _check_grid(volume, labels, what: str) -> None:
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    if not isinstance(labels, LabelVolume):
        raise TypeError(f"{what} must be a LabelVolume, got {type(labels).__name__}")
    if not same_grid(volume, labels):
        differs = "shape" if labels.shape != volume.shape else "affine"
        raise GeometryError(f"{what} must lie on the CT's grid (shape {volume.shape}); got shape "
                            f"{labels.shape} (different {differs}); resample them with "
                            "bmdqct.preprocess.resample_like(labels, ct)")


def _bbox(mask: np.ndarray, pad=(0, 0, 0)) -> tuple[slice, ...]:
    out = []
    for axis, p in enumerate(pad):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.nonzero(mask.any(axis=other))[0]
        out.append(slice(max(int(idx[0]) - p, 0), min(int(idx[-1]) + 1 + p, mask.shape[axis])))
    return tuple(out)


def _disc_element(radius_mm: float, spacing) -> np.ndarray:
    ry = max(int(np.floor(radius_mm / spacing[1])), 1)
    rx = max(int(np.floor(radius_mm / spacing[2])), 1)
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    disc = (yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2 <= radius_mm ** 2 + 1e-9
    return disc[None]


class _Crop:
    """A mask stored as its bounding box inside a grid of `shape`."""

    __slots__ = ("box", "mask", "shape")

    def __init__(self, box, mask, shape):
        self.box = tuple(box)
        self.mask = mask
        self.shape = tuple(shape)

    @classmethod
    def of(cls, full: np.ndarray, pad: int = 0):
        """Crop a full-grid mask to its bounding box (+ `pad` voxels); None if empty."""
        if not full.any():
            return None
        box = _bbox(full, pad=(pad, pad, pad))
        return cls(box, full[box], full.shape)

    @property
    def offset(self) -> np.ndarray:
        return np.array([b.start for b in self.box], dtype=np.float64)

    def full(self) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        out[self.box] = self.mask
        return out

    def centroid(self) -> np.ndarray:
        """Centre of mass in full-grid voxel indices."""
        return np.array(ndi.center_of_mass(self.mask)) + self.offset

    def edge_sides(self) -> tuple[bool, bool]:
        """(touches the inferior end, touches the superior end) of the scan."""
        lo = self.box[0].start == 0 and self.mask[0].any()
        hi = self.box[0].stop == self.shape[0] and self.mask[-1].any()
        return bool(lo), bool(hi)

    def touches_edge(self) -> bool:
        for axis in range(3):
            first = [slice(None)] * 3
            last = [slice(None)] * 3
            first[axis], last[axis] = 0, -1
            if self.box[axis].start == 0 and self.mask[tuple(first)].any():
                return True
            if self.box[axis].stop == self.shape[axis] and self.mask[tuple(last)].any():
                return True
        return False


def _area_profile(mask: np.ndarray) -> np.ndarray:
    return mask.sum(axis=(1, 2)).astype(np.float64)


def _fwhm_length(profile: np.ndarray, dz: float) -> float:
    """Length (mm) over which `profile` is at least half its maximum, interpolated."""
    if profile.max() <= 0:
        return 0.0
    half = 0.5 * profile.max()
    above = np.nonzero(profile >= half)[0]
    lo, hi = int(above[0]), int(above[-1])
    # each slice stands for dz; interpolate the crossing inside the boundary slices
    length = (hi - lo + 1) * dz
    for edge, outside in ((lo, lo - 1), (hi, hi + 1)):
        if 0 <= outside < profile.size and profile[outside] > 0:
            # fraction of the outside slice that is above half maximum (linear)
            frac = np.clip((profile[outside] - half) / max(profile[edge] - half, 1e-9), 0, 1)
            length += frac * dz * 0.5
    return float(length)


def _absorb_minority_islands(sub: np.ndarray, voxel_mm3: float, flags) -> np.ndarray:
    """Give small one-class pieces that touch another class's body that class.

    A segmentation network sometimes paints part of a body with the class of
    the next one (the T12/L1 boundary); left alone, the piece would count as
    a body of its own and shift the names of its class.
    """
    comps = []
    for c in (CLASS_T1_T6, CLASS_T7_T12, CLASS_L1_L2):
        lab, _ = ndi.label(sub == c, _FACE)
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is not None:
                comps.append((c, box, lab[box] == i))
    if len(comps) < 2:
        return sub
    sizes = np.array([m.sum() for _, _, m in comps], dtype=float)
    limit = 0.5 * float(np.median(sizes[sizes * voxel_mm3 >= MIN_BODY_VOLUME_MM3])) \
        if np.any(sizes * voxel_mm3 >= MIN_BODY_VOLUME_MM3) else 0.0
    out = sub.copy()
    merged = 0
    for (c, box, mask), size in zip(comps, sizes):
        if size >= limit:
            continue
        grown = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, sub.shape))
        local = np.zeros(tuple(g.stop - g.start for g in grown), bool)
        local[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = mask
        ring = ndi.binary_dilation(local, _FACE) & ~local
        values = out[grown][ring]
        values = values[(values != 0) & (values != c)]
        if values.size:
            target = int(np.bincount(values).argmax())
            region = out[grown]
            region[local] = target
            merged += 1
    if merged:
        flags.append(QCFlag("class_merged", None, f"{merged} small piece(s) of one class touching a body of "
                                                  "another class were merged into it"))
    return out


def _class_components(mask, offset, volume, spacing, voxel_mm3, min_volume_mm3, c, flags) -> list[_Crop]:
    """Connected bodies of one class (`mask` is a crop at `offset`), fragments dropped, merged split."""
    if not mask.any():
        return []
    lab, n = ndi.label(mask, _FACE)
    objects = ndi.find_objects(lab)
    bodies: list[_Crop] = []
    dropped = 0
    for i, box in enumerate(objects):
        if box is None:
            continue
        full_box = tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, offset))
        crop = _Crop(full_box, lab[box] == i + 1, volume.shape)
        size = float(crop.mask.sum()) * voxel_mm3
        if size < min_volume_mm3:
            # keep a sliver cut by the scan's edge (it matters for naming) unless tiny
            if crop.touches_edge() and size >= 0.2 * min_volume_mm3:
                bodies.append(crop)
            elif size >= 0.1 * min_volume_mm3:
                dropped += 1          # specks below a tenth of the limit go unmentioned
            continue
        bodies.append(crop)
    if dropped:
        flags.append(QCFlag("fragment_dropped", None,
                            f"{dropped} fragment(s) of class {_CLASS_NAME[c]} smaller than "
                            f"{min_volume_mm3:g} mm3 dropped"))
    if not bodies:
        return []
    dz = spacing[0]
    heights = [_fwhm_length(_area_profile(b.mask), dz) for b in bodies]
    prior = _PRIOR_BODY_HEIGHT_MM[c]
    single = [h for h, b in zip(heights, bodies) if 0.6 * prior <= h <= 1.4 * prior and not b.touches_edge()]
    ref = float(np.median(single)) if single else prior
    out = []
    for body, height in zip(bodies, heights):
        count = int(round((height + _DISC_HEIGHT_MM) / (ref + _DISC_HEIGHT_MM)))
        if count >= 2:
            parts = _split_body(body, count, volume, dz)
            flags.append(QCFlag("split", None,
                                f"a {height:.0f} mm tall component of class {_CLASS_NAME[c]} was split into "
                                f"{len(parts)} bodies at the disc planes"))
            out.extend(parts)
        else:
            out.append(body)
    return out


def _split_body(crop: _Crop, count: int, volume: CTVolume, dz: float) -> list[_Crop]:
    """Cut a component holding `count` bodies at the `count - 1` disc planes.

    The cut slices are the minima, near the evenly spaced positions, of
    normalised section area plus normalised mean CT of the section: a disc is
    narrower than the bodies or darker than their endplates, usually both.
    The cut slice itself (the disc) is assigned to no body.
    """
    mask = crop.mask
    area = _area_profile(mask)
    hu = np.asarray(volume.hu[crop.box])
    n = mask.shape[0]
    mean_hu = np.array([hu[k][mask[k]].mean() if area[k] else 0.0 for k in range(n)])
    mean_hu = ndi.uniform_filter1d(mean_hu, size=max(1, int(round(2.0 / dz))) | 1)
    score = area / max(area.max(), 1.0)
    spread = mean_hu.max() - mean_hu.min()
    if spread > 0:
        score = score + (mean_hu - mean_hu.min()) / spread
    step = n / count
    window = max(1, int(round(0.3 * step)))
    cuts = []
    for i in range(1, count):
        centre = int(round(i * step)) - (1 if n % count == 0 else 0)
        lo, hi = max(centre - window, 1), min(centre + window, n - 2)
        if hi < lo:
            continue
        cuts.append(lo + int(np.argmin(score[lo:hi + 1])))
    edges = [-1, *cuts, n]
    parts = []
    for a, b in zip(edges[:-1], edges[1:]):
        part = np.zeros_like(mask)
        part[a + 1:b] = mask[a + 1:b]
        if part.any():
            parts.append(_Crop(crop.box, part, crop.shape))
    return parts


def _name_components(c, crops, components, flags):
    """Yield (level name, crop) for the components of class `c`."""
    names = _CLASS_LEVELS[c]
    order = sorted(crops, key=lambda m: -m.centroid()[0])  # top (superior) first
    anchor = _CLASS_ANCHOR[c]
    top_cut = order[0].edge_sides()[1]
    bottom_cut = order[-1].edge_sides()[0]
    class_above = any(k < c for k in components) if c != CLASS_T1_T6 else False
    class_below = any(k > c for k in components)
    if len(order) > len(names):
        extra = len(order) - len(names)
        flags.append(QCFlag("extra_component", None,
                            f"class {_CLASS_NAME[c]} has {len(order)} bodies for {len(names)} levels; "
                            f"the {extra} farthest from the {anchor} were dropped"))
        order = order[:len(names)] if anchor == "top" else order[-len(names):]
    if len(order) < len(names):
        if anchor == "top":
            anchored = class_above or not top_cut
            other_ok = not bottom_cut
        else:
            anchored = class_below or not bottom_cut
            other_ok = class_above or not top_cut
        if not anchored and other_ok:
            anchor = "bottom" if anchor == "top" else "top"
            flags.append(QCFlag("naming_uncertain", None,
                                f"class {_CLASS_NAME[c]}: the scan cuts the end its names count from; "
                                f"named from the {anchor} instead"))
        elif not anchored:
            flags.append(QCFlag("naming_uncertain", None,
                                f"class {_CLASS_NAME[c]}: the scan cuts both ends; names are a guess"))
    if anchor == "top":
        pairs = zip(names, order)
    else:
        pairs = zip(names[::-1], order[::-1])
    for name, crop in pairs:
        yield name, crop


def _level_info(name, lid, c, crop: _Crop, volume: CTVolume, conf) -> LevelInfo:
    spacing = volume.spacing
    dz = spacing[0]
    mask = crop.mask
    ks = np.nonzero(mask.any(axis=(1, 2)))[0] + crop.box[0].start
    k0, k1 = int(ks[0]), int(ks[-1])
    profile = _area_profile(mask)
    centroid_local = np.array(ndi.center_of_mass(mask))
    centroid_vox = centroid_local + crop.offset
    centroid_mm = volume.index_to_world(centroid_vox)
    z0 = float(volume.index_to_world([k0, centroid_vox[1], centroid_vox[2]])[2])
    z1 = float(volume.index_to_world([k1, centroid_vox[1], centroid_vox[2]])[2])
    n = int(mask.sum())
    confidence = float(np.mean(conf[crop.box][mask])) if conf is not None else float("nan")
    return LevelInfo(
        level=name, label_id=int(lid), source_class=c, slice_range=(k0, k1),
        z_range_mm=(round(z0, 3), round(z1, 3)),
        height_mm=round(_fwhm_length(profile, dz), 3),
        heights_mm=_sagittal_heights(mask, centroid_local, spacing),
        n_voxels=n, volume_mm3=round(n * volume.voxel_volume_mm3, 3),
        centroid_mm=tuple(round(float(v), 3) for v in centroid_mm),
        partial=crop.touches_edge(), confidence=confidence)


def _sagittal_heights(mask, centroid_vox, spacing) -> tuple[float, float, float]:
    """Anterior, middle, posterior body heights (mm) about the sagittal midplane.

    Column heights (voxels along axis 0 times the slice spacing) are averaged
    over +-3 mm of the midplane and over three bands of the body's depth:
    5-20 % (anterior), 40-60 % (middle) and 80-95 % (posterior); the bands
    avoid the rounded front and back edges.
    """
    k = int(round(centroid_vox[2]))
    half = max(int(round(3.0 / spacing[2])), 0)
    slab = mask[:, :, max(k - half, 0):k + half + 1]
    column_height = slab.sum(axis=0).astype(float).mean(axis=1) * spacing[0]
    rows = np.nonzero(column_height > 0)[0]
    if rows.size == 0:
        return (0.0, 0.0, 0.0)
    j0, depth = int(rows[0]), int(rows[-1] - rows[0] + 1)

    def band(lo, hi):
        a = j0 + int(round(lo * depth))
        b = max(j0 + int(round(hi * depth)), a + 1)
        return round(float(column_height[a:b].mean()), 3)

    return band(0.05, 0.20), band(0.40, 0.60), band(0.80, 0.95)


def _flag_gaps(infos: Mapping[str, LevelInfo], flags: list[QCFlag]) -> None:
    """Flag consecutive labelled levels whose centres lie far apart (a missed body)."""
    names = sorted(infos, key=level_index)
    if len(names) < 2:
        return
    z = {n: infos[n].centroid_mm[2] for n in names}
    pitch = []
    for a, b in zip(names[:-1], names[1:]):
        steps = level_steps(a, b)
        if steps > 0:
            pitch.append(abs(z[a] - z[b]) / steps)
    if not pitch:
        return
    ref = float(np.median(pitch))
    for a, b in zip(names[:-1], names[1:]):
        steps = level_steps(a, b)
        gap = abs(z[a] - z[b])
        if steps == 1 and gap > 1.6 * ref:
            flags.append(QCFlag("gap", b, f"{a} and {b} lie {gap:.0f} mm apart ({ref:.0f} mm is typical); "
                                          "a body may be missing and the names below it shifted"))
        if steps == 1 and gap < 0.5 * ref:
            flags.append(QCFlag("overlap", b, f"{a} and {b} lie only {gap:.0f} mm apart"))


def _rib_reach(volume: CTVolume, body: _Crop, labels: np.ndarray, spacing, bone_hu, others=()):
    """(right reach, left reach, rib-head bone) of one body, in mm and mm³.

    The reach is how far (mm beyond the lateral wall) a rib leaving the body's
    level runs.

    Bone lateral to the transverse-process zone (more than ``_RIB_ENTRY_MM``
    beyond the body's lateral wall) is grouped into connected structures; a
    structure counts for this body if its medial end (where it enters that
    zone, beside or behind the body's posterior half; its top, as ribs descend
    laterally) lies within the body's own slices, so a rib that descends past
    the next vertebra is not counted there. The reach is the largest lateral
    extent of such a structure.
    """
    mask = body.mask
    k_off, j_off, c_off = (int(v) for v in body.offset)
    area = _area_profile(mask)
    ks = np.nonzero(area)[0] + k_off
    height = int(ks[-1] - ks[0] + 1)
    k0 = max(int(ks[0]) - height // 2, 0)
    k1 = min(int(ks[-1]) + height // 2, volume.shape[0] - 1)
    proj = mask.any(axis=0)
    rows = np.nonzero(proj.any(axis=1))[0] + j_off
    cols = np.nonzero(proj.any(axis=0))[0] + c_off
    j_front, j_back = int(rows[0]), int(rows[-1])
    k_right, k_left = int(cols[0]), int(cols[-1])  # axis 2 runs right -> left
    cj = float(ndi.center_of_mass(mask)[1]) + j_off
    dy, dx = float(spacing[1]), float(spacing[2])
    # a crop: the slab, 10 mm in front of the body to 60 mm behind it, 110 mm
    # beyond each lateral wall; the blur gets 3 voxels of padding
    pad = 3
    shape = volume.shape
    region = (slice(max(k0 - pad, 0), min(k1 + 1 + pad, shape[0])),
              slice(max(j_front - int(10 / dy) - pad, 0), min(j_back + int(60 / dy) + pad, shape[1])),
              slice(max(k_right - int(110 / dx) - pad, 0), min(k_left + int(110 / dx) + pad, shape[2])))
    blurred = ndi.gaussian_filter(np.asarray(volume.hu[region], np.float32),
                                  sigma=1.0 / np.asarray(spacing), mode="nearest")
    z_first = k0 - region[0].start
    inner = (slice(z_first, k1 + 1 - region[0].start), slice(None), slice(None))
    bone = blurred[inner] > bone_hu
    bone &= ~ndi.binary_dilation(labels[region][inner] > 0, _disc_element(2.0, spacing))
    jj = np.arange(region[1].start, region[1].start + bone.shape[1])[:, None]
    kk = np.arange(region[2].start, region[2].start + bone.shape[2])[None, :]
    behind = (jj >= cj) & (jj <= j_back + _RIB_SEED_MM / dy)
    zz = np.arange(k0, k1 + 1)
    in_body = (zz >= ks[0]) & (zz <= ks[-1])
    own_centre = float(body.centroid()[0])
    # rib-head zone: beside the posterior half of the body (not behind it, where the
    # pedicles are), within 12 mm outside its lateral wall, row by row
    rows_local = np.arange(bone.shape[1]) + region[1].start
    walls = proj[np.clip(rows_local - j_off, 0, proj.shape[0] - 1)]
    walls[(rows_local < j_off) | (rows_local >= j_off + proj.shape[0])] = False
    score_zone = np.zeros(bone.shape[1:], bool)
    outside_px = int(round(12.0 / dx))
    for r in np.nonzero((rows_local >= cj) & (rows_local <= j_back) & walls.any(axis=1))[0]:
        cols = np.nonzero(walls[r])[0] + c_off - region[2].start
        score_zone[r, max(cols[0] - outside_px, 0):max(cols[0], 0)] = True
        score_zone[r, cols[-1] + 1:cols[-1] + 1 + outside_px] = True
    reach = []
    for side in ("right", "left"):
        beyond = (k_right - kk) * dx if side == "right" else (kk - k_left) * dx   # mm outside the wall
        lateral = bone & (beyond >= _RIB_ENTRY_MM)[None]
        # thin ribs crossing thick slices break into pieces: bridge one-slice gaps along z
        bridged = ndi.binary_dilation(lateral, np.ones((3, 1, 1), bool)) if spacing[0] > 1.5 else lateral
        lab, n = ndi.label(bridged, ndi.generate_binary_structure(3, 3))
        lab = np.where(lateral, lab, 0)
        best = 0.0
        if n:
            entry = (lab > 0) & (behind & (beyond < _RIB_ENTRY_MM + 6.0))[None]
            for s, box in enumerate(ndi.find_objects(lab), start=1):
                comp = lab[box] == s
                at_entry = entry[box] & comp
                if not at_entry.any():
                    continue        # does not come from beside the spine (a rib shaft passing by)
                # ribs descend as they run laterally: the top of the entry is nearest the head
                z_entry = int(np.nonzero(at_entry)[0].max()) + box[0].start
                if not in_body[z_entry] or _nearer_other(z_entry + k0, own_centre, others):
                    continue        # a rib of another vertebra
                far = np.where(comp.any(axis=0), np.broadcast_to(beyond, bone.shape[1:])[box[1:]], -np.inf)
                logger.debug("rib candidate %s: enters at slice %d (body slices %d-%d), reaches %.0f mm",
                             side, z_entry + k0, ks[0], ks[-1], float(far.max()))
                best = max(best, float(far.max()))
        reach.append(best)
    # head bone in the central slices of the body's core
    core = np.nonzero(area >= 0.5 * area.max())[0] + k_off
    trim = int(0.15 * core.size)
    zc = (zz >= core[0] + trim) & (zz <= core[-1] - trim)
    head_mm3 = float(np.sum(bone[zc][:, score_zone])) * float(np.prod(spacing))
    return (reach[0], reach[1], head_mm3)


def _nearer_other(z: int, own_centre: float, others) -> bool:
    """True if slice `z` lies within another body's extent whose centre is nearer."""
    return any(lo <= z <= hi and abs(z - centre) < abs(z - own_centre) for lo, hi, centre in others)


def _finish(volume, labels, infos, flags, check_ribs) -> VertebraLabels:
    rib = None
    if check_ribs:
        rib = check_rib_levels(volume, labels)
        infos = {k: _with_rib(v, rib.rib_bearing.get(k)) for k, v in infos.items()}
        flags.extend(_rib_flags(rib))
    vl = VertebraLabels(labels, infos, tuple(flags), rib)
    logger.info("labelled %s; flags %s", list(vl.levels), [str(f) for f in vl.flags])
    return vl


def _with_rib(info: LevelInfo, bearing) -> LevelInfo:
    from dataclasses import replace

    return replace(info, rib_bearing=None if bearing is None else bool(bearing))


def _rib_flags(rib: RibCheck) -> list[QCFlag]:
    if rib.consistent is not False:
        return []
    if rib.lowest_rib_level is None:
        return [QCFlag("rib_mismatch", "T12",
                       "no rib found on T12 or above: 11 rib pairs, or the levels are mislabelled; "
                       "check the level names")]
    lowest = rib.lowest_rib_level
    if level_index(lowest) > level_index("T12"):
        message = (f"the lowest rib-bearing vertebra is labelled {lowest}, not T12: 13 rib pairs "
                   "(transitional anatomy), or the levels are shifted by one; check the level names")
    else:
        message = (f"the lowest rib-bearing vertebra is labelled {lowest}, not T12: 11 rib pairs "
                   "(transitional anatomy), or the levels are shifted; check the level names")
    return [QCFlag("rib_mismatch", lowest, message)]
