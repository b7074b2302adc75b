"""Is the scan contrast-enhanced? The DICOM tag and the descending aorta's HU.

Intravenous iodinated contrast raises the HU of the vertebral bodies' marrow
as well as the blood, so the ACR cut-offs, set on unenhanced QCT, do not apply
to an enhanced scan without a correction. :func:`detect_contrast` finds out
whether a scan is enhanced, and in which phase, from two pieces of evidence:

1. **The DICOM tag** ContrastBolusAgent (0018,0010), kept by
   :func:`bmdqct.load_ct` as ``metadata["contrast_agent"]``: a non-empty value
   other than ``NONE``/``NO`` (any case) means contrast was given. The reader
   does *not* keep ContrastBolusRoute (0018,1040) in the metadata (it is in
   the header pass but not in :data:`bmdqct.volume.METADATA_KEYS`);
   ``metadata["contrast_route"]`` is reported when some reader sets it.
2. **The image**: the descending aorta, a round region of blood in front of
   and to the left of the vertebral body. The body line comes from
   :func:`bmdqct.spine.find_spinal_canal`. On axial slices about 4 mm apart
   (at most 60), the CT smoothed by 1.5 mm is thresholded in a band (an
   *enhanced* band, 80-700 HU, searched first; then an *unenhanced* band,
   0-100 HU); in a window 75 mm in front of to 15 mm behind the body centre
   and 25 mm to its right to 55 mm to its left, the maximal inscribed discs
   of that mask (local maxima of its distance map) of radius 6.5-18 mm whose
   centre is at least 15 mm from the body centre and at most 5 mm behind it
   (not a rib head), and whose surrounding ring
   (1.5-4 mm outside the disc) lies at least 40 % outside the band, are the
   vessel candidates. The candidate on the left (at most 5 mm right of the
   body centre) with the most isolated ring is the aorta; one more than 5 mm
   to the right and 10 mm in front is taken for the inferior vena cava (IVC;
   in the chest it may be another structure, so it only refines the phase). The
   aorta's HU is the median over the slices of the median HU in a disc of 70 %
   of the inscribed radius. An aorta seen on at least ``max(2, 30 %)`` of the
   searched slices counts; otherwise the aorta is not found.

Phases (:data:`PHASES`) from the aorta HU (``a``) and the IVC HU (``v``, if
measured):

* ``"none"`` — ``a < 90`` HU (unenhanced blood is about 30-55 HU, rising with
  the haematocrit) and no contrast tag;
* ``"unknown_contrast"`` — contrast but phase not determined: ``90 <= a <
  120`` HU (weak or delayed enhancement), or the tag says contrast while the
  aorta is unenhanced or not found;
* ``"portal_venous"`` — ``120 <= a < 200`` HU, unless the IVC is measured
  and unenhanced (``v < 90``) with ``a >= 150``;
* ``"arterial"`` — ``a >= 200`` HU, or ``a >= 150`` with an unenhanced IVC;
* ``"unknown"`` — no tag and no aorta found: nothing is claimed.

The thresholds are an implementation choice within the typical values of
enhancement reviewed by Bae (Radiology 2010;256:32-61): unenhanced blood
30-55 HU, aortic enhancement well above 200 HU in the arterial phase and
about 120-180 HU in the portal-venous phase, when the IVC and the portal vein
are enhanced too. When the HU and the tag disagree, the HU wins (the reason
says so): a tag saying ``NONE`` on an enhanced scan is an export error, and a
tag may name an oral agent on a scan without intravenous contrast.

The published correction (:data:`CONTRAST_OFFSET_HU`) is TotalSegmentator's
spine report (``totalsegmentator/bin/totalseg_spine_report.py``: threshold
``HU_THRESHOLD = 90.25`` raised by ``ART_HU_ADDON = 20`` in the arterial and
``PV_HU_ADDON = 14.75`` in the portal-venous phase; Wasserthal et al.,
Radiol Artif Intell 2023;5:e230024 for TotalSegmentator). Raising a threshold
by an offset is the same as subtracting the offset from the measured HU:
:func:`bmdqct.measure.measure` (``contrast_correction=True``) subtracts it
before calibration. There is no published offset for an undetermined phase.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._util import deprecated_alias, record_dict
from .spine import SpinalCanal, find_spinal_canal
from .volume import CTVolume

__all__ = [
    "ContrastFinding",
    "detect_contrast",
    "agent_means_contrast",
    "PHASES",
    "CONTRAST_PHASES",
    "CONTRAST_OFFSET_HU",
]

logger = logging.getLogger(__name__)

#: Every phase :func:`detect_contrast` reports.
PHASES = ("none", "arterial", "portal_venous", "unknown_contrast", "unknown")
#: The phases that mean a contrast-enhanced scan.
CONTRAST_PHASES = ("arterial", "portal_venous", "unknown_contrast")
#: HU subtracted from an enhanced scan's vertebral HU (TotalSegmentator spine report, see the module notes).
CONTRAST_OFFSET_HU: Mapping[str, float] = {"arterial": 20.0, "portal_venous": 14.75}

#: Aorta HU limits of the phases (module notes).
UNENHANCED_MAX_HU = 90.0
PORTAL_VENOUS_MIN_HU = 120.0
ARTERIAL_MIN_HU = 200.0
ARTERIAL_WITH_UNENHANCED_IVC_MIN_HU = 150.0

_ENHANCED_BAND_HU = (80.0, 700.0)
_UNENHANCED_BAND_HU = (0.0, 100.0)
_SMOOTH_MM = 1.5
_RADIUS_MM = (6.5, 18.0)
_MIN_BODY_DISTANCE_MM = 15.0
_MAX_BEHIND_BODY_MM = 5.0
_MIN_RING_OUTSIDE = 0.4
_WINDOW_MM = {"anterior": 75.0, "posterior": 15.0, "right": 25.0, "left": 55.0}
_SLICE_STEP_MM = 4.0
_MAX_SLICES = 60
_MIN_FOUND_FRACTION = 0.3
_NO_AGENT = {"", "NONE", "NO", "N", "NIL", "0"}


@dataclass(frozen=True)
class ContrastFinding:
    """What :func:`detect_contrast` found.

    Attributes
    ----------
    phase : {"none", "arterial", "portal_venous", "unknown_contrast", "unknown"}
        See the module notes.
    aorta_hu : float or None
        Median HU of the descending aorta (None if not found).
    ivc_hu : float or None
        Median HU of the inferior vena cava, if seen (None otherwise).
    aorta_centre_mm : (float, float, float) or None
        Median position (patient LPS mm) of the aorta's centre on the slices where it was found.
    agent : str or None
        ContrastBolusAgent (``metadata["contrast_agent"]``) as read.
    route : str or None
        ContrastBolusRoute (``metadata["contrast_route"]``) if a reader kept it.
    agent_says_contrast : bool or None
        The tag's verdict: True (an agent), False (``NONE``/``NO``), None (absent).
    n_slices_searched, n_slices_found : int
        Axial slices searched for the aorta, and those on which it was found.
    aorta_band : {"enhanced", "unenhanced"} or None
        The HU band in which the aorta was found.
    confidence : {"high", "medium", "low"}
        High: tag and image agree, or the aorta was found on at least 60 % of
        the searched slices; low: the phase rests on the tag alone or on
        nothing; medium otherwise.
    reason : str
        A sentence saying what the phase rests on.
    contrast : bool
        True for an enhanced scan (property).
    offset_hu : float or None
        The phase's published HU correction (property).
    hu_offset : float or None
        Deprecated read-only alias of `offset_hu` (emits a :class:`DeprecationWarning`).
    """

    phase: str
    aorta_hu: float | None = None
    ivc_hu: float | None = None
    aorta_centre_mm: tuple[float, float, float] | None = None
    agent: str | None = None
    route: str | None = None
    agent_says_contrast: bool | None = None
    n_slices_searched: int = 0
    n_slices_found: int = 0
    aorta_band: str | None = None
    confidence: str = "low"
    reason: str = ""

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")

    @property
    def contrast(self) -> bool:
        """True if the scan is contrast-enhanced (any phase of :data:`CONTRAST_PHASES`)."""
        return self.phase in CONTRAST_PHASES

    @property
    def offset_hu(self) -> float | None:
        """The published HU correction of the phase (:data:`CONTRAST_OFFSET_HU`); None if there is none."""
        return CONTRAST_OFFSET_HU.get(self.phase)

    hu_offset = deprecated_alias("offset_hu", "hu_offset")

    def to_dict(self) -> dict:
        """JSON-safe dictionary of the fields plus the properties `contrast` and `offset_hu`."""
        return record_dict(self, contrast=self.contrast, offset_hu=self.offset_hu)


def agent_means_contrast(agent) -> bool | None:
    """The verdict of a ContrastBolusAgent value: True, False (``NONE``/``NO``) or None (absent).

    Examples
    --------
    >>> agent_means_contrast("APPLIED"), agent_means_contrast(" none "), agent_means_contrast(None)
    (True, False, None)
    >>> agent_means_contrast("")
    """
    if agent is None:
        return None
    text = str(agent).strip().upper()
    if not text:
        return None
    return text not in _NO_AGENT


def detect_contrast(volume: CTVolume, *, canal: SpinalCanal | None = None) -> ContrastFinding:
    """Detect intravenous contrast and its phase from the DICOM tag and the aorta's HU.

    Parameters
    ----------
    volume : CTVolume
        Canonical CT in HU (axis 0 inferior to superior, rows anterior to
        posterior, columns right to left).
    canal : SpinalCanal, optional
        The spinal canal of `volume` (:func:`bmdqct.spine.find_spinal_canal`)
        if already found; by default it is found on slices about 4 mm apart.

    Returns
    -------
    ContrastFinding
        Phase ``"unknown"`` when there is no tag and the aorta is not found:
        the detector never guesses.

    Notes
    -----
    Method, thresholds and their sources: see the module notes
    (:mod:`bmdqct.contrast`).

    Examples
    --------
    A vertebral body (250 HU) and its canal in fat, and a round aorta of 280
    HU in front of and to the left of the body:

    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume
    >>> yy, xx = np.mgrid[:96, :96]
    >>> slab = np.full((96, 96), -100.0)
    >>> ring = ((yy - 68) ** 2 + (xx - 48) ** 2 <= 14 ** 2)
    >>> slab[ring] = 700.0
    >>> slab[(yy - 68) ** 2 + (xx - 48) ** 2 <= 7 ** 2] = 20.0
    >>> slab[(yy - 45) ** 2 + (xx - 48) ** 2 <= 14 ** 2] = 250.0
    >>> aorta = (yy - 20) ** 2 + (xx - 64) ** 2 <= 11 ** 2
    >>> enhanced = CTVolume.from_spacing(np.stack([np.where(aorta, 280.0, slab)] * 20), (2.0, 1.0, 1.0))
    >>> finding = detect_contrast(enhanced)
    >>> finding.phase, finding.aorta_hu, finding.contrast, finding.offset_hu
    ('arterial', 280.0, True, 20.0)

    The same aorta unenhanced (40 HU), and a DICOM tag saying ``NONE``:

    >>> plain = enhanced.with_hu(np.stack([np.where(aorta, 40.0, slab)] * 20)).with_metadata(
    ...     contrast_agent="NONE")
    >>> finding = detect_contrast(plain)
    >>> finding.phase, finding.aorta_hu, finding.confidence
    ('none', 40.0, 'high')
    """
    if not isinstance(volume, CTVolume):
        raise TypeError(f"volume must be a CTVolume, got {type(volume).__name__}")
    agent = volume.metadata.get("contrast_agent")
    route = volume.metadata.get("contrast_route")
    tag = agent_means_contrast(agent)
    ks, canal = _search_slices(volume, canal)
    sy, sx = volume.spacing[1:]
    searched = [k for k in ks if np.isfinite(canal.body_centre_index[k]).all()]

    aorta_hu = ivc_hu = centre_mm = None
    band_name = None
    n_found = 0
    for name, band in (("enhanced", _ENHANCED_BAND_HU), ("unenhanced", _UNENHANCED_BAND_HU)):
        aortas, ivcs, where = [], [], []
        for k in searched:
            a, v = _vessels_on_slice(np.asarray(volume.hu[k], np.float32), canal.body_centre_index[k],
                                     (sy, sx), band)
            if a is not None:
                aortas.append(a[0])
                where.append((k, a[1], a[2]))
            if v is not None:
                ivcs.append(v)
        needed = max(2, int(np.ceil(_MIN_FOUND_FRACTION * len(searched))))
        if searched and len(aortas) >= needed:
            aorta_hu = round(float(np.median(aortas)), 1)
            ivc_hu = round(float(np.median(ivcs)), 1) if len(ivcs) >= 2 else None
            band_name, n_found = name, len(aortas)
            centre_mm = tuple(round(float(v), 1) for v in np.median(volume.index_to_world(np.array(where)), axis=0))
            break
    phase, confidence, reason = _phase(aorta_hu, ivc_hu, tag, agent, n_found, len(searched))
    finding = ContrastFinding(phase=phase, aorta_hu=aorta_hu, ivc_hu=ivc_hu, aorta_centre_mm=centre_mm,
                              agent=None if agent is None else str(agent),
                              route=None if route is None else str(route), agent_says_contrast=tag,
                              n_slices_searched=len(searched), n_slices_found=n_found, aorta_band=band_name,
                              confidence=confidence, reason=reason)
    logger.info("contrast: %s (%s)", phase, reason)
    return finding


# --------------------------------------------------------------------------- helpers


def _search_slices(volume: CTVolume, canal: SpinalCanal | None) -> tuple[list[int], SpinalCanal]:
    """Slices to search (indices into `volume`) and a canal whose rows index `volume`'s slices."""
    n = volume.shape[0]
    step = max(1, int(round(_SLICE_STEP_MM / volume.spacing[0])), int(np.ceil(n / _MAX_SLICES)))
    if canal is None:
        sub = np.asarray(volume.hu)[::step]
        affine = np.array(volume.affine)
        affine[:3, 0] *= step
        sub_canal = find_spinal_canal(CTVolume(sub, affine))
        # back onto the full stack: sub-slice j is slice j * step
        body = np.full((n, 2), np.nan)
        centre = np.full((n, 2), np.nan)
        valid = np.zeros(n, bool)
        idx = np.arange(sub.shape[0]) * step
        body[idx] = sub_canal.body_centre_index
        centre[idx] = sub_canal.centre_index
        valid[idx] = sub_canal.valid
        ks = [int(k) for k in idx[sub_canal.valid]]
        return ks, SpinalCanal(centre, np.full((n, 3), np.nan), valid, valid, np.full(n, np.nan), body,
                               np.full((n, 3), np.nan), volume.spacing)
    if canal.valid.size != n:
        raise ValueError(f"canal covers {canal.valid.size} slices, the volume {n}; pass the canal found "
                         "in this volume (find_spinal_canal(volume)) or none")
    ks = [int(k) for k in np.flatnonzero(canal.valid)[::step]]
    return ks, canal


