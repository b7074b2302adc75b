"""Internals of :mod:`bmdqct.labeling`: naming the bodies of a 4-class segmentation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from ..errors import GeometryError, LabelingError
from ..levels import (
    CLASS_L1_L2,
    CLASS_T1_T6,
    CLASS_T7_T12,
    SEGMENTATION_CLASSES,
    level_id,
    level_index,
)
from ..qc import QCFlag
from ..spine import find_disc_planes, find_spinal_canal
from ..volume import CTVolume, LabelVolume
from ._chain import (
    DISC_MAX_SLICE_MM,
    _decode_chain,
    _decoding_flags,
    _guard,
    _map_disagreement,
    _merge_same_body,
    _solid,
)
from ._discs import fit_to_discs
from ._geometry import (
    _area_profile,
    _bbox,
    _check_grid,
    _Crop,
    _crop_of,
    _disc_element,
    _level_boxes,
)
from ._ribs import _rib_flags, check_rib_levels
from ._types import LevelInfo, VertebraLabels

logger = logging.getLogger(__name__)

#: Components smaller than this (mm³) that do not touch the scan's edge are
#: fragments. A T1 body, the smallest measured level, is about 4,000 mm³.
MIN_BODY_VOLUME_MM3 = 1000.0

# Middle height: band of the body's depth and half-width about the midsagittal plane (see _sagittal_heights).
_MIDDLE_BAND = (0.30, 0.70)
_MIDDLE_HALF_WIDTH_MM = 10.0

# Body heights (mm) used only to decide how many bodies a merged component
# holds when the scan offers no single body of the same class to compare with.
_PRIOR_BODY_HEIGHT_MM = {CLASS_T1_T6: 17.0, CLASS_T7_T12: 22.0, CLASS_L1_L2: 26.0}
_DISC_HEIGHT_MM = 6.0


_FACE = ndi.generate_binary_structure(3, 1)


# --------------------------------------------------------------------------- public functions


def label_vertebrae(volume: CTVolume, classes: LabelVolume, *, confidence=None,
                    min_volume_mm3: float = MIN_BODY_VOLUME_MM3,
                    check_ribs: bool = True, canal=None) -> VertebraLabels:
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
    canal : SpinalCanal, optional
        The CT's spinal canal (:func:`bmdqct.spine.find_spinal_canal`), found here
        when not given; the column guard and the disc planes rest on it.

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
    The components of all classes that pass the column guard (``non_vertebral``
    flags for the others) form one chain, named by :func:`decode_levels` from
    the ribs beside each body, the sacrum, the distances between bodies and,
    weakly, the class votes; each body's ``probability`` is its name's
    posterior, and a name below :data:`MIN_LEVEL_PROBABILITY` is flagged
    ``level_uncertain`` (``level_corrected`` where the name differs from the
    network's class). A piece of one class smaller than half the median body and touching a
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
    boxes = _level_boxes(cls)
    unexpected = set(boxes) - {CLASS_T1_T6, CLASS_T7_T12, CLASS_L1_L2}
    if unexpected:
        raise LabelingError(f"segmentation classes must be 0-3 (background, T1-T6, T7-T12, L1-L2), got ids "
                            f"{sorted(unexpected)}; for a per-level label map use vertebra_labels_from_map")
    if not boxes:
        raise LabelingError("no vertebral body in the segmentation (every voxel is background); "
                            "is the spine in the field of view?")
    spacing = volume.spacing
    voxel_mm3 = volume.voxel_volume_mm3
    flags: list[QCFlag] = []
    components: dict[int, list[_Crop]] = {}
    spine_box = tuple(slice(max(min(b[a].start for b in boxes.values()) - 1, 0),
                            min(max(b[a].stop for b in boxes.values()) + 1, cls.shape[a])) for a in range(3))
    sub = _absorb_minority_islands(cls[spine_box], voxel_mm3, flags)
    offset = tuple(b.start for b in spine_box)
    if canal is None:
        canal = find_spinal_canal(volume)
    elif len(canal.valid) != volume.shape[0]:
        raise GeometryError(f"the spinal canal given has {len(canal.valid)} slices, the CT {volume.shape[0]}; "
                            "pass find_spinal_canal(volume) of this CT")
    discs = (find_disc_planes(volume, canal) if canal.found and volume.spacing[0] <= DISC_MAX_SLICE_MM
             else np.array([], int))
    for c in (CLASS_T1_T6, CLASS_T7_T12, CLASS_L1_L2):
        masks = _class_components(sub == c, offset, volume, spacing, voxel_mm3, min_volume_mm3, c, flags, discs)
        if masks:
            components[c] = masks
    if not components:
        raise LabelingError("no vertebral body left after dropping fragments smaller than "
                            f"{min_volume_mm3:g} mm3; is the spine in the field of view?")
    for c in (CLASS_T7_T12, CLASS_L1_L2):
        if c not in components:
            flags.append(QCFlag("class_missing", None,
                                f"no body of class {SEGMENTATION_CLASSES[c]} in the segmentation"))

    bodies = _merge_same_body([(crop, c) for c, crops in components.items() for crop in crops], volume.shape)
    bodies = fit_to_discs(bodies, discs, spacing[0], voxel_mm3, flags)
    bodies = _guard(volume, bodies, flags, canal)
    if not bodies:
        raise LabelingError("no segmented component lies on the vertebral column with the size, density and "
                            "cortical rim of a vertebral body (see the non_vertebral flags); "
                            "is the spine in the field of view?")
    order, decoding, cues, sacrum = _decode_chain(volume, bodies, cls, check_ribs, canal)
    if sacrum is not None:
        logger.info("sacrum top at slice %d; it anchors the lumbar names", sacrum)
    _decoding_flags(decoding, cues, flags)
    out = np.zeros(volume.shape, np.int16)
    names: dict[str, int] = {}
    infos: dict[str, LevelInfo] = {}
    for (crop, c), name, p, cue in zip(order, decoding.names, decoding.probabilities, cues):
        lid = level_id(name)
        crop = _solid(crop, volume.spacing)
        region = out[crop.box]
        region[crop.mask & (region == 0)] = lid          # a neighbour's voxels stay its own
        crop = _Crop(crop.box, region == lid, crop.shape)
        names[name] = lid
        infos[name] = replace(_level_info(name, lid, c, crop, volume, conf), probability=p,
                              rib_bearing=_rib_seen(cue))
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
        (:func:`isolate_vertebral_body`). ``"auto"`` decides once for the
        whole map, so that neighbouring levels are measured alike: the
        isolated bodies are used when isolation removes more than 15 % of the
        voxels of the median level (whole vertebrae lose 25-40 %), and
        body-only masks (which lose at most a few %) are left unchanged.
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
    raw = np.asarray(labels.labels)
    boxes = _level_boxes(raw)
    levels = {}
    for name, lid in labels.names.items():
        try:
            level_index(name)
        except KeyError:
            continue
        if lid in boxes:
            levels[name] = lid
    if not levels:
        raise LabelingError(f"the label map holds no vertebral level (names {sorted(labels.names)[:8]}..., "
                            f"ids present {sorted(boxes)[:10]}); check the label scheme "
                            "(e.g. scheme='totalsegmentator' or 'verse')")
    spacing = volume.spacing
    voxel_mm3 = volume.voxel_volume_mm3
    out = np.zeros(volume.shape, np.int16)
    names: dict[str, int] = {}
    infos: dict[str, LevelInfo] = {}
    flags: list[QCFlag] = []
    crops = {name: _crop_of(raw, lid, boxes[lid], pad=1) for name, lid in levels.items()}
    if isolate_bodies is not False:
        bodies = {name: _Crop(crop.box, isolate_vertebral_body(crop.mask, spacing), crop.shape)
                  for name, crop in crops.items()}
        if isolate_bodies is True or _whole_vertebrae(crops, bodies, min_volume_mm3 / voxel_mm3):
            crops = bodies
    for name in sorted(levels, key=level_index):
        crop = crops[name]
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
    if check_ribs:
        _map_disagreement(volume, {n: _Crop(crops[n].box, crops[n].mask, crops[n].shape) for n in infos}, flags)
    return _finish(volume, LabelVolume(out, volume.affine, names), infos, flags, check_ribs)


def isolate_vertebral_body(mask: np.ndarray, spacing, *, radius_mm: float = 9.0,
                           end_mm: float = 12.0) -> np.ndarray:
    """Vertebral body of a whole-vertebra mask (posterior elements removed).

    An axial opening with a disc of `radius_mm` removes the pedicles, laminae
    and processes (thinner than the disc); the largest remaining 3-D
    component is the body's core. Its corners are restored by an in-plane
    dilation of 0.45 `radius_mm` inside the original mask (a 3 mm stub of
    each process comes back with them), and the thin slices at its ends —
    the endplate rims and the ramps of a tilted body, which the opening
    removes whole — are restored up to `end_mm` beyond the core from the
    footprint of the core's end slice (dilated the same way), so that the
    body keeps its full height.

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
        Dice 0.96-0.98 for T12-L4 (7 mm leaves the thick pedicles of L3).
    end_mm : float, optional
        How far beyond the core's end slices the body is restored.

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
    grow = _disc_element(0.45 * radius_mm, spacing)
    body = ndi.binary_dilation(core, grow) & sub
    # end slices narrower than the disc (rims, a tilted body's ramps): from the end slice's footprint
    ks = np.nonzero(core.any(axis=(1, 2)))[0]
    reach = int(round(end_mm / spacing[0]))
    for end, step in ((int(ks[0]), -1), (int(ks[-1]), 1)):
        footprint = ndi.binary_dilation(core[end], grow[0])
        for k in range(end + step, end + step * (reach + 1), step):
            if not 0 <= k < sub.shape[0]:
                break
            body[k] = sub[k] & footprint
    # keep only what is connected to the core
    lab, _ = ndi.label(body, _FACE)
    keep = np.unique(lab[core & body])
    body = np.isin(lab, keep[keep > 0])
    out = np.zeros_like(mask)
    out[box] = body
    return out


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


