"""Physics of synthetic CT scans: HU of bone and tissues per kVp, PSF, noise, FOV padding.

Shared by the subject generator (:mod:`bmdqct.synthetic.subject`) and the
calibration phantom generator (:mod:`bmdqct.synthetic.phantom`), so that a
phantom scan and a subject scan of the same scanner and kVp obey the same line.

Conventions
-----------
* Bone mineral is K2HPO4-equivalent density ``rho`` in mg/cm³. Trabecular (and
  every other bone) voxel reads ``HU = a_hu + b_hu_per_mg_cm3 * rho``.
* A Mindways-style rod with K2HPO4 density ``K`` and water-equivalent density
  ``W`` (mg/cm³) reads ``HU = W + (b + 0.2174) * K + (a - 999.6)``; the two-component
  QCT Pro fit (``HU - W = sigma_ref * K + beta_ref``, ``sigma_CT = sigma_ref - 0.2174``,
  ``beta_CT = beta_ref + 999.6``) therefore recovers ``(a, b)`` exactly
  (qct-reference §1.2). An HA rod is converted with Faulkner's
  ``K = (HA + 7.32) / 1.15`` and reads ``a + b * K``.
* Arrays are canonical (axis 0 inferior->superior, 1 anterior->posterior,
  2 right->left) with ``spacing`` in mm in array-axis order (see :mod:`bmdqct.volume`).

Default calibration line per kVp (derivation in :func:`default_hu_line`):

====== ===================== ============ =================
 kVp    effective energy keV  ``a_hu``     ``b_hu_per_mg_cm3``
====== ===================== ============ =================
 120    68.0                  -0.4         1.424
 100    59.3                  -0.4         1.704
  80    50.6                  -0.4         2.194
====== ===================== ============ =================

Examples
--------
>>> default_hu_line(120)
(-0.4, 1.424)
>>> round(bone_hu(100.0, *default_hu_line(120)), 1)
142.0
>>> tissue_hu("fat", 120), tissue_hu("fat", 80)
(-100.0, -129.0)
"""

from __future__ import annotations

import logging
import math

import numpy as np

__all__ = [
    "SUPPORTED_KVP",
    "KVP_RANGE",
    "WATER_REFERENCE_MG_CM3",
    "WATER_DISPLACEMENT_PER_MG_K2HPO4",
    "CORTICAL_BONE_MG_CM3",
    "TISSUES",
    "PADDING_HU",
    "DEFAULT_PSF_FWHM_MM",
    "DEFAULT_NPS_PEAK_CYCLES_MM",
    "effective_energy_kev",
    "default_hu_line",
    "bone_hu",
    "mindways_rod_hu",
    "ha_rod_hu",
    "tissue_hu",
    "tissue_table",
    "psf_sigma_voxels",
    "apply_psf",
    "noise_power_spectrum",
    "correlated_noise",
    "blur_and_add_noise",
    "noise_sd_of_mean",
    "fov_mask",
    "apply_fov_padding",
]

logger = logging.getLogger(__name__)

#: Tube voltages with tabulated defaults; any kVp in :data:`KVP_RANGE` is accepted.
SUPPORTED_KVP = (80, 100, 120)
#: Range of tube voltages (kV) for which the effective-energy model is used.
KVP_RANGE = (70.0, 140.0)

#: Reference water density and water displaced per mg K2HPO4 (Mindways QCT Pro, qct-reference §1.2).
WATER_REFERENCE_MG_CM3 = 999.6
WATER_DISPLACEMENT_PER_MG_K2HPO4 = 0.2174

#: K2HPO4-equivalent density of compact cortical bone, mg/cm³. Chosen so that
#: ``a + b * rho`` at 120 kVp reproduces the XCOM HU of ICRU-44 cortical bone
#: (1.92 g/cm³; 1656 HU at 68 keV) within 1 %.
CORTICAL_BONE_MG_CM3 = 1150.0

#: Outside-FOV padding values written by real scanners (LIDC-IDRI series use both).
PADDING_HU = (-2048.0, -3024.0)

#: In-plane PSF FWHM of a standard body kernel, mm (MTF50 about 0.35 cycles/mm) [K].
DEFAULT_PSF_FWHM_MM = 1.1

#: Peak frequency of the in-plane noise power spectrum, cycles/mm. Measured on
#: LIDC-IDRI-0314 (Philips, 120 kVp, 0.78 mm pixels): flat NPS from 0.1 to
#: 0.45 cycles/mm with its maximum near 0.3.
DEFAULT_NPS_PEAK_CYCLES_MM = 0.3

# ---------------------------------------------------------------------------
# Attenuation model
# ---------------------------------------------------------------------------