def _disk(radius_mm: float, spacing) -> np.ndarray:
    sy, sx = spacing
    ry, rx = int(np.ceil(radius_mm / sy)), int(np.ceil(radius_mm / sx))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm ** 2


def _vessels_on_slice(hu2d: np.ndarray, body_rc, spacing, band):
    """((aorta HU, row, column) or None, IVC HU or None) on one axial slice.

    Round isolated regions of `band` beside the body (see the module notes).
    """
    sy, sx = spacing
    r_b, c_b = (float(v) for v in body_rc)
    ny, nx = hu2d.shape
    r0 = max(int(np.floor(r_b - _WINDOW_MM["anterior"] / sy)), 0)
    r1 = min(int(np.ceil(r_b + _WINDOW_MM["posterior"] / sy)) + 1, ny)
    c0 = max(int(np.floor(c_b - _WINDOW_MM["right"] / sx)), 0)
    c1 = min(int(np.ceil(c_b + _WINDOW_MM["left"] / sx)) + 1, nx)
    if r1 - r0 < 5 or c1 - c0 < 5:
        return None, None
    pad = int(np.ceil(25.0 / min(sy, sx)))          # context around the window for the ring test
    R0, R1, C0, C1 = max(r0 - pad, 0), min(r1 + pad, ny), max(c0 - pad, 0), min(c1 + pad, nx)
    smooth = ndimage.gaussian_filter(hu2d[R0:R1, C0:C1], (_SMOOTH_MM / sy, _SMOOTH_MM / sx))
    mask = (smooth > band[0]) & (smooth < band[1])
    if not mask.any():
        return None, None
    dist = ndimage.distance_transform_edt(mask, sampling=(sy, sx))
    size = (max(int(round(8.0 / sy)), 1) | 1, max(int(round(8.0 / sx)), 1) | 1)
    peaks = (dist == ndimage.maximum_filter(dist, size=size)) & (dist >= _RADIUS_MM[0]) & (dist <= _RADIUS_MM[1])
    rows, cols = np.nonzero(peaks)
    yy, xx = np.mgrid[:smooth.shape[0], :smooth.shape[1]]
    best_aorta = best_ivc = None
    seen: list[tuple[float, float]] = []
    for r, c in sorted(zip(rows, cols), key=lambda rc: -dist[rc]):
        if not (r0 <= r + R0 < r1 and c0 <= c + C0 < c1):
            continue
        dy_mm, dx_mm = (r + R0 - r_b) * sy, (c + C0 - c_b) * sx   # dy < 0: anterior; dx > 0: left
        if np.hypot(dy_mm, dx_mm) < _MIN_BODY_DISTANCE_MM or dy_mm > _MAX_BEHIND_BODY_MM:
            continue                                  # the body itself, or a rib head behind its centre
        if any(np.hypot((r - a) * sy, (c - b) * sx) < 8.0 for a, b in seen):
            continue                                  # a plateau of the same disc
        seen.append((r, c))
        radius = float(dist[r, c])
        d_mm = np.hypot((yy - r) * sy, (xx - c) * sx)
        ring = (d_mm >= radius + 1.5) & (d_mm <= radius + 4.0)
        outside = float(np.mean(~mask[ring])) if ring.any() else 0.0
        if outside < _MIN_RING_OUTSIDE:
            continue
        core = d_mm <= 0.7 * radius
        value = float(np.median(hu2d[R0:R1, C0:C1][core]))
        if dx_mm >= -5.0:
            if best_aorta is None or outside > best_aorta[0]:
                best_aorta = (outside, value, float(r + R0), float(c + C0))
        elif dy_mm <= -10.0:
            if best_ivc is None or outside > best_ivc[0]:
                best_ivc = (outside, value)
    return (None if best_aorta is None else best_aorta[1:]), (None if best_ivc is None else best_ivc[1])