def _whole_vertebrae(crops: Mapping[str, _Crop], bodies: Mapping[str, _Crop], min_voxels: float) -> bool:
    """True if the masks are whole vertebrae: isolation removes > 15 % of the median level.

    Levels cut by the scan's edge and fragments (fewer than `min_voxels`) are
    left out of the median unless all levels are.
    """
    names = [n for n, c in crops.items() if not c.touches_edge() and c.mask.sum() >= min_voxels] or list(crops)
    removed = [1.0 - bodies[n].mask.sum() / max(crops[n].mask.sum(), 1) for n in names]
    return float(np.median(removed)) > 0.15


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


def _class_components(mask, offset, volume, spacing, voxel_mm3, min_volume_mm3, c, flags,
                      discs=()) -> list[_Crop]:
    """Connected bodies of one class (`mask` is a crop at `offset`), fragments dropped, merged split.

    A component as tall as three bodies or more is cut at the column's disc
    planes (`discs`, :func:`bmdqct.spine.find_disc_planes`) when they give
    between the expected number of bodies and twice that less one (the
    planes include the dark middle of some bodies, which would double the
    count); otherwise, and for two bodies, at the minima of section area and
    CT near evenly spaced positions (:func:`_split_body`).
    """
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
                            f"{dropped} fragment(s) of class {SEGMENTATION_CLASSES[c]} smaller than "
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
            parts = _split_at_discs(body, discs, dz) if count >= 3 else []
            if not count <= len(parts) <= 2 * count - 1:
                parts = _split_body(body, count, volume, dz)
            flags.append(QCFlag("split", None,
                                f"a {height:.0f} mm tall component of class {SEGMENTATION_CLASSES[c]} was split into "
                                f"{len(parts)} bodies at the disc planes"))
            out.extend(parts)
        else:
            out.append(body)
    return out