# NIST XCOM / X-ray mass attenuation coefficients (cm²/g) at 40, 50, 60, 80, 100 keV:
# water (liquid), ICRU-44 adipose, blood, skeletal muscle, cortical bone, and K2HPO4
# (XCOM from its formula; tabulated in Bonelab/Ogo ogo/dat/MassAttenuationTables.py).
_XCOM_KEV = np.array([40.0, 50.0, 60.0, 80.0, 100.0])
_XCOM = {
    "water": (0.2683, 0.2269, 0.2059, 0.1837, 0.1707),
    "adipose": (0.2396, 0.2123, 0.1974, 0.1800, 0.1688),
    "blood": (0.2715, 0.2278, 0.2057, 0.1827, 0.1695),
    "muscle": (0.2685, 0.2262, 0.2048, 0.1823, 0.1693),
    "bone": (0.6655, 0.4242, 0.3148, 0.2229, 0.1855),
    "k2hpo4": (0.9327, 0.5573, 0.3890, 0.2508, 0.1972),
}
# ICRU-44 densities, g/cm³ (NIST tables).
_ICRU_DENSITY_G_CM3 = {"adipose": 0.95, "blood": 1.06, "muscle": 1.05, "bone": 1.92}

#: Tissue names accepted by :func:`tissue_hu`.
TISSUES = (
    "air", "lung", "fat", "muscle", "blood", "myocardium", "liver", "spleen",
    "kidney", "disc", "csf", "skin", "cartilage", "fibroglandular", "bowel",
    "cortical_bone", "table", "table_foam",
)

# Unenhanced adult tissue HU at 120 kVp [K: typical clinical values; fat and muscle
# agree with the windows of Ogo's internal-calibration checks, qct-reference §2.1]
# and the XCOM material whose change with effective energy sets the kVp dependence.
_TISSUE_120 = {
    "air": (-1000.0, None),
    "lung": (-860.0, "lung"),  # inspiratory mean lung density, healthy adult
    "fat": (-100.0, "adipose"),
    "muscle": (50.0, "muscle"),
    "blood": (40.0, "blood"),  # unenhanced, haematocrit about 0.42
    "myocardium": (45.0, "muscle"),
    "liver": (60.0, "muscle"),
    "spleen": (47.0, "muscle"),
    "kidney": (32.0, "muscle"),
    "disc": (85.0, "muscle"),  # annulus about 100, nucleus about 70
    "csf": (12.0, None),  # thecal sac: CSF with cord, averaged
    "skin": (45.0, "muscle"),
    "cartilage": (115.0, "muscle"),  # costal cartilage, non-calcified
    "fibroglandular": (35.0, "muscle"),
    "bowel": (30.0, "muscle"),
    "cortical_bone": (None, None),  # bone line: a + b * CORTICAL_BONE_MG_CM3
    "table": (250.0, None),  # carbon-fibre skin of the couch
    "table_foam": (-930.0, None),  # foam core of the couch and the mattress
}


def _check_kvp(kvp) -> float:
    try:
        value = float(kvp)
    except (TypeError, ValueError):
        raise TypeError(f"kvp must be a number of kV, got {kvp!r}") from None
    if not (KVP_RANGE[0] <= value <= KVP_RANGE[1]):
        raise ValueError(f"kvp must lie in {KVP_RANGE[0]:g}-{KVP_RANGE[1]:g} kV "
                         f"(tabulated: {SUPPORTED_KVP}); got {kvp!r}")
    return value


def effective_energy_kev(kvp: float) -> float:
    """Effective photon energy (keV) of a body-filtered spectrum at `kvp`.

    Linear model ``E = 16 + 0.433 * kVp`` (68 keV at 120 kVp, 59 keV at 100 kVp,
    51 keV at 80 kVp) [K: effective energies of 50-70 keV behind about 30 cm of
    water are typical; the exact value depends on filtration and patient size].

    Examples
    --------
    >>> round(effective_energy_kev(120), 1)
    68.0
    """
    return 16.0 + 0.433 * _check_kvp(kvp)


def _mass_attenuation(material: str, energy_kev: float) -> float:
    # log-log interpolation of the tabulated coefficients
    return float(np.exp(np.interp(np.log(energy_kev), np.log(_XCOM_KEV), np.log(_XCOM[material]))))


def _xcom_hu(material: str, energy_kev: float) -> float:
    if material == "lung":  # 14 % tissue (blood-like), 86 % air by volume
        return 0.14 * _xcom_hu("blood", energy_kev) - 0.86 * 1000.0
    ratio = _mass_attenuation(material, energy_kev) / _mass_attenuation("water", energy_kev)
    return 1000.0 * (_ICRU_DENSITY_G_CM3[material] * ratio - 1.0)