def _phase(aorta_hu, ivc_hu, tag, agent, n_found, n_searched) -> tuple[str, str, str]:
    """(phase, confidence, reason) from the aorta and IVC HU and the tag's verdict."""
    tag_text = ("no ContrastBolusAgent tag" if tag is None
                else f"ContrastBolusAgent {str(agent).strip()!r}")
    if aorta_hu is None:
        where = (f"aorta not found on {n_searched} searched slices" if n_searched
                 else "aorta not searched (no spinal canal found)")
        if tag:
            return "unknown_contrast", "low", f"{tag_text} says contrast; {where}, so the phase is unknown"
        return "unknown", "low", f"{where}; {tag_text}: contrast not determined"
    seen = f"aorta {aorta_hu:.0f} HU on {n_found}/{n_searched} slices"
    if ivc_hu is not None:
        seen += f", IVC {ivc_hu:.0f} HU"
    strong = n_searched > 0 and n_found >= 0.6 * n_searched
    if aorta_hu < UNENHANCED_MAX_HU:
        if tag:
            return ("unknown_contrast", "low",
                    f"{seen} (unenhanced) but {tag_text} says contrast (oral agent, or a scan before the bolus?)")
        confidence = "high" if (tag is False or strong) else "medium"
        return "none", confidence, f"{seen}: unenhanced blood; {tag_text}"
    if aorta_hu < PORTAL_VENOUS_MIN_HU:
        phase = "unknown_contrast"
        text = f"{seen}: weakly enhanced (delayed phase?), phase not determined"
    elif aorta_hu >= ARTERIAL_MIN_HU or (ivc_hu is not None and ivc_hu < UNENHANCED_MAX_HU
                                        and aorta_hu >= ARTERIAL_WITH_UNENHANCED_IVC_MIN_HU):
        phase, text = "arterial", f"{seen}: arterial phase"
    else:
        phase, text = "portal_venous", f"{seen}: portal-venous phase"
    if tag is False:
        return phase, "medium", f"{text}; {tag_text} disagrees, the image wins"
    confidence = "high" if (tag or strong) else "medium"
    return phase, confidence, f"{text}; {tag_text}"
