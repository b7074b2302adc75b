"""The rib check of :mod:`bmdqct.labeling`: which labelled bodies bear ribs.

Ribs articulate with T1-T12, so the lowest rib-bearing vertebra should be the
one the labels call T12; a mismatch (mislabelling, or 11 or 13 rib pairs) is
a QC flag, never a rename. :func:`check_rib_levels` looks at the bone beside
each body from T10 to L2 in the CT itself, independently of the
segmentation. Import it from :mod:`bmdqct.labeling`.
"""

from __future__ import annotations

import logging
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

from .._util import release_freed_memory, worker_threads
from ..levels import level_index
from ..qc import QCFlag
from ..volume import CTVolume, LabelVolume
from ._geometry import (
    _area_profile,
    _bbox,
    _check_grid,
    _crop_of,
    _disc_element,
    _is_level,
    _level_boxes,
)
from ._types import RibCheck, VertebraLabels

__all__ = ["RibCheck", "check_rib_levels"]

logger = logging.getLogger(__name__)

# Rib check: bone threshold (HU, after a 1 mm blur) and how far a rib reaches.
_BONE_HU = 200.0
_RIB_REACH_MM = 32.0      # beyond the body's lateral wall; lumbar transverse processes stay inside
# Levels the rib check looks at: T10 (enough to see 11 rib pairs) to L2 (below, the
# iliac crests lie beside the spine).
_RIB_CHECK_FIRST = "T10"
_RIB_CHECK_LAST = "L2"
_RIB_SEED_MM = 25.0       # rib necks lie behind the body's posterior half, up to this far behind its back
_RIB_DISC_MM = 8.0        # a rib entering up to this far beyond its body's mask (in the disc) can be its own
_RIB_ENTRY_MM = 15.0      # ribs are followed from this far beyond the lateral wall (past the pedicles)
# A short (lumbar) rib counts when it reaches this far and its head is seen beside the body:
# on synthetic scans lumbar ribs reach 21-24 mm with 830-1060 mm3 of head bone, transverse
# processes 15-24 mm with at most 530 mm3; TotalSegmentator's L2 (ts_abdomen_3mm) 18 mm, 700 mm3.
_SHORT_RIB_REACH_MM = 20.0
_RIB_HEAD_MM3 = 650.0


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
    lumbar rib) directly below a rib-bearing body: ribs form one series, and
    a short "rib" below a body without ribs is a transverse process beside an
    under-segmented body.

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

    Examples
    --------
    T12 with a rib on each side above L1 without (2 mm slices, 1 mm pixels):

    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> lab = np.zeros((30, 70, 160), np.int16)
    >>> lab[2:13, 10:40, 60:100] = 20
    >>> lab[17:28, 10:40, 60:100] = 19
    >>> hu = np.where(lab > 0, 250.0, 0.0)
    >>> hu[23:26, 30:35, 5:60] = hu[23:26, 30:35, 100:155] = 700.0
    >>> rc = check_rib_levels(CTVolume.from_spacing(hu, (2, 1, 1)),
    ...                       LabelVolume.from_spacing(lab, (2, 1, 1), names={"T12": 19, "L1": 20}))
    >>> dict(rc.rib_bearing), rc.lowest_rib_level, rc.consistent, rc.reach_mm["T12"]
    ({'T12': True, 'L1': False}, 'T12', True, (56.0, 56.0))
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
    if infos is not None and all(i.bbox is not None for i in infos.values()):
        boxes = {i.label_id: tuple(slice(a, b) for a, b in i.bbox) for i in infos.values()}
    else:
        boxes = _level_boxes(raw)
    names = sorted((n for n in lab.names if _is_level(n) and first - 1 <= level_index(n) <= last + 1
                    and lab.names[n] in boxes), key=level_index)
    crops = {n: _crop_of(raw, lab.names[n], boxes[lab.names[n]]) for n in names}
    # slice extent and centroid slice of each body: a rib entering beside two bodies
    # (their extents overlap where the spine is tilted) belongs to the nearer one
    extents = {n: (int(c.box[0].start + np.nonzero(c.mask.any(axis=(1, 2)))[0][0]),
                   int(c.box[0].start + np.nonzero(c.mask.any(axis=(1, 2)))[0][-1]), float(c.centroid()[0]))
               for n, c in crops.items()}
    checked = [n for n in names if first <= level_index(n) <= last]
    found_reach = dict(zip(checked, _rib_reaches(volume, [crops[n] for n in checked], raw, spacing, bone_hu,
                                                 [extents[n] for n in names],
                                                 own=[names.index(n) for n in checked])))
    for name in checked:
        right, left, head_mm3, _ = found_reach[name]
        reach[name] = (right, left)
        heads[name] = head_mm3
        # a long rib, or a short one (a lumbar rib) whose head sits beside the body;
        # ribs form one series, so a short rib continues it (the 13th rib of transitional
        # anatomy): below a body without ribs it is a transverse process beside an
        # under-segmented body (`names` run top-down, so the body above is judged)
        above = next(reversed(bearing), None)
        found = max(right, left) > reach_mm or (
            max(right, left) > _SHORT_RIB_REACH_MM and head_mm3 > _RIB_HEAD_MM3
            and (above is None or bearing[above]))
        # a body cut by the scan's edge, or next to it, may hide its ribs: count only a find
        if found or not _ribs_may_be_cut(crops[name]):
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