def default_hu_line(kvp: float) -> tuple[float, float]:
    """Default ``(a_hu, b_hu_per_mg_cm3)`` of bone: ``HU = a + b * rho_K2HPO4``.

    Parameters
    ----------
    kvp : float
        Tube voltage in kV, 70-140 (80, 100 and 120 are the tabulated cases).

    Returns
    -------
    a_hu : float
        HU at zero mineral, -0.4 HU for every kVp.
    b_hu_per_mg_cm3 : float
        HU per mg K2HPO4/cm³, rounded to 3 decimals; rises as kVp falls
        (1.424 at 120, 1.704 at 100, 2.194 at 80 kVp).

    Raises
    ------
    ValueError
        If `kvp` lies outside 70-140 kV.

    Notes
    -----
    A voxel holding ``rho`` mg/cm³ K2HPO4 in water whose water density falls as
    ``999.6 - 0.2174 * rho`` (the material behind QCT Pro's two-component fit,
    qct-reference §1.2) has

    ``HU = -0.4 + rho * ((mu/rho)_K2HPO4 / (mu/rho)_water - 0.2174)``

    at a monochromatic effective energy. The ratio of mass attenuation
    coefficients comes from NIST XCOM (K2HPO4 from its formula) at the effective
    energy of :func:`effective_energy_kev`. The intercept ``a = 999.6 - 1000`` is
    the reference water density expressed in HU: water reads 0 HU on a
    water-calibrated scanner. Real scanners differ by a few HU and percent; the
    cohort generator draws such per-scanner deviations around these defaults.
    The empirical check: 80 mg/cm³ (ACR osteoporosis threshold) reads 113 HU at
    120 kVp, close to the 110 HU opportunistic threshold of Pickhardt et al.
    (Ann Intern Med 2013).

    Examples
    --------
    >>> default_hu_line(80)
    (-0.4, 2.194)
    """
    energy = effective_energy_kev(kvp)
    ratio = _mass_attenuation("k2hpo4", energy) / _mass_attenuation("water", energy)
    a_hu = WATER_REFERENCE_MG_CM3 - 1000.0
    return round(a_hu, 6), round(ratio - WATER_DISPLACEMENT_PER_MG_K2HPO4, 3)


def bone_hu(density_mg_cm3, a_hu: float, b_hu_per_mg_cm3: float):
    """HU of bone with K2HPO4-equivalent `density_mg_cm3`: ``a + b * rho``.

    Works on scalars and arrays (float32 arrays stay float32).

    Examples
    --------
    >>> bone_hu(0.0, -0.4, 1.424)
    -0.4
    """
    if isinstance(density_mg_cm3, np.ndarray):
        dtype = density_mg_cm3.dtype if density_mg_cm3.dtype.kind == "f" else np.float64
        return (density_mg_cm3 * dtype.type(b_hu_per_mg_cm3) + dtype.type(a_hu)).astype(dtype, copy=False)
    return float(a_hu) + float(b_hu_per_mg_cm3) * float(density_mg_cm3)


def mindways_rod_hu(k2hpo4_mg_cm3, water_mg_cm3, a_hu: float, b_hu_per_mg_cm3: float):
    """HU of a Mindways-style rod with certified K2HPO4 and water densities (mg/cm³).

    ``HU = W + (b + 0.2174) * K + (a - 999.6)``, so that QCT Pro's two-component
    fit returns ``sigma_CT = b`` and ``beta_CT = a`` (qct-reference §1.2).

    Examples
    --------
    >>> rods_k = np.array([-51.83, -53.40, 58.88, 157.05, 375.83])
    >>> rods_w = np.array([1012.25, 1056.95, 1103.57, 1119.52, 923.20])
    >>> np.round(mindways_rod_hu(rods_k, rods_w, -0.4, 1.1826), 2)  # sigma_ref = 1.40
    array([-60.31, -17.81, 186.  , 339.39, 449.36])
    """
    k = np.asarray(k2hpo4_mg_cm3, dtype=np.float64)
    w = np.asarray(water_mg_cm3, dtype=np.float64)
    hu = w + (float(b_hu_per_mg_cm3) + WATER_DISPLACEMENT_PER_MG_K2HPO4) * k \
        + (float(a_hu) - WATER_REFERENCE_MG_CM3)
    return hu if hu.ndim else float(hu)


def ha_rod_hu(ha_mg_cm3, a_hu: float, b_hu_per_mg_cm3: float):
    """HU of a hydroxyapatite rod (mg HA/cm³) in water-equivalent resin.

    Converts with Faulkner et al. (1993), ``HA = 1.15 K - 7.32``, so
    ``HU = a + b * (HA + 7.32) / 1.15``.

    Examples
    --------
    >>> round(ha_rod_hu(100.0, -0.4, 1.424), 2)
    132.49
    """
    k = (np.asarray(ha_mg_cm3, dtype=np.float64) + 7.32) / 1.15
    hu = float(a_hu) + float(b_hu_per_mg_cm3) * k
    return hu if hu.ndim else float(hu)