def _split_at_discs(crop: _Crop, discs, dz: float) -> list[_Crop]:
    """`crop` cut at the disc planes that leave at least 8 mm of it on both sides ([] if none)."""
    ks = np.flatnonzero(_area_profile(crop.mask))
    k0 = crop.box[0].start
    min_part = max(int(round(8.0 / dz)), 1)
    cuts = [int(d) - k0 for d in discs if ks[0] + min_part <= int(d) - k0 <= ks[-1] - min_part]
    if not cuts:
        return []
    edges = [-1, *cuts, crop.mask.shape[0]]
    parts = []
    for a, b in zip(edges[:-1], edges[1:]):
        part = np.zeros_like(crop.mask)
        part[a + 1:b] = crop.mask[a + 1:b]       # the disc plane itself belongs to no body
        if part.any():
            parts.append(_Crop(crop.box, part, crop.shape))
    return parts


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


def _level_info(name, lid, c, crop: _Crop, volume: CTVolume, conf) -> LevelInfo:
    spacing = volume.spacing
    dz = spacing[0]
    mask = crop.mask
    ks = np.nonzero(mask.any(axis=(1, 2)))[0] + crop.box[0].start
    k0, k1 = int(ks[0]), int(ks[-1])
    tight = _bbox(mask)
    bbox = tuple((int(t.start + b.start), int(t.stop + b.start)) for t, b in zip(tight, crop.box))
    profile = _area_profile(mask)
    centroid_local = np.array(ndi.center_of_mass(mask))
    centroid_vox = centroid_local + crop.offset
    centroid_mm = volume.index_to_world(centroid_vox)
    z0 = float(volume.index_to_world([k0, centroid_vox[1], centroid_vox[2]])[2])
    z1 = float(volume.index_to_world([k1, centroid_vox[1], centroid_vox[2]])[2])
    n = int(mask.sum())
    confidence = float(np.mean(conf[crop.box][mask], dtype=np.float64)) if conf is not None else float("nan")
    return LevelInfo(
        level=name, label_id=int(lid), source_class=c, slice_range=(k0, k1),
        z_range_mm=(round(z0, 3), round(z1, 3)),
        height_mm=round(_fwhm_length(profile, dz), 3),
        heights_mm=_sagittal_heights(mask, centroid_local, spacing),
        n_voxels=n, volume_mm3=round(n * volume.voxel_volume_mm3, 3),
        centroid_mm=tuple(round(float(v), 3) for v in centroid_mm),
        partial=crop.touches_edge(), confidence=confidence, bbox=bbox)