def _rib_reaches(volume: CTVolume, bodies, labels: np.ndarray, spacing, bone_hu, extents, own=None):
    """:func:`_rib_reach` of each of `bodies`, computed on every usable core.

    `extents` holds the (first slice, last slice, centroid slice) of every body of the
    column; body ``k`` is ``extents[own[k]]`` (default: ``own[k] = k``) and the others
    are its neighbours. scipy.ndimage releases the GIL, so threads share the work.
    """
    own = range(len(bodies)) if own is None else own

    def one(k):
        others = [e for j, e in enumerate(extents) if j != own[k]]
        return _rib_reach(volume, bodies[k], labels, spacing, bone_hu, others)

    if len(bodies) < 2:
        return [one(k) for k in range(len(bodies))]
    with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
        reaches = list(pool.map(one, range(len(bodies))))
    release_freed_memory()  # what the worker threads' arenas keep
    return reaches


def _rib_reach(volume: CTVolume, body, labels: np.ndarray, spacing, bone_hu, others=()):
    """(right reach, left reach, rib-head bone, (right cut, left cut)) of one body, in mm and mm³.

    The reach is how far (mm beyond the lateral wall) a rib leaving the body's
    level runs. A side is *cut* when the structure that gives its reach runs into
    the scan's first or last slice: a rib descends as it runs laterally, so near
    the scan's end its course leaves the scan and its reach is only a lower bound.

    Bone lateral to the transverse-process zone (more than ``_RIB_ENTRY_MM``
    beyond the body's lateral wall) is grouped into connected structures; a
    structure counts for this body if its medial end (where it enters that
    zone, beside or behind the body's posterior half; the centre of that entry, as
    the neck rises to the tubercle and a rib's upper edge often lies in the body
    above) lies within the body's own slices, or in the gap to a neighbouring body
    nearer this body's end than the neighbour's (a tie goes to the lower body: a
    mid-thoracic rib head articulates with the disc above its own vertebra), at
    most ``_RIB_DISC_MM`` beyond the mask (a mask that misses the end of its body
    must not turn its rib into "no rib", the anchor of every lumbar name). So a rib
    that descends past the next vertebra is not counted there. The reach is the
    largest lateral extent of such a structure.
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
    # bone of the labelled bodies (grown by 2 mm) is not rib: dilated on the bodies' box only
    bodies = labels[region][inner] > 0
    if bodies.any():
        disc = _disc_element(2.0, spacing)
        near = _bbox(bodies, pad=(0, disc.shape[1] // 2, disc.shape[2] // 2))
        bone[near] &= ~ndi.binary_dilation(bodies[near], disc)
    jj = np.arange(region[1].start, region[1].start + bone.shape[1])[:, None]
    kk = np.arange(region[2].start, region[2].start + bone.shape[2])[None, :]
    behind = (jj >= cj) & (jj <= j_back + _RIB_SEED_MM / dy)
    zz = np.arange(k0, k1 + 1)
    # an entry between two bodies (a mid-thoracic rib head articulates with the disc; a mask
    # may miss the end of its body) belongs to the body whose end is nearer, a tie to the
    # lower one, at most _RIB_DISC_MM beyond the mask
    gap = int(round(_RIB_DISC_MM / float(spacing[0])))
    cranial, caudal = int(ks[-1]) + gap, int(ks[0]) - gap
    above = [lo for lo, _, _ in others if lo > ks[-1]]
    below = [hi for _, hi, _ in others if hi < ks[0]]
    if above:
        cranial = min(cranial, int(ks[-1]) + (min(above) - int(ks[-1])) // 2)
    if below:
        caudal = max(caudal, (int(ks[0]) + max(below)) // 2 + 1)
    in_body = (zz >= caudal) & (zz <= cranial)
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
    reach, cut = [], []
    ends = {0, volume.shape[0] - 1}     # the scan's first and last slice
    for side in ("right", "left"):
        beyond = (k_right - kk) * dx if side == "right" else (kk - k_left) * dx   # mm outside the wall
        lateral = bone & (beyond >= _RIB_ENTRY_MM)[None]
        # thin ribs crossing thick slices break into pieces: bridge one-slice gaps along z
        bridged = ndi.binary_dilation(lateral, np.ones((3, 1, 1), bool)) if spacing[0] > 1.5 else lateral
        lab, n = ndi.label(bridged, ndi.generate_binary_structure(3, 3))
        lab = np.where(lateral, lab, 0)
        best, best_cut = 0.0, False
        if n:
            entry = (lab > 0) & (behind & (beyond < _RIB_ENTRY_MM + 6.0))[None]
            for s, box in enumerate(ndi.find_objects(lab), start=1):
                comp = lab[box] == s
                at_entry = entry[box] & comp
                if not at_entry.any():
                    continue        # does not come from beside the spine (a rib shaft passing by)
                # the entry's centre, not its top: the neck rises towards the body above
                z_entry = int(round(float(np.nonzero(at_entry)[0].mean()))) + box[0].start
                if not in_body[z_entry] or _nearer_other(z_entry + k0, own_centre, others):
                    continue        # a rib of another vertebra
                far = np.where(comp.any(axis=0), np.broadcast_to(beyond, bone.shape[1:])[box[1:]], -np.inf)
                logger.debug("rib candidate %s: enters at slice %d (body slices %d-%d), reaches %.0f mm",
                             side, z_entry + k0, ks[0], ks[-1], float(far.max()))
                if float(far.max()) > best:
                    best = float(far.max())
                    best_cut = bool({box[0].start + k0, box[0].stop - 1 + k0} & ends)  # scan slices
        reach.append(best)
        cut.append(best_cut)
    # head bone in the central slices of the body's core
    core = np.nonzero(area >= 0.5 * area.max())[0] + k_off
    trim = int(0.15 * core.size)
    zc = (zz >= core[0] + trim) & (zz <= core[-1] - trim)
    head_mm3 = float(np.sum(bone[zc][:, score_zone])) * float(np.prod(spacing))
    return (reach[0], reach[1], head_mm3, (cut[0], cut[1]))


def _ribs_may_be_cut(crop) -> bool:
    """True if a body's ribs may lie partly outside the scan: the body touches its edge, or lies
    within a quarter of its height of the first or last slice (a rib descends as it runs
    laterally, and its course can leave the scan there). Only a rib found is evidence there;
    "no rib" is not."""
    if crop.touches_edge():
        return True
    present = np.flatnonzero(crop.mask.any(axis=(1, 2)))
    lo, hi = present[0] + crop.box[0].start, present[-1] + crop.box[0].start
    quarter = (hi - lo + 1) // 4
    return lo - quarter < 0 or hi + quarter > crop.shape[0] - 1


def _nearer_other(z: int, own_centre: float, others) -> bool:
    """True if slice `z` lies within another body's extent whose centre is nearer."""
    return any(lo <= z <= hi and abs(z - centre) < abs(z - own_centre) for lo, hi, centre in others)


def _rib_flags(rib: RibCheck) -> list:
    """The ``rib_mismatch`` QC flag of an inconsistent rib check (none if consistent or undecided)."""

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
