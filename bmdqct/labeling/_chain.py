"""The chain of bodies of :mod:`bmdqct.labeling`: guard, cues and decoding.

Between the network's components and the level names stand three steps:

1. :func:`_merge_same_body` — pieces of different classes that are one body
   (the network changed class half-way through it) become one body;
2. :func:`_guard` — a component is a vertebral body only if it lies on the
   vertebral column found from the image alone (:func:`bmdqct.spine.find_spinal_canal`),
   has a cortical rim denser than its interior, a plausible size and a
   bone-like mean HU; anything else (heart, aorta, liver, kidney) is dropped
   with a ``non_vertebral`` flag, whatever the network said;
3. :func:`_decode_chain` — the cues of the ordered bodies (network votes, ribs
   per side) go to :func:`~bmdqct.labeling.decode_levels`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from ..levels import SEGMENTATION_CLASSES, level_index
from ..qc import QCFlag
from ..spine import find_sacrum
from ._decode import MIN_LEVEL_PROBABILITY, BodyCues, _expected_class, decode_levels
from ._geometry import _Crop
from ._ribs import (
    _BONE_HU,
    _RIB_HEAD_MM3,
    _RIB_REACH_MM,
    _SHORT_RIB_REACH_MM,
    _rib_reaches,
    _ribs_may_be_cut,
)

logger = logging.getLogger(__name__)

#: A body's centroid must lie within this distance (in-plane, mm) of the body line
#: in front of the spinal canal.
GUARD_DISTANCE_MM = 22.0
#: How far along the column (mm) the canal may be extrapolated to check a body.
GUARD_EXTRAPOLATE_MM = 30.0
#: Plausible body volume, mm³ (a T1 body is about 4,000 mm³, L5 up to 60,000 mm³).
GUARD_VOLUME_MM3 = (1500.0, 120000.0)
#: Plausible mean HU of a whole body mask (trabecular bone plus cortex).
GUARD_HU = (40.0, 700.0)
#: The rim (outer 1.5 mm) must be denser than the interior by at least this (HU);
#: a contrast-filled vessel or heart chamber is the other way round.
GUARD_RIM_EXCESS_HU = 0.0
#: Two touching components of different classes are one body when they share most
#: of the slices where each has a section of more than this share of its largest.
CORE_SECTION_SHARE = 0.25


def _merge_same_body(bodies: list[tuple[_Crop, int]], shape) -> list[tuple[_Crop, int]]:
    """Join touching components of different classes that share most of their slices.

    The slices compared are each component's sections of at least
    :data:`CORE_SECTION_SHARE` of its largest section: a few voxels of one body's
    class scattered into the next body (a real T12 painted partly L1-L2 next to a
    whole L1) do not make the two bodies share their slices.
    """
    bodies = list(bodies)
    merged = True
    while merged:
        merged = False
        for a in range(len(bodies)):
            for b in range(a + 1, len(bodies)):
                ca, cb = bodies[a][0], bodies[b][0]
                za, zb = _z_extent(ca, CORE_SECTION_SHARE), _z_extent(cb, CORE_SECTION_SHARE)
                overlap = min(za[1], zb[1]) - max(za[0], zb[0]) + 1
                if overlap < 0.5 * min(za[1] - za[0] + 1, zb[1] - zb[0] + 1):
                    continue
                if not _touch(ca, cb):
                    continue
                union = _union(ca, cb, shape)
                big = bodies[a][1] if ca.mask.sum() >= cb.mask.sum() else bodies[b][1]
                bodies[a] = (union, big)
                del bodies[b]
                merged = True
                break
            if merged:
                break
    return bodies


def _z_extent(crop: _Crop, min_share: float = 0.0) -> tuple[int, int]:
    """First and last slice of `crop` whose section is more than `min_share` of its largest."""
    area = crop.mask.sum(axis=(1, 2))
    ks = np.nonzero(area > min_share * area.max())[0] + crop.box[0].start
    return int(ks[0]), int(ks[-1])


def _union(a: _Crop, b: _Crop, shape) -> _Crop:
    box = tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a.box, b.box))
    mask = np.zeros(tuple(s.stop - s.start for s in box), bool)
    for c in (a, b):
        local = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(c.box, box))
        mask[local] |= c.mask
    return _Crop(box, mask, shape)


def _touch(a: _Crop, b: _Crop) -> bool:
    """True if the two bodies share a face (6-connected)."""
    box = tuple(slice(min(x.start, y.start) - 1, max(x.stop, y.stop) + 1) for x, y in zip(a.box, b.box))
    canvas = []
    for c in (a, b):
        m = np.zeros(tuple(s.stop - s.start for s in box), bool)
        m[tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(c.box, box))] = c.mask
        canvas.append(m)
    return bool((ndi.binary_dilation(canvas[0]) & canvas[1]).any())


def _guard(volume, bodies: list[tuple[_Crop, int]], flags: list[QCFlag], canal):
    """Keep the bodies on the vertebral column; flag the rest ``non_vertebral``.

    Returns the kept bodies. Without a canal (``canal.valid`` all False) only
    the size, HU and rim tests apply and a ``column_not_found`` flag says so.
    """
    valid = np.flatnonzero(canal.valid)
    if valid.size == 0:
        flags.append(QCFlag("column_not_found", None,
                            "no spinal canal found in the image: bodies were not checked against the column"))
    spacing = np.asarray(volume.spacing)
    hu = volume.hu
    kept = []
    for crop, c in bodies:
        reasons = []
        n = int(crop.mask.sum())
        size = n * float(np.prod(spacing))
        centroid = crop.centroid()
        values = np.asarray(hu[crop.box])[crop.mask]
        mean_hu = float(values.mean())
        if valid.size:
            k = int(round(centroid[0]))
            nearest = int(valid[np.argmin(np.abs(valid - k))])
            if abs(nearest - k) * spacing[0] > GUARD_EXTRAPOLATE_MM:
                reasons.append(f"{abs(nearest - k) * spacing[0]:.0f} mm beyond the column's end")
            else:
                d = float(np.hypot(*((centroid[1:] - canal.body_centre_index[nearest]) * spacing[1:])))
                if not np.isfinite(d):
                    d = float(np.hypot(*((centroid[1:] - canal.centre_index[nearest]) * spacing[1:])))
                    d = max(d - 30.0, 0.0)        # body centre unknown: allow the body's depth
                if d > GUARD_DISTANCE_MM:
                    reasons.append(f"{d:.0f} mm from the vertebral column")
        if not crop.touches_edge() and not GUARD_VOLUME_MM3[0] <= size <= GUARD_VOLUME_MM3[1]:
            reasons.append(f"{size:.0f} mm3 is no vertebral body")
        if not GUARD_HU[0] <= mean_hu <= GUARD_HU[1]:
            reasons.append(f"mean {mean_hu:.0f} HU is not bone")
        rim = _rim_excess(crop, hu, spacing)
        if rim is not None and rim < GUARD_RIM_EXCESS_HU:
            reasons.append(f"rim {-rim:.0f} HU less dense than the interior (a vessel or chamber, not cortex)")
        if reasons:
            where = volume.index_to_world(centroid)
            flags.append(QCFlag("non_vertebral", None,
                                f"a {size:.0f} mm3 component at ({where[0]:.0f}, {where[1]:.0f}, "
                                f"{where[2]:.0f}) mm LPS was not taken as a vertebral body: " + "; ".join(reasons)))
            continue
        kept.append((crop, c))
    return kept


def _rim_excess(crop: _Crop, hu, spacing) -> float | None:
    """Mean HU of the outer 1.5 mm shell minus that of the interior (None if too thin)."""
    it = max(int(round(1.5 / float(np.min(spacing[1:])))), 1)
    structure = np.zeros((1, 3, 3), bool)
    structure[0, 1, :] = structure[0, :, 1] = True        # in-plane erosion: endplates are no rim
    inner = ndi.binary_erosion(crop.mask, structure, iterations=it)
    shell = crop.mask & ~inner
    if inner.sum() < 20 or shell.sum() < 20:
        return None
    values = np.asarray(hu[crop.box], np.float32)
    return float(values[shell].mean() - values[inner].mean())


def _decode_chain(volume, bodies: list[tuple[_Crop, int]], classes: np.ndarray, check_ribs: bool, canal=None):
    """Decode the names of `bodies` (already guarded).

    With a `canal`, the sacrum below the lowest body (:func:`bmdqct.spine.find_sacrum`)
    joins the chain as its S1 element; its centre is taken :data:`S1_CENTRE_MM` below
    the sacrum's top. Returns (order, decoding, cues) for the bodies only (`order`
    lists (crop, class) top first), and the slice of the sacrum's top or None.
    """
    order = sorted(bodies, key=lambda b: -b[0].centroid()[0])
    spacing = np.asarray(volume.spacing)
    dz = float(spacing[0])
    raw = np.zeros(volume.shape, np.int16)
    for i, (crop, _) in enumerate(order, start=1):
        raw[crop.box][crop.mask] = i
    extents = [(*_z_extent(crop), float(crop.centroid()[0])) for crop, _ in order]
    reaches = (_rib_reaches(volume, [crop for crop, _ in order], raw, spacing, _BONE_HU, extents)
               if check_ribs else None)
    cues = []
    for i, (crop, c) in enumerate(order):
        votes = None
        if classes is not None:
            counts = np.bincount(classes[crop.box][crop.mask], minlength=4)[1:4].astype(float)
            votes = tuple(float(v) for v in counts / max(counts.sum(), 1.0))
        sides: tuple = (None, None)
        if check_ribs:
            reach = reaches[i]
            sides = tuple(_side_seen(r, reach[2]) for r in reach[:2])
            if _ribs_may_be_cut(crop):           # at the scan's edge ribs may be cut: count only a find
                sides = tuple(_side_at_edge(s, cut) for s, cut in zip(sides, reach[3]))
        cues.append(BodyCues(float(crop.centroid()[0]) * dz, votes, sides))
    sacrum = None
    if canal is not None and canal.valid.any():
        sacrum = find_sacrum(volume, canal, below=_z_extent(order[-1][0])[0] - 1)
        if sacrum is not None and sacrum * dz - S1_CENTRE_MM < cues[-1].z_mm - 10.0:
            cues.append(BodyCues(sacrum * dz - S1_CENTRE_MM, sacrum=True))
        else:
            sacrum = None
    decoding = decode_levels(cues)
    logger.debug("chain cues %s -> %s", cues, decoding)
    if sacrum is not None:                 # the bodies' part of the decoding
        decoding = replace(decoding, names=decoding.names[:-1], probabilities=decoding.probabilities[:-1])
        cues = cues[:-1]
    return order, decoding, cues, sacrum


#: Distance (mm) from the top of the sacrum to the centre of S1 (half an S1 body).
S1_CENTRE_MM = 12.0


#: Disc planes are looked for only on slices at most this thick (mm): on thicker ones the
#: middle of a low-density body is as dark, over as few slices, as a disc.
DISC_MAX_SLICE_MM = 2.0
#: Radius (mm) of the in-plane closing that makes a ring-like body mask solid.
SOLID_RADIUS_MM = 3.0
#: Share of voxels the closing and hole filling must add for a mask to count as a ring.
RING_FILL = 0.01
#: A body whose median section fills less of its convex hull than this is notched (_convex_if_notched).
SOLIDITY = 0.87


def _solid(crop: _Crop, spacing, radius_mm: float = SOLID_RADIUS_MM) -> _Crop:
    """The body with its in-plane gaps closed and holes filled, slice by slice.

    On real CT the network at times segments a body's cortex and leaves its
    marrow out (a ring, open in places): the VOI needs the whole section.
    A closing by a disc of `radius_mm` bridges the gaps of the ring; the holes
    of each slice are then filled; when that added more than :data:`RING_FILL`
    of the mask (it was a ring), sections still notched are replaced by their
    convex hulls. A solid mask is unchanged (a wedge fracture keeps its shape).
    """
    from ._geometry import _disc_element

    element = _disc_element(radius_mm, spacing)
    pad = (0, element.shape[1] // 2 + 1, element.shape[2] // 2 + 1)
    shape = crop.shape
    box = tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(crop.box, pad, shape))
    mask = np.zeros(tuple(b.stop - b.start for b in box), bool)
    mask[tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(crop.box, box))] = crop.mask
    closed = ndi.binary_closing(np.pad(mask, [(0, 0), (pad[1], pad[1]), (pad[2], pad[2])]), element)
    closed = closed[:, pad[1]:pad[1] + mask.shape[1], pad[2]:pad[2] + mask.shape[2]]
    filled = np.stack([ndi.binary_fill_holes(sl) for sl in closed]) | mask
    if filled.sum() >= (1.0 + RING_FILL) * mask.sum():       # a ring: gaps and holes were closed
        filled = _convex_if_notched(filled)
    return _Crop(box, filled, shape)


def _convex_if_notched(mask: np.ndarray) -> np.ndarray:
    """A body whose sections are notched, with its notched sections replaced by their convex hulls.

    A vertebral body's axial section is nearly convex (its back is only
    slightly concave): on synthetic and well-segmented real bodies the median
    section fills 93-97 % of its convex hull (the endplate slices less). A
    body whose median section fills less than :data:`SOLIDITY` is a mask with
    notches the network left in it; its sections below that are replaced by
    their hulls.
    """
    from skimage.morphology import convex_hull_image

    hulls, fill = {}, []
    for k, section in enumerate(mask):
        if section.sum() >= 10:
            hulls[k] = convex_hull_image(section)
            fill.append(section.sum() / hulls[k].sum())
    if not fill or np.median(fill) >= SOLIDITY:
        return mask
    out = mask.copy()
    for k, hull in hulls.items():
        if mask[k].sum() < SOLIDITY * hull.sum():
            out[k] = hull
    return out


def _side_at_edge(seen: str, cut: bool) -> str | None:
    """What one side of a body near the scan's edge shows: only a rib found counts.

    "None" is no evidence there (the rib may lie outside the scan); nor is a short
    structure, unless it runs into the scan's end with rib-head bone beside the body
    ("short" needs that bone): a rib cut by the scan's end, whose reach is only a
    lower bound, counts as a rib.
    """
    if seen == "long" or (seen == "short" and cut):
        return "long"
    return None


def _side_seen(reach_mm: float, head_mm3: float) -> str:
    if reach_mm > _RIB_REACH_MM:
        return "long"
    return "short" if reach_mm > _SHORT_RIB_REACH_MM and head_mm3 > _RIB_HEAD_MM3 else "none"


def _map_disagreement(volume, crops: dict, flags: list[QCFlag]):
    """Flag ``level_disagreement`` where the decoder names a map's body otherwise (never renames).

    `crops` maps the label map's level names to their bodies. Only names the
    decoder reaches :data:`MIN_LEVEL_PROBABILITY` for are compared.
    """
    names = sorted(crops, key=lambda n: -crops[n].centroid()[0])
    if len(names) < 2:
        return
    from ..spine import find_spinal_canal

    order, decoding, cues, _ = _decode_chain(volume, [(crops[n], None) for n in names], None, True,
                                             find_spinal_canal(volume))
    by_id = {id(crop): name for name, crop in crops.items()}
    for (crop, _), name, p in zip(order, decoding.names, decoding.probabilities):
        own = by_id[id(crop)]
        if p >= MIN_LEVEL_PROBABILITY and name != own:
            flags.append(QCFlag("level_disagreement", own,
                                f"the label map calls this body {own}; the ribs and the body count make it "
                                f"{name} (p = {p:.2f}); the map's name is kept"))


def _decoding_flags(decoding, cues, flags: list[QCFlag]) -> None:
    """Flags of a decoded chain: uncertain names, corrections of the network, anatomy, coverage."""
    names = decoding.names
    bearing = [names[i] for i, c in enumerate(cues) if "long" in c.ribs]
    for name, p, cue in zip(names, decoding.probabilities, cues):
        if p < MIN_LEVEL_PROBABILITY:
            flags.append(QCFlag("level_uncertain", name,
                                f"the name {name} has probability {p:.2f} (below {MIN_LEVEL_PROBABILITY}); "
                                "not used for a category"))
        elif decoding.transitional and level_index(name) >= level_index("T11"):
            flags.append(QCFlag("level_uncertain", name,
                                f"{name} is named under transitional anatomy ({decoding.rib_bearing_count} "
                                "rib-bearing vertebrae): its number depends on the counting convention; "
                                "not used for a category"))
        votes = cue.class_votes
        if votes is not None and level_index("T1") <= level_index(name) <= level_index("L2"):
            said = int(np.argmax(votes)) + 1
            if votes[said - 1] >= 0.8 and said != _expected_class(name):
                flags.append(QCFlag("level_corrected", name,
                                    f"the network's class {SEGMENTATION_CLASSES[said]} was corrected to {name} by the "
                                    f"ribs (seen on {', '.join(bearing) or 'no body'}) and the body count"))
    if decoding.transitional:
        flags.append(QCFlag("transitional_anatomy", None,
                            f"{decoding.rib_bearing_count} rib-bearing vertebrae is the most probable "
                            f"anatomy (p = {decoding.variant_probability:.2f}); ribs seen on "
                            f"{', '.join(bearing) or 'no body'}"))
    lowest = names[-1]
    if lowest[0] in "CT" and lowest != "T13":
        flags.append(QCFlag("thoracic_only", lowest,
                            f"the scan ends at {lowest}, above L1: no L1-L2 measurement"))

