"""Synthetic CT scans with exact ground truth (subjects, cohorts, physics).

``synthesize_ldct(seed, **options) -> (CTVolume, Truth)`` renders a low-dose
chest CT of a seeded synthetic subject; ``synthesize_cohort(n, seed)`` draws a
screening population with simulated QCT reference values. The shared physics
(bone line per kVp, tissue HU, PSF, correlated noise, FOV padding) lives in
:mod:`bmdqct.synthetic._physics` and is re-exported here.
"""

from ._physics import (
    CORTICAL_BONE_MG_CM3,
    DEFAULT_NPS_PEAK_CYCLES_MM,
    DEFAULT_PSF_FWHM_MM,
    KVP_RANGE,
    PADDING_HU,
    SUPPORTED_KVP,
    TISSUES,
    apply_fov_padding,
    apply_psf,
    blur_and_add_noise,
    bone_hu,
    correlated_noise,
    default_hu_line,
    effective_energy_kev,
    fov_mask,
    ha_rod_hu,
    mindways_rod_hu,
    noise_power_spectrum,
    noise_sd_of_mean,
    psf_sigma_voxels,
    tissue_hu,
    tissue_table,
)
from .cohort import Cohort, CohortSubject, synthesize_cohort
from .subject import (
    DEFAULT_OPTIONS,
    DEFAULT_SCANNER,
    Truth,
    heldout_options,
    random_training_options,
    random_transfer_options,
    synthesize_ldct,
)

__all__ = [
    "CORTICAL_BONE_MG_CM3",
    "DEFAULT_NPS_PEAK_CYCLES_MM",
    "DEFAULT_OPTIONS",
    "DEFAULT_PSF_FWHM_MM",
    "DEFAULT_SCANNER",
    "KVP_RANGE",
    "PADDING_HU",
    "SUPPORTED_KVP",
    "TISSUES",
    "Cohort",
    "CohortSubject",
    "Truth",
    "apply_fov_padding",
    "apply_psf",
    "blur_and_add_noise",
    "bone_hu",
    "correlated_noise",
    "default_hu_line",
    "effective_energy_kev",
    "fov_mask",
    "ha_rod_hu",
    "heldout_options",
    "mindways_rod_hu",
    "noise_power_spectrum",
    "noise_sd_of_mean",
    "psf_sigma_voxels",
    "random_training_options",
    "random_transfer_options",
    "synthesize_cohort",
    "synthesize_ldct",
    "tissue_hu",
    "tissue_table",
]

# calibration owner: synthetic phantom scans (bmdqct.synthetic.phantom)
from .phantom import (
    EXAMPLE_CERTIFICATES,
    PhantomTruth,
    example_certificate,
    synthesize_phantom_scan,
)

__all__ += ["EXAMPLE_CERTIFICATES", "PhantomTruth", "example_certificate", "synthesize_phantom_scan"]
