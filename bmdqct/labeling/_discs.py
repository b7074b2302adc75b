"""Segmented bodies fitted to the column's disc planes: one body per disc-to-disc slab.

The network's masks can straddle a disc (part of the body above or below joins a
body) or break one body into two stacked pieces of different classes. Where the
image shows regularly spaced discs (:func:`bmdqct.spine.find_disc_planes`), each
vertebral body lies between two of them: :func:`fit_to_discs` trims the pieces of
a body that lie across a disc plane, and joins pieces that share one slab.
"""

from __future__ import annotations

import numpy as np

from ..qc import QCFlag
from ._chain import _touch, _union
from ._geometry import _Crop

#: A disc plane is trusted when the planes on both sides of it lie this many body
#: pitches away (the median distance between the segmented bodies' centres,
#: :func:`body_pitch_mm`): the dark middle of a body makes a
#: minimum half a pitch from the real discs, and the first and last planes, with one
#: neighbour, cannot be told from such a minimum (one was, on ``ricord_chest``).
RELIABLE_GAP = (0.7, 1.4)
#: A piece across a disc plane holding at least this share of a body's voxels is
#: trimmed off (smaller ones are the wedges of a tilted endplate, left alone) ...
TRIM_SHARE = 0.10
#: ... and becomes a body of its own when it is also this many pitches tall and
#: holds :data:`OWN_BODY_SHARE` of the voxels (two bodies under one mask).
OWN_BODY_PITCH = 0.6
OWN_BODY_SHARE = 0.25
#: A body is trimmed only where the rest is a whole body: this share of its voxels,
#: this many pitches tall (a plane through its middle leaves two halves: not a disc).
MAIN_SHARE = 0.6
MAIN_PITCH = 0.5
#: Pieces are joined only into a body at most this many pitches tall (two whole
#: neighbours never are).
JOINED_MAX_PITCH = 1.15


def reliable_planes(discs, dz: float, pitch_mm: float) -> np.ndarray:
    """The trusted planes among candidate `discs` (slice indices), given the body pitch.

    Examples
    --------
    Discs every 22 mm, and a spurious minimum in the middle of one body (at 77):

    >>> reliable_planes([0, 22, 44, 66, 77, 88, 110, 132], 1.0, 22.0).tolist()
    [22, 44, 110]
    """
    d = np.unique(np.asarray(discs, int))
    if d.size < 3 or not np.isfinite(pitch_mm):
        return np.array([], int)
    gaps = np.diff(d) * dz
    pitch = float(pitch_mm)
    good = (gaps >= RELIABLE_GAP[0] * pitch) & (gaps <= RELIABLE_GAP[1] * pitch)
    keep = np.zeros(d.size, bool)
    keep[1:-1] = good[:-1] & good[1:]
    return d[keep]


def body_pitch_mm(bodies: list[tuple[_Crop, int]], dz: float) -> float:
    """Median distance (mm) between neighbouring bodies' centres, NaN for fewer than three bodies.

    Taken from the segmented bodies, not from the disc candidates: those include the
    dark middles of bodies, which would halve it.
    """
    z = np.sort([float(crop.centroid()[0]) * dz for crop, _ in bodies])
    gaps = np.diff(z)
    gaps = gaps[(gaps >= 12.0) & (gaps <= 45.0)]
    return float(np.median(gaps)) if gaps.size >= 2 else float("nan")


