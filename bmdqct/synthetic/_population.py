"""Population model of trabecular spine BMD in a low-dose CT screening cohort (private).

Mean L1 trabecular BMD (mg K2HPO4/cm³) by age and sex, its spread, and the
ratio of other levels to L1. Shared by the subject generator (random density
when none is given) and the cohort generator.

Model (documented in :func:`bmdqct.synthetic.cohort.synthesize_cohort`):

* women: 165 mg/cm³ up to age 45, then -3.2 mg/cm³ per year until 65 and
  -1.8 mg/cm³ per year after (menopausal loss);
* men: 160 mg/cm³ at 40, -1.7 mg/cm³ per year;
* between-subject SD 28 mg/cm³ (women) and 27 mg/cm³ (men), truncated at 25.

These reproduce the shape of QCT reference curves of Asian and European
cohorts (e.g. China Action on Spine and Hip Status, CASH; UCSF/Mindways normative
data) and an osteoporosis prevalence (mean L1-L2 < 80 mg/cm³) of about 25 % in
women and 10 % in men aged 50-80, close to the prevalences reported for LDCT-QCT
screening in China by Cheng et al. (JBMR 2021;36:427-435: 29 % and 13.5 %) [K].
"""

from __future__ import annotations

import numpy as np

#: Trabecular BMD of each level relative to L1 (thoracic and cervical bodies are denser).
LEVEL_DENSITY_FACTOR = {
    "C3": 1.42, "C4": 1.40, "C5": 1.38, "C6": 1.35, "C7": 1.32,
    "T1": 1.29, "T2": 1.26, "T3": 1.23, "T4": 1.20, "T5": 1.17, "T6": 1.15,
    "T7": 1.13, "T8": 1.11, "T9": 1.09, "T10": 1.07, "T11": 1.05, "T12": 1.03,
    "L1": 1.00, "L2": 0.975, "L3": 0.96, "L4": 0.955, "L5": 0.95,
}

#: SD of a level's own deviation from the subject's profile, mg/cm³ (gives r ≈ 0.95 between T12, L1, L2).
LEVEL_RESIDUAL_SD_MG_CM3 = 6.0

MIN_DENSITY_MG_CM3 = 25.0


def mean_l1_density(age_years, sex) -> np.ndarray:
    """Population mean L1 trabecular BMD (mg/cm³) at `age_years` for sex "F" or "M"."""
    age = np.asarray(age_years, dtype=np.float64)
    female = np.asarray(sex) == "F"
    women = np.where(age <= 45, 165.0,
                     np.where(age <= 65, 165.0 - 3.2 * (age - 45), 101.0 - 1.8 * (age - 65)))
    men = 160.0 - 1.7 * np.maximum(age - 40.0, 0.0)
    return np.where(female, women, men)


def draw_l1_density(age_years, sex, rng) -> float:
    """One subject's L1 BMD: population mean plus a normal deviation, truncated at 25 mg/cm³."""
    sd = 28.0 if sex == "F" else 27.0
    value = float(mean_l1_density(age_years, sex)) + sd * float(rng.standard_normal())
    return max(MIN_DENSITY_MG_CM3, value)


def level_profile(l1_density: float, levels, rng=None) -> dict[str, float]:
    """Density of every level from the L1 value; with `rng`, adds a level-specific deviation."""
    out = {}
    for level in levels:
        value = l1_density * LEVEL_DENSITY_FACTOR[level]
        if rng is not None:
            value += LEVEL_RESIDUAL_SD_MG_CM3 * float(rng.standard_normal())
        out[level] = max(MIN_DENSITY_MG_CM3, value)
    return out