def tissue_hu(tissue: str, kvp: float = 120.0, *, a_hu: float | None = None,
              b_hu_per_mg_cm3: float | None = None) -> float:
    """Typical unenhanced HU of a tissue at `kvp`.

    Parameters
    ----------
    tissue : str
        One of :data:`TISSUES`.
    kvp : float, optional
        Tube voltage, 70-140 kV.
    a_hu, b_hu_per_mg_cm3 : float, optional
        Bone line used for ``"cortical_bone"`` (default: :func:`default_hu_line`).

    Returns
    -------
    float
        HU rounded to 0.1.

    Raises
    ------
    ValueError
        For an unknown tissue or a kVp outside 70-140 kV.

    Notes
    -----
    Values at 120 kVp are typical clinical values (air -1000, lung -860,
    fat -100, muscle 50, blood 40, liver 60, disc 85, ...). The change with kVp is
    that of a reference material computed from NIST XCOM mass attenuation at the
    effective energy (:func:`effective_energy_kev`): ICRU-44 adipose for fat
    (-100 -> -129 HU from 120 to 80 kVp, the expected fall of fat at low kVp),
    skeletal muscle for soft tissues, whole blood for blood; lung is 14 % blood.
    Cortical bone follows the bone line at :data:`CORTICAL_BONE_MG_CM3`.

    Examples
    --------
    >>> tissue_hu("muscle", 100)
    51.2
    >>> tissue_hu("cortical_bone", 120)
    1637.2
    """
    if tissue not in _TISSUE_120:
        raise ValueError(f"unknown tissue {tissue!r}; expected one of {TISSUES}")
    kvp = _check_kvp(kvp)
    if tissue == "cortical_bone":
        a0, b0 = default_hu_line(kvp)
        a = a0 if a_hu is None else float(a_hu)
        b = b0 if b_hu_per_mg_cm3 is None else float(b_hu_per_mg_cm3)
        return round(a + b * CORTICAL_BONE_MG_CM3, 1)
    base, material = _TISSUE_120[tissue]
    if material is None:
        return float(base)
    energy, energy_120 = effective_energy_kev(kvp), effective_energy_kev(120.0)
    return round(base + _xcom_hu(material, energy) - _xcom_hu(material, energy_120), 1)


def tissue_table(kvp: float = 120.0, *, a_hu: float | None = None,
                 b_hu_per_mg_cm3: float | None = None) -> dict[str, float]:
    """HU of every tissue in :data:`TISSUES` at `kvp` (see :func:`tissue_hu`).

    Examples
    --------
    >>> table = tissue_table(120)
    >>> table["air"], table["lung"], table["disc"]
    (-1000.0, -860.0, 85.0)
    """
    return {t: tissue_hu(t, kvp, a_hu=a_hu, b_hu_per_mg_cm3=b_hu_per_mg_cm3) for t in TISSUES}


# ---------------------------------------------------------------------------
# Point-spread function
# ---------------------------------------------------------------------------

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548


def _as_triplet(value, name: str) -> tuple[float, float, float]:
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), (3,))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} must be 3 finite non-negative values in mm, got {value!r}")
    return tuple(float(v) for v in values)


def psf_sigma_voxels(fwhm_mm, spacing) -> tuple[float, float, float]:
    """Gaussian sigma per array axis, in voxels, of a PSF with FWHM `fwhm_mm`.

    ``sigma = FWHM / 2.3548 / spacing``.

    Parameters
    ----------
    fwhm_mm : float or (3,) array_like
        FWHM in mm per array axis (through-plane first for canonical volumes).
    spacing : (3,) array_like
        Voxel size in mm per array axis.

    Examples
    --------
    >>> [round(s, 3) for s in psf_sigma_voxels((2.0, 1.1, 1.1), (2.0, 0.7, 0.7))]
    [0.425, 0.667, 0.667]
    """
    fwhm = _as_triplet(fwhm_mm, "fwhm_mm")
    spacing = _as_triplet(spacing, "spacing")
    if min(spacing) <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    return tuple(f / _FWHM_PER_SIGMA / s for f, s in zip(fwhm, spacing))