def fit_to_discs(bodies: list[tuple[_Crop, int]], discs, dz: float, voxel_mm3: float,
                 flags: list[QCFlag], *, min_piece_mm3: float = 200.0) -> list[tuple[_Crop, int]]:
    """Trim bodies at trusted disc planes and join pieces of one slab.

    Parameters
    ----------
    bodies : list of (_Crop, class)
    discs : sequence of int
        Candidate disc planes (slice indices), e.g. from
        :func:`bmdqct.spine.find_disc_planes`.
    dz : float
        Slice spacing in mm.
    voxel_mm3 : float
    flags : list of QCFlag
        A ``disc_trimmed`` flag is appended when anything changed.
    min_piece_mm3 : float, optional
        A trimmed piece cut by the scan's edge is kept as a partial body of its
        own when at least this large; other trimmed pieces are dropped.

    Returns
    -------
    list of (_Crop, class)
        The bodies, each within one slab where the planes are trusted.
    """
    pitch = body_pitch_mm(bodies, dz)
    planes = reliable_planes(discs, dz, pitch)
    if planes.size == 0:
        return list(bodies)
    out: list[tuple[_Crop, int]] = []
    loose: list[bool] = []          # a trimmed piece that is no body: kept only if it joins one
    trimmed = 0
    for crop, c in bodies:
        parts = _parts(crop, planes)
        if len(parts) < 2:
            out.append((crop, c))
            loose.append(False)
            continue
        sizes = [float(p.mask.sum()) for p in parts]
        total = sum(sizes)
        main = int(np.argmax(sizes))
        if sizes[main] < MAIN_SHARE * total or _height_mm(parts[main], dz) < MAIN_PITCH * pitch:
            out.append((crop, c))               # no whole body on one side: the plane is not its disc
            loose.append(False)
            continue
        whole = parts[main]
        for i, part in enumerate(parts):
            if i == main:
                continue
            share = sizes[i] / total
            if share < TRIM_SHARE:
                whole = _union(whole, part, crop.shape)     # an endplate wedge: stays
                continue
            tall = _height_mm(part, dz) >= OWN_BODY_PITCH * pitch
            own = (tall and share >= OWN_BODY_SHARE) or (
                part.touches_edge() and sizes[i] * voxel_mm3 >= min_piece_mm3)
            out.append((part, c))
            loose.append(not own)
            trimmed += 1
        out.append((whole, c))
        loose.append(False)
    joined, loose = _join_slab_pieces(out, loose, planes, pitch, dz)
    joins = len(out) - len(joined)
    dropped = sum(loose)
    if trimmed or joins:
        flags.append(QCFlag("disc_trimmed", None,
                            f"fitted to the image's disc planes: {trimmed} piece(s) of segmented bodies lying "
                            f"across a disc plane cut off, {joins} pair(s) of touching pieces between the same "
                            f"two discs joined into one body, {dropped} piece(s) that joined no body dropped"))
    kept = [body for body, is_loose in zip(joined, loose) if not is_loose]
    return kept


def _height_mm(crop: _Crop, dz: float) -> float:
    ks = np.flatnonzero(crop.mask.any(axis=(1, 2)))
    return float(ks[-1] - ks[0] + 1) * dz


def _parts(crop: _Crop, planes: np.ndarray) -> list[_Crop]:
    """`crop` cut at the trusted planes inside it (a plane's own slice goes with the part above)."""
    k0 = crop.box[0].start
    present = np.flatnonzero(crop.mask.any(axis=(1, 2)))
    lo, hi = present[0] + k0, present[-1] + k0
    cuts = [int(d) for d in planes if lo < d < hi]
    if not cuts:
        return [crop]
    edges = [lo, *cuts, hi + 1]
    parts = []
    for a, b in zip(edges[:-1], edges[1:]):
        part = np.zeros_like(crop.mask)
        part[a - k0:b - k0] = crop.mask[a - k0:b - k0]
        if part.any():
            parts.append(_Crop(crop.box, part, crop.shape))
    return parts


def _slab(crop: _Crop, planes: np.ndarray) -> int:
    """Index of the disc-to-disc slab holding most of `crop` (-1 below the first plane)."""
    counts = crop.mask.sum(axis=(1, 2))
    ks = np.arange(counts.size) + crop.box[0].start
    which = np.searchsorted(planes, ks, side="right") - 1
    return int(np.bincount(which + 1, weights=counts).argmax()) - 1


def _join_slab_pieces(bodies, loose, planes, pitch: float, dz: float):
    """Join touching bodies whose bulk lies in the same body-sized slab; returns (bodies, loose)."""
    bodies, loose = list(bodies), list(loose)
    heights = np.diff(planes) * dz
    joined = True
    while joined:
        joined = False
        slabs = [_slab(crop, planes) for crop, _ in bodies]
        for a in range(len(bodies)):
            s = slabs[a]
            if not 0 <= s < heights.size or not RELIABLE_GAP[0] * pitch <= heights[s] <= RELIABLE_GAP[1] * pitch:
                continue
            for b in range(a + 1, len(bodies)):
                if slabs[b] != s or not _touch(bodies[a][0], bodies[b][0]):
                    continue
                ca, cb = bodies[a][0], bodies[b][0]
                union = _union(ca, cb, ca.shape)
                if _height_mm(union, dz) > JOINED_MAX_PITCH * pitch:
                    continue
                big = bodies[a][1] if ca.mask.sum() >= cb.mask.sum() else bodies[b][1]
                bodies[a] = (union, big)
                loose[a] = loose[a] and loose[b]
                del bodies[b], loose[b]
                joined = True
                break
            if joined:
                break
    return bodies, loose