def _sagittal_heights(mask, centroid_vox, spacing) -> tuple[float, float, float]:
    """Anterior, middle, posterior body heights (mm) about the sagittal midplane.

    Column heights (voxels along axis 0 times the slice spacing) are averaged
    over the columns inside the body in three bands of its depth (measured on
    the midplane): 5-20 % (anterior) and 80-95 % (posterior) within +-3 mm of
    the midplane, avoiding the rounded front and back edges, and 30-70 %
    (middle) within +-10 mm. The middle band is wide because a column height
    is quantised to whole slices: averaged over many columns, which cross the
    curved, tilted endplates at different depths, the quantisation largely
    cancels (on synthetic scans with 3 mm slices the middle-height ratio to the
    neighbours then errs by 1.7 % SD instead of 3.1 % with 40-60 % and +-3 mm).
    """
    k = int(round(centroid_vox[2]))
    heights = mask.sum(axis=0) * float(spacing[0])          # (J, K) column heights

    def slab(half_mm):
        half = max(int(round(half_mm / spacing[2])), 0)
        return heights[:, max(k - half, 0):k + half + 1]

    narrow, wide = slab(3.0), slab(_MIDDLE_HALF_WIDTH_MM)
    rows = np.nonzero(narrow.any(axis=1))[0]
    if rows.size == 0:
        return (0.0, 0.0, 0.0)
    j0, depth = int(rows[0]), int(rows[-1] - rows[0] + 1)

    def band(columns, lo, hi):
        a = j0 + int(round(lo * depth))
        b = max(j0 + int(round(hi * depth)), a + 1)
        values = columns[a:b]
        values = values[values > 0]
        return round(float(values.mean()), 3) if values.size else 0.0

    return band(narrow, 0.05, 0.20), band(wide, *_MIDDLE_BAND), band(narrow, 0.80, 0.95)


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


def _finish(volume, labels, infos, flags, check_ribs) -> VertebraLabels:
    rib = None
    if check_ribs:
        rib = check_rib_levels(volume, VertebraLabels(labels, infos))    # the bodies' boxes come along
        infos = {k: _with_rib(v, rib.rib_bearing.get(k)) for k, v in infos.items()}
        flags.extend(_rib_flags(rib))
    vl = VertebraLabels(labels, infos, tuple(flags), rib)
    logger.info("labelled %s; flags %s", list(vl.levels), [str(f) for f in vl.flags])
    return vl


def _with_rib(info: LevelInfo, bearing) -> LevelInfo:
    """`info` with the rib check's finding (the decoder's, if the check did not judge it)."""
    return info if bearing is None else replace(info, rib_bearing=bool(bearing))


def _rib_seen(cue) -> bool | None:
    """Rib-bearing as the decoder saw it: a long rib on a side; none on both checked sides."""
    if "long" in cue.ribs:
        return True
    return False if cue.ribs and all(r == "none" for r in cue.ribs) else None