def apply_psf(hu, spacing, fwhm_mm, *, out: np.ndarray | None = None) -> np.ndarray:
    """Blur `hu` with a separable Gaussian PSF given by its FWHM in mm.

    Parameters
    ----------
    hu : (I, J, K) array_like
        Image in HU.
    spacing : (3,) array_like
        Voxel size in mm per array axis.
    fwhm_mm : float or (3,) array_like
        PSF FWHM in mm per axis (e.g. ``(slice_mm, 1.1, 1.1)``); 0 leaves an axis unblurred.
    out : ndarray, optional
        float32 array of the same shape to write into (may be `hu` itself for
        an in-place blur); by default a new array.

    Returns
    -------
    ndarray of float32

    Examples
    --------
    >>> img = np.zeros((1, 21, 21), np.float32); img[0, 10, 10] = 1.0
    >>> blurred = apply_psf(img, (1.0, 0.5, 0.5), (0.0, 1.1, 1.1))
    >>> round(float(blurred.sum()), 4), bool(blurred.argmax() == img.argmax())
    (1.0, True)
    """
    from scipy import ndimage

    arr = np.asarray(hu)
    sigma = psf_sigma_voxels(fwhm_mm, spacing)
    if out is None:
        out = np.array(arr, dtype=np.float32, copy=True)
    elif out is not arr:
        out[...] = arr
    for axis, s in enumerate(sigma):
        if s > 0.05 and out.shape[axis] > 1:
            ndimage.gaussian_filter1d(out, s, axis=axis, output=out, mode="nearest", truncate=3.5)
    return out


# ---------------------------------------------------------------------------
# Correlated noise
# ---------------------------------------------------------------------------

def noise_power_spectrum(shape_yx, pixel_mm, *,
                         peak_cycles_mm: float = DEFAULT_NPS_PEAK_CYCLES_MM) -> np.ndarray:
    """In-plane noise power spectrum on the FFT grid, normalized to mean 1.

    ``NPS(f) ∝ (f / f_p) * exp(1 - f / f_p)``: zero at f = 0 (the ramp filter of
    filtered back-projection), maximum at ``f_p``, slow roll-off by the kernel.

    Parameters
    ----------
    shape_yx : (2,) tuple of int
        In-plane grid shape.
    pixel_mm : float or (2,) array_like
        Pixel size in mm (rows, columns).
    peak_cycles_mm : float, optional
        Frequency of the maximum, cycles/mm.

    Returns
    -------
    (ny, nx) ndarray of float64
        Spectrum in ``numpy.fft.fftfreq`` order; its mean is 1, so white noise
        of unit variance filtered by ``sqrt(NPS)`` has unit variance.

    Examples
    --------
    >>> nps = noise_power_spectrum((64, 64), 0.7)
    >>> round(float(nps.mean()), 6), float(nps[0, 0])
    (1.0, 0.0)
    """
    ny, nx = (int(n) for n in shape_yx)
    py, px = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (2,))
    if peak_cycles_mm <= 0:
        raise ValueError(f"peak_cycles_mm must be positive, got {peak_cycles_mm}")
    fy = np.fft.fftfreq(ny, py)[:, None]
    fx = np.fft.fftfreq(nx, px)[None, :]
    ratio = np.hypot(fy, fx) / float(peak_cycles_mm)
    nps = ratio * np.exp(1.0 - ratio)
    mean = nps.mean()
    if mean <= 0:  # a 1x1 grid
        return np.ones((ny, nx))
    return nps / mean


def _z_kernel(fwhm_z_mm: float, slice_mm: float) -> np.ndarray:
    """Discrete Gaussian along z with unit sum of squares (variance-preserving)."""
    sigma = float(fwhm_z_mm) / _FWHM_PER_SIGMA / float(slice_mm)
    if sigma < 0.05:
        return np.ones(1)
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / math.sqrt(float(np.sum(kernel**2)))


_NOISE_POOL_SLICES = 48


class _NoiseSource:
    """Unit-variance in-plane-filtered noise slices ``u_m`` for m = 0 .. n-1.

    Up to :data:`_NOISE_POOL_SLICES` slices are independent draws. Longer volumes
    reuse a pool of that many filtered slices, each reuse with an independent random
    circular shift and sign: a circularly shifted periodic field has exactly the same
    statistics, and two reuses are uncorrelated unless their shifts differ by less
    than the correlation length (probability below 1e-3 on a 512² grid).
    """

    def __init__(self, n, shape_yx, gain, rng, workers=-1):
        from scipy import fft

        ny, nx = shape_yx
        pool_n = min(n, _NOISE_POOL_SLICES)
        pool = np.empty((pool_n, ny, nx), dtype=np.float32)
        for start in range(0, pool_n, 16):
            stop = min(pool_n, start + 16)
            white = rng.standard_normal((stop - start, ny, nx), dtype=np.float32)
            spec = fft.rfft2(white, axes=(1, 2), workers=workers)
            spec *= gain
            pool[start:stop] = fft.irfft2(spec, s=(ny, nx), axes=(1, 2), workers=workers)
        self.pool = pool
        self.n = n
        if n > pool_n:
            self.index = rng.integers(0, pool_n, n)
            self.shift = np.stack([rng.integers(0, ny, n), rng.integers(0, nx, n)], axis=1)
            self.sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
            self.index[:pool_n] = np.arange(pool_n)
            self.shift[:pool_n] = 0
            self.sign[:pool_n] = 1.0

    def __call__(self, m):
        if self.n <= len(self.pool):
            return self.pool[m]
        base = self.pool[self.index[m]]
        dy, dx = (int(v) for v in self.shift[m])
        out = np.roll(base, (dy, dx), axis=(0, 1)) if (dy or dx) else base.copy()
        if self.sign[m] < 0:
            np.negative(out, out=out)
        return out


