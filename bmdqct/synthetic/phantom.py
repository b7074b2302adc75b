"""Synthetic scans of calibration phantoms with known truth (asynchronous QA scans).

``synthesize_phantom_scan(phantom, seed, a_hu, b_hu_per_mg_cm3, **options)``
renders a phantom scanned on its own, as in monthly asynchronous QA: a block of
water-equivalent material on the couch with a row of rods running along the
scanner axis. Rod HU follow the same physics as subject scans
(:mod:`bmdqct.synthetic._physics`):

* Mindways-style K2HPO4 rods: ``HU = W + (b + 0.2174) K + (a - 999.6)``, so the
  two-component fit recovers the subject line ``HU = a + b rho`` exactly;
* HA rods (QRM-BDC, ESP-type inserts): ``K = (HA + 7.32) / 1.15`` (Faulkner 1993),
  ``HU = a + b K``;
* then the in-plane and slice PSF, correlated noise and the FOV padding of
  subject scans.

Rod values come from a certificate (:class:`bmdqct.calibration.Certificate`);
by default from :func:`example_certificate`, which holds **example values only**
(the Bonelab/Ogo defaults), never the certificate of a real phantom.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..calibration._phantom import as_certificate
from ..calibration import Certificate, get_phantom
from ..volume import CTVolume, LabelVolume
from . import _physics

__all__ = ["PhantomTruth", "synthesize_phantom_scan", "example_certificate", "EXAMPLE_CERTIFICATES"]

logger = logging.getLogger(__name__)

_EXAMPLE_NOTE = ("EXAMPLE values for synthetic scans and tests (Bonelab/Ogo defaults, {origin}). They are NOT "
                 "the certificate of your phantom: calibrate real scans only with the values printed on "
                 "your phantom's own calibration certificate.")


def _rods(labels, density, water=None):
    water = water or [None] * len(density)
    return [{"label": lab, "density_mg_cm3": k, **({} if w is None else {"water_mg_cm3": w})}
            for lab, k, w in zip(labels, density, water)]


#: Example certificates (plain dicts, certificate JSON layout) per phantom model — EXAMPLE VALUES ONLY.
EXAMPLE_CERTIFICATES: Mapping[str, Mapping] = {
    "mindways-model3-ct": {
        "phantom": "mindways-model3-ct", "serial": "EXAMPLE-MW3CT", "mineral": "K2HPO4",
        "note": _EXAMPLE_NOTE.format(origin="Mindways Model 3 CT serials 4541A/4560 in ogo/util/Helper.py"),
        "rods": _rods("ABCDE", [-51.83, -53.40, 58.88, 157.05, 375.83],
                      [1012.25, 1056.95, 1103.57, 1119.52, 923.20])},
    "mindways-model3-qa": {
        "phantom": "mindways-model3-qa", "serial": "EXAMPLE-MW3QA", "mineral": "K2HPO4",
        "note": _EXAMPLE_NOTE.format(origin="Mindways Model 3 QA serial 4408"),
        "rods": _rods("ABCD", [58.88, -53.40, 157.05, 157.13], [1103.57, 1056.95, 1119.52, 1120.10])},
    "qrm-bdc-3": {
        "phantom": "qrm-bdc-3", "serial": "EXAMPLE-BDC3", "mineral": "HA",
        "note": _EXAMPLE_NOTE.format(origin="QRM-BDC 3-rod nominal values, serial BDC-71"),
        "rods": _rods("ABC", [100.0, 400.0, 800.0])},
    "qrm-bdc-6": {
        "phantom": "qrm-bdc-6", "serial": "EXAMPLE-BDC6", "mineral": "HA",
        "note": _EXAMPLE_NOTE.format(origin="QRM-BDC 6-rod nominal values, serial BDC-106"),
        "rods": _rods("ABCDEF", [0.0, 100.0, 200.0, 400.0, 600.0, 800.0])},
    "esp": {
        "phantom": "esp", "serial": "EXAMPLE-ESP", "mineral": "HA",
        "note": _EXAMPLE_NOTE.format(origin="European Spine Phantom nominal trabecular densities"),
        "rods": _rods(("L1", "L2", "L3"), [50.0, 100.0, 200.0])},
    "generic-rods": {
        "phantom": "generic-rods", "serial": "EXAMPLE-GENERIC", "mineral": "HA",
        "note": _EXAMPLE_NOTE.format(origin="B-MAS 200 nominal values"),
        "rods": _rods("ABCDE", [0.0, 50.0, 100.0, 150.0, 200.0])},
}

_DEFAULT_SCANNER = {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 64", "device_serial": "SYN-0001",
                    "station": "SYNTH1"}


def example_certificate(phantom: str = "mindways-model3-ct") -> Certificate:
    """An EXAMPLE certificate for `phantom` (not a real phantom's values).

    The Mindways values are the Bonelab/Ogo defaults used in the test vector of
    qct-reference §1.2; the HA values are nominal densities. Use them for
    synthetic scans, tests and demonstrations only.

    Examples
    --------
    >>> cert = example_certificate("mindways-model3-ct")
    >>> cert.serial, [r.label for r in cert.rods]
    ('EXAMPLE-MW3CT', ['A', 'B', 'C', 'D', 'E'])
    """
    name = get_phantom(phantom).name
    return Certificate.from_dict(EXAMPLE_CERTIFICATES[name])


@dataclass(frozen=True, eq=False)
class PhantomTruth:
    """Ground truth of a synthetic phantom scan.

    Attributes
    ----------
    phantom : str
        Phantom model key.
    certificate : Certificate
        Rod values the scan was rendered from.
    a_hu, b_hu_per_mg_cm3 : float
        Bone line of the scanner: ``HU = a + b * rho_K2HPO4``.
    slope, intercept : float
        The K2HPO4 calibration a perfect fit recovers: ``1/b`` and ``-a/b``.
    rod_hu : dict of str to float
        Noise-free HU of each rod (before PSF), by certificate label.
    rod_centers_mm : dict of str to tuple
        Rod axis at the middle slice, LPS mm.
    rod_diameter_mm : float
    background_hu : float
        HU of the phantom body: water-equivalent material, ``a`` HU. (A 0 mg/cm³
        HA insert therefore reads ``a + 6.4 b``, about 9 HU above the body.)
    rods : LabelVolume
        Rod masks (ids 1..N in certificate order, named by label).
    noise_hu, kvp : float
    missing_rod, bubble_rod : str or None
        Failure modes rendered (a rod left out; an air bubble in a rod).
    seed : int
    options : dict
    """

    phantom: str
    certificate: Certificate
    a_hu: float
    b_hu_per_mg_cm3: float
    rod_hu: Mapping[str, float]
    rod_centers_mm: Mapping[str, tuple[float, float, float]]
    rod_diameter_mm: float
    background_hu: float
    rods: LabelVolume = field(repr=False)
    noise_hu: float = 0.0
    kvp: float = 120.0
    missing_rod: str | None = None
    bubble_rod: str | None = None
    seed: int = 0
    options: Mapping = field(default_factory=dict)

    @property
    def slope(self) -> float:
        return 1.0 / self.b_hu_per_mg_cm3

    @property
    def intercept(self) -> float:
        return -self.a_hu / self.b_hu_per_mg_cm3


def _rod_hu(cert: Certificate, a_hu: float, b: float) -> np.ndarray:
    density = cert.density_mg_cm3
    water = cert.water_mg_cm3
    if cert.mineral == "K2HPO4" and water is not None:
        return np.asarray(_physics.mindways_rod_hu(density, water, a_hu, b), dtype=np.float64)
    if cert.mineral == "HA":
        return np.asarray(_physics.ha_rod_hu(density, a_hu, b), dtype=np.float64)
    return np.asarray(_physics.bone_hu(density.astype(np.float64), a_hu, b), dtype=np.float64)


def _background_hu(a_hu: float, b: float) -> float:
    """Water-equivalent body: no mineral, reference water density -> ``a`` HU."""
    return float(_physics.mindways_rod_hu(0.0, _physics.WATER_REFERENCE_MG_CM3, a_hu, b))


def _coverage(distance_mm: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Area fraction of a pixel inside a boundary at signed distance (linear edge model)."""
    return np.clip(0.5 - distance_mm / pixel_mm, 0.0, 1.0)


def synthesize_phantom_scan(phantom: str = "mindways-model3-ct", seed: int = 0, a_hu: float | None = None,
                            b_hu_per_mg_cm3: float | None = None, **options) -> tuple[CTVolume, PhantomTruth]:
    """Render an asynchronous QA scan of a calibration phantom.

    Parameters
    ----------
    phantom : str, optional
        Phantom model (:data:`bmdqct.calibration.PHANTOMS`).
    seed : int, optional
        Seed of the noise.
    a_hu, b_hu_per_mg_cm3 : float, optional
        Scanner bone line ``HU = a + b * rho_K2HPO4``; default
        :func:`bmdqct.synthetic._physics.default_hu_line` of the kVp.
    **options
        ``certificate`` (Certificate, mapping or path; default
        :func:`example_certificate`), ``kvp`` (120), ``noise_hu`` (12; QA scans
        use standard dose), ``shape`` (in-plane, (256, 256)), ``pixel_mm``
        (0.9), ``slice_mm`` (2.0), ``n_slices`` (24), ``psf_fwhm_mm``
        (in-plane, :data:`~bmdqct.synthetic._physics.DEFAULT_PSF_FWHM_MM`),
        ``rod_diameter_mm`` (20), ``rod_pitch_mm`` (1.6 rod diameters),
        ``table`` (True), ``padding_hu`` (value outside the reconstruction
        circle, -2048; None for no padding), ``nps_peak_cycles_mm`` (noise-power
        peak, as for subject scans), ``scanner`` (dict of manufacturer, model,
        device_serial, station), ``study_date`` ("2024-01-15"), ``kernel``
        ("STANDARD"), ``missing_rod`` (a rod label left out, or None),
        ``bubble_rod`` (a rod label given an air bubble, or None),
        ``bubble_diameter_mm`` (0.5 rod diameters).

    Returns
    -------
    volume : CTVolume
        Canonical volume; metadata holds the scanner, ``kvp``, ``study_date``,
        ``format="synthetic"`` and a series description.
    truth : PhantomTruth

    Raises
    ------
    ValueError
        For an unknown option, a rod label not in the certificate, or a phantom
        that does not fit in the field of view.

    Examples
    --------
    >>> vol, truth = synthesize_phantom_scan("mindways-model3-ct", 0, 20.0, 1.3,
    ...                                      shape=(128, 128), pixel_mm=1.6, n_slices=6, noise_hu=0)
    >>> vol.shape, round(truth.slope, 4), vol.metadata["kvp"]
    ((6, 128, 128), 0.7692, 120.0)
    """
    opts = dict(options)
    known = {"certificate", "kvp", "noise_hu", "shape", "pixel_mm", "slice_mm", "n_slices", "psf_fwhm_mm",
             "rod_diameter_mm", "rod_pitch_mm", "table", "padding_hu", "nps_peak_cycles_mm", "scanner",
             "study_date", "kernel", "missing_rod", "bubble_rod", "bubble_diameter_mm"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known options are {sorted(known)}")
    definition = get_phantom(phantom)
    certificate = opts.get("certificate")
    cert = example_certificate(definition.name) if certificate is None \
        else as_certificate(certificate)
    if cert.phantom != definition.name:
        raise ValueError(f"certificate is for {cert.phantom}, not {definition.name}")
    kvp = float(opts.get("kvp", 120.0))
    default_a, default_b = _physics.default_hu_line(kvp)
    a_hu = default_a if a_hu is None else float(a_hu)
    b = default_b if b_hu_per_mg_cm3 is None else float(b_hu_per_mg_cm3)
    if b <= 0:
        raise ValueError(f"b_hu_per_mg_cm3 must be positive, got {b}")
    noise_hu = float(opts.get("noise_hu", 12.0))
    ny, nx = (int(n) for n in opts.get("shape", (256, 256)))
    pixel_mm = float(opts.get("pixel_mm", 0.9))
    slice_mm = float(opts.get("slice_mm", 2.0))
    n_slices = int(opts.get("n_slices", 24))
    fwhm_mm = float(opts.get("psf_fwhm_mm", _physics.DEFAULT_PSF_FWHM_MM))
    diameter = float(opts.get("rod_diameter_mm", 20.0))
    pitch = float(opts.get("rod_pitch_mm", 1.6 * diameter))
    labels = [r.label for r in cert.rods]
    for name in ("missing_rod", "bubble_rod"):
        if opts.get(name) is not None and opts[name] not in labels:
            raise ValueError(f"{name}={opts[name]!r} is not a rod of the certificate ({labels})")
    scanner = {**_DEFAULT_SCANNER, **dict(opts.get("scanner") or {})}
    study_date = _dt.date.fromisoformat(str(opts.get("study_date", "2024-01-15"))).isoformat()

    # geometry (mm, relative to the image centre; j = anterior->posterior, k = right->left)
    n = len(cert.rods)
    pad_half_k = 0.5 * (n - 1) * pitch + diameter
    pad_half_j = 1.1 * diameter
    fov_radius = 0.5 * min(ny, nx) * pixel_mm
    table_gap, table_mm = 2.0, 25.0
    if math.hypot(pad_half_k, pad_half_j + table_gap + table_mm) > fov_radius - 2 * pixel_mm:
        raise ValueError(f"a {n}-rod phantom {2 * pad_half_k:.0f} mm wide does not fit the {2 * fov_radius:.0f} mm "
                         "field of view; enlarge shape or pixel_mm, or reduce rod_diameter_mm")
    j_mm = (np.arange(ny) - (ny - 1) / 2.0) * pixel_mm
    k_mm = (np.arange(nx) - (nx - 1) / 2.0) * pixel_mm
    jj, kk = np.meshgrid(j_mm, k_mm, indexing="ij")
    corner = 0.5 * diameter
    qj = np.abs(jj) - (pad_half_j - corner)
    qk = np.abs(kk) - (pad_half_k - corner)
    pad_distance = np.hypot(np.maximum(qj, 0), np.maximum(qk, 0)) + np.minimum(np.maximum(qj, qk), 0) - corner
    pad_cover = _coverage(pad_distance, pixel_mm)

    rod_hu = _rod_hu(cert, a_hu, b)
    background = _background_hu(a_hu, b)
    air = _physics.tissue_hu("air", kvp)
    plane = air + (background - air) * pad_cover
    if opts.get("table", True):
        top = pad_half_j + table_gap
        skin = _physics.tissue_hu("table", kvp)
        foam = _physics.tissue_hu("table_foam", kvp)
        in_table = (jj >= top) & (jj <= top + table_mm) & (np.abs(kk) <= 0.45 * min(ny, nx) * pixel_mm)
        is_skin = in_table & ((jj <= top + 2.0) | (jj >= top + table_mm - 2.0))
        plane = np.where(in_table, np.where(is_skin, skin, foam), plane)
    rod_k = (np.arange(n) - (n - 1) / 2.0) * pitch
    rod_masks = np.zeros((ny, nx), np.int16)
    for index, (label, hu_value) in enumerate(zip(labels, rod_hu)):
        distance = np.hypot(jj, kk - rod_k[index]) - 0.5 * diameter
        rod_masks[distance <= 0] = index + 1
        if label == opts.get("missing_rod"):
            hu_value = air  # the rod was taken out: an empty bore
        cover = _coverage(distance, pixel_mm)
        plane = plane + (hu_value - background) * cover

    # slices: the phantom fills all but two slices at each end
    hu = np.repeat(plane[None].astype(np.float32), n_slices, axis=0)
    ends = min(2, max(0, (n_slices - 2) // 4))
    if ends:
        hu[:ends] = air
        hu[-ends:] = air
    z_mm = (np.arange(n_slices) - (n_slices - 1) / 2.0) * slice_mm
    bubble = opts.get("bubble_rod")
    if bubble is not None:
        index = labels.index(bubble)
        radius = 0.5 * float(opts.get("bubble_diameter_mm", 0.5 * diameter))
        zz = z_mm[:, None, None]
        inside = np.sqrt(zz ** 2 + jj[None] ** 2 + (kk[None] - rod_k[index]) ** 2) - radius
        hu += ((air - rod_hu[index]) * _coverage(inside, pixel_mm)).astype(np.float32)
    spacing = (slice_mm, pixel_mm, pixel_mm)
    _physics.apply_psf(hu, spacing, (slice_mm, fwhm_mm, fwhm_mm), out=hu)
    peak = float(opts.get("nps_peak_cycles_mm", _physics.DEFAULT_NPS_PEAK_CYCLES_MM))
    hu += _physics.correlated_noise(hu.shape, spacing, noise_hu, rng=np.random.default_rng(seed),
                                    peak_cycles_mm=peak)
    padding_hu = opts.get("padding_hu", _physics.PADDING_HU[0])
    if padding_hu is not None:
        _physics.apply_fov_padding(hu, pixel_mm, padding_hu=float(padding_hu), out=hu)

    origin = (-(nx - 1) / 2.0 * pixel_mm, -(ny - 1) / 2.0 * pixel_mm, float(z_mm[0]))
    uid = "2.25." + str(int(hashlib.sha256(f"{definition.name}|{seed}|{study_date}|{scanner}".encode())
                            .hexdigest()[:30], 16))
    metadata = {**scanner, "kvp": kvp, "study_date": study_date, "acquisition_date": study_date,
                "format": "synthetic", "modality": "CT", "kernel": opts.get("kernel", "STANDARD"),
                "series_uid": uid, "slice_thickness_mm": slice_mm,
                "series_description": f"synthetic {definition.name} QA scan",
                "padding_hu": None if padding_hu is None else float(padding_hu)}
    volume = CTVolume.from_spacing(hu, spacing, origin, metadata=metadata)
    rods = LabelVolume.from_spacing(np.repeat(rod_masks[None], n_slices, axis=0), spacing, origin,
                                    names={label: i + 1 for i, label in enumerate(labels)})
    mid = (n_slices - 1) / 2.0
    centers = {label: tuple(float(v) for v in volume.index_to_world(
        (mid, (ny - 1) / 2.0, (nx - 1) / 2.0 + rod_k[i] / pixel_mm))) for i, label in enumerate(labels)}
    truth = PhantomTruth(
        phantom=definition.name, certificate=cert, a_hu=a_hu, b_hu_per_mg_cm3=b,
        rod_hu=dict(zip(labels, rod_hu.tolist())), rod_centers_mm=centers, rod_diameter_mm=diameter,
        background_hu=background, rods=rods, noise_hu=noise_hu, kvp=kvp, missing_rod=opts.get("missing_rod"),
        bubble_rod=bubble, seed=int(seed), options=opts)
    logger.info("synthetic %s scan: a=%.2f HU, b=%.4f HU per mg/cm3, %d rods", definition.name, a_hu, b, n)
    return volume, truth