def _add_noise_slabs(hu, spacing, noise_hu, rng, peak_cycles_mm, fwhm_z_mm, psf_fwhm_mm,
                     chunk_slices=16):
    """In place: ``hu <- PSF_xy * hu + noise`` (PSF by FFT, slab by slab)."""
    from scipy import fft

    nz, ny, nx = hu.shape
    kernel = _z_kernel(spacing[0] if fwhm_z_mm is None else fwhm_z_mm, spacing[0]).astype(np.float32)
    rad = kernel.size // 2
    gain = np.sqrt(noise_power_spectrum((ny, nx), spacing[1:], peak_cycles_mm=peak_cycles_mm))
    gain = gain[:, : nx // 2 + 1].astype(np.float32)
    source = _NoiseSource(nz + 2 * rad, (ny, nx), gain, rng) if noise_hu > 0 else None
    psf = None if psf_fwhm_mm is None else _psf_gain((ny, nx), spacing[1:], psf_fwhm_mm)
    scale = np.float32(noise_hu)
    for start in range(0, nz, chunk_slices):
        stop = min(nz, start + chunk_slices)
        slab = hu[start:stop]
        if psf is not None:
            spec = fft.rfft2(slab, axes=(1, 2), workers=-1)
            spec *= psf
            slab[...] = fft.irfft2(spec, s=(ny, nx), axes=(1, 2), workers=-1)
        if source is None:
            continue
        # output slice k = sum_j kernel[j] * u[k + j] (sources shifted by rad)
        tmp = np.empty((ny, nx), dtype=np.float32)
        weights = kernel * scale
        for m in range(start, stop + 2 * rad):
            u = source(m)  # never modified: it may be a view of the pool
            for j in range(kernel.size):
                k = m - j
                if start <= k < stop:
                    np.multiply(u, weights[j], out=tmp)
                    slab[k - start] += tmp


def _psf_gain(shape_yx, pixel_mm, fwhm_mm):
    """Transfer function (rfft2 layout) of circular convolution with the sampled Gaussian PSF.

    The kernel is sampled in space (radius 3.5 sigma, unit sum), as :func:`apply_psf`
    does, and then transformed: a Gaussian sampled in frequency instead would be cut at
    the Nyquist frequency and ring (Gibbs) far from bright edges.
    """
    ny, nx = shape_yx
    py, px = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (2,))
    kernel = np.zeros((ny, nx))
    parts = []
    for n, pixel in ((ny, py), (nx, px)):
        sigma = float(fwhm_mm) / _FWHM_PER_SIGMA / pixel
        radius = min(n // 2, max(1, int(math.ceil(3.5 * sigma))))
        x = np.arange(-radius, radius + 1)
        k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
        parts.append((x % n, k / k.sum()))
    (iy, ky), (ix, kx) = parts
    np.add.at(kernel, (iy[:, None], ix[None, :]), ky[:, None] * kx[None, :])
    return np.fft.rfft2(kernel).astype(np.complex64)


def correlated_noise(shape, spacing, noise_hu: float, *, rng=None,
                     peak_cycles_mm: float = DEFAULT_NPS_PEAK_CYCLES_MM,
                     fwhm_z_mm: float | None = None, chunk_slices: int = 16) -> np.ndarray:
    """Stationary correlated CT noise with standard deviation `noise_hu`.

    White Gaussian noise is filtered in-plane by ``sqrt(NPS)`` of
    :func:`noise_power_spectrum` (periodic FFT) and along axis 0 by a Gaussian of
    FWHM `fwhm_z_mm` (the slice-sensitivity profile; slices are drawn beyond the
    volume ends, so the process is stationary), each filter normalized so that
    the expected SD is exactly `noise_hu`. Volumes longer than 48 slices reuse
    48 filtered slices with independent random circular shifts and signs, which
    keeps the second-order statistics (and :func:`noise_sd_of_mean`) exact up to
    negligible coincidences and saves most of the random-number and FFT work.

    Parameters
    ----------
    shape : (3,) tuple of int
        Volume shape (slices, rows, columns).
    spacing : (3,) array_like
        Voxel size in mm (slice, row, column).
    noise_hu : float
        Target standard deviation in HU (low-dose chest CT: 15-60).
    rng : int, Generator or None, optional
        Random source (``numpy.random.default_rng(rng)``).
    peak_cycles_mm : float, optional
        Peak of the in-plane NPS.
    fwhm_z_mm : float, optional
        Through-plane correlation FWHM, default the slice spacing (adjacent
        slices then correlate by about 0.25).
    chunk_slices : int, optional
        Slices per in-plane FFT batch (memory/speed trade-off).

    Returns
    -------
    ndarray of float32, shape `shape`

    See Also
    --------
    noise_sd_of_mean : Exact SD of the mean of this noise over a mask.

    Examples
    --------
    >>> noise = correlated_noise((8, 64, 64), (2.0, 0.7, 0.7), 30.0, rng=0)
    >>> noise.dtype, 27 < float(noise.std()) < 33
    (dtype('float32'), True)
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive sizes, got {shape}")
    spacing = _as_triplet(spacing, "spacing")
    if not (np.isfinite(noise_hu) and noise_hu >= 0):
        raise ValueError(f"noise_hu must be a finite SD >= 0 in HU, got {noise_hu!r}")
    out = np.zeros(shape, dtype=np.float32)
    if noise_hu > 0:
        _add_noise_slabs(out, spacing, noise_hu, np.random.default_rng(rng), peak_cycles_mm,
                         fwhm_z_mm, None, max(1, int(chunk_slices)))
    return out


def blur_and_add_noise(hu, spacing, *, psf_fwhm_mm, noise_hu: float, rng=None,
                       peak_cycles_mm: float = DEFAULT_NPS_PEAK_CYCLES_MM,
                       fwhm_z_mm: float | None = None, chunk_slices: int = 16) -> np.ndarray:
    """In place: blur `hu` in-plane by a Gaussian PSF and add :func:`correlated_noise`.

    One FFT pass per slab does both (the in-plane PSF is applied periodically; the
    through-plane profile is left to the caller, e.g. :func:`apply_psf` with a
    zero in-plane FWHM). The noise has exactly the statistics of
    :func:`correlated_noise` (same generator), so :func:`noise_sd_of_mean` applies.

    Parameters
    ----------
    hu : (I, J, K) ndarray of float32
        Image, modified in place and returned.
    spacing : (3,) array_like
        Voxel size in mm.
    psf_fwhm_mm : float
        In-plane PSF FWHM in mm.
    noise_hu : float
        Noise SD (0: blur only).
    rng, peak_cycles_mm, fwhm_z_mm, chunk_slices
        As in :func:`correlated_noise`.

    Examples
    --------
    >>> img = np.full((4, 32, 32), 40.0, np.float32)
    >>> out = blur_and_add_noise(img, (1.0, 0.7, 0.7), psf_fwhm_mm=1.1, noise_hu=20.0, rng=1)
    >>> out is img, abs(float(img.mean()) - 40.0) < 2.0
    (True, True)
    """
    if not isinstance(hu, np.ndarray) or hu.dtype != np.float32 or hu.ndim != 3:
        raise TypeError("hu must be a 3-D float32 ndarray (it is modified in place)")
    spacing = _as_triplet(spacing, "spacing")
    if noise_hu < 0 or not np.isfinite(noise_hu):
        raise ValueError(f"noise_hu must be a finite SD >= 0 in HU, got {noise_hu!r}")
    _add_noise_slabs(hu, spacing, float(noise_hu), np.random.default_rng(rng), peak_cycles_mm,
                     fwhm_z_mm, psf_fwhm_mm if psf_fwhm_mm > 0 else None, max(1, int(chunk_slices)))
    return hu


def noise_sd_of_mean(mask, spacing, noise_hu: float, *, grid_shape_yx=None,
                     peak_cycles_mm: float = DEFAULT_NPS_PEAK_CYCLES_MM,
                     fwhm_z_mm: float | None = None) -> float:
    """Exact SD (HU) of the mean of :func:`correlated_noise` over the voxels of `mask`.

    ``Var(mean) = sigma² / n² * sum_{d} C(d) * P(d)``, where ``C`` is the
    noise autocorrelation (in-plane: inverse FFT of the NPS on the generation
    grid; through-plane: autocorrelation of the z kernel; the process is
    stationary, so this is exact up to float rounding) and ``P(d)`` counts
    the pairs of mask voxels separated by the lag ``d``. Because the NPS is zero
    at f = 0, the mean over a large region is far less noisy than ``sigma/sqrt(n)``.

    Parameters
    ----------
    mask : (I, J, K) array_like of bool
        Region (on the noise grid); its bounding box is used.
    spacing : (3,) array_like
        Voxel size in mm.
    noise_hu : float
        SD of the noise.
    grid_shape_yx : (2,) tuple of int, optional
        In-plane shape of the grid the noise was generated on (default: that of `mask`).
    peak_cycles_mm, fwhm_z_mm : float, optional
        As given to :func:`correlated_noise`.

    Returns
    -------
    float

    Examples
    --------
    >>> mask = np.zeros((10, 64, 64), bool); mask[3:7, 20:40, 20:40] = True
    >>> sd = noise_sd_of_mean(mask, (2.0, 0.7, 0.7), 30.0)
    >>> bool(sd < 30.0 / np.sqrt(mask.sum()))
    True
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise ValueError("mask must be a 3-D boolean array with at least one True voxel")
    spacing = _as_triplet(spacing, "spacing")
    grid_yx = mask.shape[1:] if grid_shape_yx is None else tuple(int(n) for n in grid_shape_yx)
    idx = np.nonzero(mask)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    box = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float64)
    ext = box.shape
    # pair counts P(d) for lags -(n-1)..(n-1), via zero-padded FFT autocorrelation
    pad = tuple(2 * n - 1 for n in ext)
    spec = np.fft.rfftn(box, s=pad, axes=(0, 1, 2))
    pairs = np.fft.irfftn(np.abs(spec) ** 2, s=pad, axes=(0, 1, 2))
    pairs = np.fft.fftshift(pairs)  # lag 0 at the centre index n-1
    # in-plane autocorrelation on the generation grid
    nps = noise_power_spectrum(grid_yx, spacing[1:], peak_cycles_mm=peak_cycles_mm)
    c_xy = np.real(np.fft.ifft2(nps))  # c_xy[0, 0] == 1
    lag_y = np.arange(-(ext[1] - 1), ext[1])
    lag_x = np.arange(-(ext[2] - 1), ext[2])
    c_xy = c_xy[np.ix_(lag_y % grid_yx[0], lag_x % grid_yx[1])]
    # through-plane autocorrelation of the kernel
    kernel = _z_kernel(spacing[0] if fwhm_z_mm is None else fwhm_z_mm, spacing[0])
    full = np.correlate(kernel, kernel, mode="full")  # lag 0 in the middle, value 1
    mid = full.size // 2
    c_z = np.array([full[mid + d] if abs(d) <= mid else 0.0 for d in range(-(ext[0] - 1), ext[0])])
    total = float(np.einsum("z,zyx,yx->", c_z, pairs, c_xy))
    n = float(box.sum())
    return float(noise_hu) * math.sqrt(max(total, 0.0)) / n


# ---------------------------------------------------------------------------
# Field of view
# ---------------------------------------------------------------------------

def fov_mask(shape_yx, pixel_mm, *, diameter_mm: float | None = None) -> np.ndarray:
    """Pixels whose centre lies inside the reconstruction circle.

    Parameters
    ----------
    shape_yx : (2,) tuple of int
        In-plane grid shape.
    pixel_mm : float or (2,) array_like
        Pixel size in mm.
    diameter_mm : float, optional
        Circle diameter; default the inscribed circle, ``min(ny*py, nx*px)``.

    Returns
    -------
    (ny, nx) ndarray of bool

    Examples
    --------
    >>> m = fov_mask((8, 8), 1.0)
    >>> bool(m[4, 4]), bool(m[0, 0])
    (True, False)
    """
    ny, nx = (int(n) for n in shape_yx)
    py, px = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (2,))
    if diameter_mm is None:
        diameter_mm = min(ny * py, nx * px)
    y = (np.arange(ny) - (ny - 1) / 2.0) * py
    x = (np.arange(nx) - (nx - 1) / 2.0) * px
    return (y[:, None] ** 2 + x[None, :] ** 2) <= (float(diameter_mm) / 2.0) ** 2


def apply_fov_padding(hu, pixel_mm, *, padding_hu: float = PADDING_HU[0],
                      diameter_mm: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Set every voxel outside the reconstruction circle to `padding_hu`, as scanners do.

    Parameters
    ----------
    hu : (I, J, K) array_like
        Canonical volume (axial slices along axis 0).
    pixel_mm : float or (2,) array_like
        In-plane pixel size in mm.
    padding_hu : float, optional
        Value outside the circle (-2048 or -3024 on real scanners).
    diameter_mm : float, optional
        See :func:`fov_mask`.
    out : ndarray, optional
        Array to write into (may be `hu`); default a new float32 array.

    Examples
    --------
    >>> vol = apply_fov_padding(np.zeros((2, 8, 8)), 1.0)
    >>> float(vol[0, 0, 0]), float(vol[0, 4, 4])
    (-2048.0, 0.0)
    """
    arr = np.asarray(hu)
    if out is None:
        out = np.array(arr, dtype=np.float32, copy=True)
    elif out is not arr:
        out[...] = arr
    outside = ~fov_mask(arr.shape[-2:], pixel_mm, diameter_mm=diameter_mm)
    out[..., outside] = np.float32(padding_hu)
    return out
