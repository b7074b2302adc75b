"""A synthetic low-dose CT screening cohort with simulated QCT reference values.

:func:`synthesize_cohort` draws subjects (sex, age, true trabecular BMD per level,
scanner, kVp, dose, study date) and a simulated reference measurement of each by
asynchronously calibrated QCT with realistic error. Scans are realized on demand
with :meth:`Cohort.synthesize` (via :func:`~bmdqct.synthetic.synthesize_ldct`), and
:meth:`Cohort.table` exports the reference in the layout ``bmdqct agreement`` reads.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _physics, _population
from ._anatomy import MODEL_LEVELS
from .subject import DEFAULT_SCANNER

__all__ = ["Cohort", "CohortSubject", "synthesize_cohort", "REFERENCE_LEVELS", "SCANNER_FLEET"]

#: Levels with a reference value (Pan et al. 2020 measured T12, L1 and L2).
REFERENCE_LEVELS = ("T12", "L1", "L2")

#: Scanners of the synthetic site. SYN-0001 keeps the default bone line of each kVp exactly;
#: the others deviate by a few HU and percent (drawn from the cohort seed).
SCANNER_FLEET = (
    dict(DEFAULT_SCANNER),
    {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 128", "device_serial": "SYN-0002",
     "station": "SYNTH2"},
    {"manufacturer": "bmdqct-synthetic", "model": "SynthCT 16", "device_serial": "SYN-0003",
     "station": "SYNTH3"},
)

_KVP_CHOICES = (120.0, 100.0, 80.0)
_KVP_P = (0.70, 0.25, 0.05)


@dataclass(frozen=True)
class CohortSubject:
    """One subject of a :class:`Cohort` (true values, scan settings, reference values)."""

    case: str
    seed: int
    sex: str
    age_years: float
    density_mg_cm3: Mapping[str, float]  # true trabecular BMD of every modelled level
    reference_mg_cm3: Mapping[str, float]  # simulated QCT reference, REFERENCE_LEVELS (NaN: excluded)
    kvp: float
    noise_hu: float
    scanner: Mapping[str, str]
    a_hu: float
    b_hu_per_mg_cm3: float
    study_date: str
    options: Mapping[str, Any] = field(default_factory=dict)  # anatomy: n_rib_pairs, fracture, ...

    @property
    def bmd_l1_l2_mg_cm3(self) -> float:
        """True ACR diagnostic value: mean of L1 and L2."""
        return 0.5 * (self.density_mg_cm3["L1"] + self.density_mg_cm3["L2"])

    @property
    def reference_l1_l2_mg_cm3(self) -> float:
        """Reference diagnostic value: mean of the valid two of L1, L2 (T12 substitutes)."""
        return _diagnostic_mean(self.reference_mg_cm3)


@dataclass(frozen=True, eq=False)
class Cohort:
    """Subjects with true BMD, scan settings and simulated QCT reference values.

    Attributes
    ----------
    subjects : tuple of CohortSubject
    seed : int
    scanner_lines : dict
        ``{(device_serial, kvp): (a_hu, b_hu_per_mg_cm3)}``; a phantom scan of a
        scanner at a kVp must use this line to calibrate that scanner's subject scans.
    error_model : dict
        Parameters of the simulated reference error (see :func:`synthesize_cohort`).
    """

    subjects: tuple
    seed: int
    scanner_lines: Mapping[tuple, tuple]
    error_model: Mapping[str, float]

    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self):
        return iter(self.subjects)

    def __getitem__(self, key) -> CohortSubject:
        if isinstance(key, str):
            for s in self.subjects:
                if s.case == key:
                    return s
            raise KeyError(f"no case {key!r} in the cohort; cases are {self.subjects[0].case}.."
                           f"{self.subjects[-1].case}")
        return self.subjects[key]

    def scan_options(self, key, **overrides) -> dict:
        """Options of :func:`~bmdqct.synthetic.synthesize_ldct` that realize a subject's scan."""
        s = self[key]
        opts = {"density_mg_cm3": dict(s.density_mg_cm3), "kvp": s.kvp, "noise_hu": s.noise_hu,
                "a_hu": s.a_hu, "b_hu_per_mg_cm3": s.b_hu_per_mg_cm3, "scanner": dict(s.scanner),
                "study_date": s.study_date, "sex": s.sex, "age_years": s.age_years, **s.options}
        opts.update(overrides)
        return opts

    def synthesize(self, key, **overrides):
        """Render a subject's scan: ``(CTVolume, Truth)``; `overrides` change grid options etc.

        Examples
        --------
        >>> cohort = synthesize_cohort(3, seed=1)
        >>> vol, truth = cohort.synthesize(0, shape=64, pixel_mm=6.0, slice_mm=6.0,
        ...                                cranial="T11", caudal="L2")
        >>> round(truth.density_mg_cm3["L1"], 6) == round(cohort[0].density_mg_cm3["L1"], 6)
        True
        """
        from .subject import synthesize_ldct

        s = self[key]
        return synthesize_ldct(s.seed, **self.scan_options(key, **overrides))

    def table(self, *, truth: bool = False):
        """Reference values as a pandas DataFrame (the ``bmdqct agreement`` reference layout).

        Columns: ``case, T12_bmd_mg_cm3, L1_bmd_mg_cm3, L2_bmd_mg_cm3, bmd_l1_l2_mg_cm3, sex, age``.
        With ``truth=True`` the true densities instead, plus scan settings and the ACR category.
        """
        import pandas as pd

        rows = []
        for s in self.subjects:
            values = s.density_mg_cm3 if truth else s.reference_mg_cm3
            row = {"case": s.case}
            for level in REFERENCE_LEVELS:
                row[f"{level}_bmd_mg_cm3"] = round(float(values[level]), 2)
            dx = s.bmd_l1_l2_mg_cm3 if truth else s.reference_l1_l2_mg_cm3
            row["bmd_l1_l2_mg_cm3"] = round(float(dx), 2)
            row["sex"] = s.sex
            row["age"] = round(float(s.age_years), 1)
            if truth:
                row.update({"category": _category(dx), "kvp": s.kvp, "noise_hu": s.noise_hu,
                            "device_serial": s.scanner["device_serial"], "a_hu": s.a_hu,
                            "b_hu_per_mg_cm3": s.b_hu_per_mg_cm3, "study_date": s.study_date,
                            "seed": s.seed,
                            "anomalies": ";".join(f"{k}:{v}" for k, v in s.options.items()
                                                  if k in ("fracture", "sclerotic") and v)})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path, *, truth: bool = False) -> Path:
        """Write :meth:`table` to `path` (CSV) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table(truth=truth).to_csv(path, index=False)
        return path

    def prevalence(self, *, reference: bool = False) -> dict:
        """Fractions of subjects per ACR category (true or reference L1-L2 mean)."""
        values = [s.reference_l1_l2_mg_cm3 if reference else s.bmd_l1_l2_mg_cm3 for s in self.subjects]
        cats = [_category(v) for v in values]
        n = max(len(cats), 1)
        return {c: cats.count(c) / n for c in ("osteoporosis", "osteopenia", "normal")}


def _category(bmd: float) -> str:
    """ACR category (< 80 osteoporosis, 80-120 osteopenia, > 120 normal)."""
    if not math.isfinite(bmd):
        return "unknown"
    if bmd < 80.0:
        return "osteoporosis"
    if bmd <= 120.0:
        return "osteopenia"
    return "normal"


def _diagnostic_mean(values: Mapping[str, float]) -> float:
    valid = [lvl for lvl in ("L1", "L2") if math.isfinite(values.get(lvl, math.nan))]
    if len(valid) < 2 and math.isfinite(values.get("T12", math.nan)):
        valid = ["T12"] + valid
    if len(valid) < 2:
        return float(values[valid[0]]) if valid else math.nan
    return 0.5 * (float(values[valid[-2]]) + float(values[valid[-1]]))


def synthesize_cohort(n: int, seed: int = 0, *, female_fraction: float = 0.5,
                      age_range=(40.0, 80.0), fracture_rate: float = 0.0,
                      sclerotic_rate: float = 0.0, transitional_rate: float = 0.08,
                      scanners=SCANNER_FLEET) -> Cohort:
    """Draw a low-dose CT screening cohort with true BMD and simulated QCT reference values.

    Parameters
    ----------
    n : int
        Number of subjects (>= 1).
    seed : int, optional
        Cohort seed; subject ``i`` gets its own scan seed derived from it.
    female_fraction : float, optional
    age_range : (float, float), optional
        Ages are drawn from a beta(2.4, 1.6) distribution over this range (years; mean
        64 for 40-80, as in lung-screening cohorts).
    fracture_rate, sclerotic_rate : float, optional
        Probability that a subject has a wedge fracture (more likely at low BMD; placed
        at T11-L2) or a sclerotic bone island (T12-L2). A fractured level gets no
        reference value (it is excluded, and T12 substitutes in the L1-L2 mean).
    transitional_rate : float, optional
        Probability of 11 or 13 rib pairs (one third 11, two thirds 13).
    scanners : sequence of dict, optional
        Scanner metadata; the first keeps the default bone line.

    Returns
    -------
    Cohort

    Raises
    ------
    ValueError
        For n < 1, rates outside [0, 1], or an empty or inverted age range.

    Notes
    -----
    **True BMD.** L1 trabecular BMD (mg K2HPO4/cm³) is normal around a sex- and
    age-specific mean: women 165 up to 45 years, falling 3.2 mg/cm³ a year to 65
    and 1.8 a year after; men 160 at 40, falling 1.7 a year; SD 28 (women) and 27
    (men). Other levels follow the ratio to L1 of
    ``_population.LEVEL_DENSITY_FACTOR`` (T12 +3 %, L2 -2.5 %) plus a level-specific
    deviation of SD 6 mg/cm³, so T12, L1 and L2 correlate at r ≈ 0.95. This
    reproduces the decline of QCT reference curves (China Action on Spine and Hip
    Status; Cheng et al., J Bone Miner Res 2021;36:427-435) and an osteoporosis
    prevalence (L1-L2 mean < 80 mg/cm³) of about 17 % (women 23 %, men 11 %) with
    the default ages, within the 15-30 % reported for LDCT screening cohorts
    (Cheng 2021: 29 % of women and 13.5 % of men aged 50 or more) [K].

    **Scans.** kVp 120 / 100 / 80 with probabilities 0.70 / 0.25 / 0.05; noise
    SD uniform 20-45 HU (+6 HU at 80 kVp); three scanners with study dates in 2024.
    Scanner SYN-0001 uses :func:`~bmdqct.synthetic.default_hu_line`; the others
    deviate by N(0, 3 HU) in ``a`` and N(0, 3 %) in ``b`` per kVp.

    **Reference error** (asynchronously calibrated QCT on the same scan):
    ``ref = true * (1 + c_scanner) + e``, with a per-scanner/kVp calibration bias
    ``c_scanner ~ N(0, 1.5 %)`` (asynchronous calibration accuracy of a few
    percent and drift of 0.5-2.3 HU/year: Wang et al., Sci Rep 2017;7:6284;
    Löffler et al., Eur Radiol 2019) and a per-measurement error
    ``e ~ N(0, sqrt(1.5² + (0.02 * true)²))`` mg/cm³ (VOI placement and in-vivo
    precision of 1-2 %, ISCD; Glüer et al., Osteoporos Int 1995). Reference values
    are what ``bmdqct agreement`` compares against; the true values are in
    :meth:`Cohort.table` with ``truth=True``.

    Examples
    --------
    >>> cohort = synthesize_cohort(200, seed=3)
    >>> len(cohort), list(cohort.table().columns)[:5]
    (200, ['case', 'T12_bmd_mg_cm3', 'L1_bmd_mg_cm3', 'L2_bmd_mg_cm3', 'bmd_l1_l2_mg_cm3'])
    >>> 0.1 < cohort.prevalence()["osteoporosis"] < 0.35
    True
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of subjects, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, rate in (("female_fraction", female_fraction), ("fracture_rate", fracture_rate),
                       ("sclerotic_rate", sclerotic_rate), ("transitional_rate", transitional_rate)):
        if not (0.0 <= float(rate) <= 1.0):
            raise ValueError(f"{name} must lie in [0, 1], got {rate!r}")
    lo, hi = (float(a) for a in age_range)
    if not (18.0 <= lo < hi <= 100.0):
        raise ValueError(f"age_range must be (low, high) with 18 <= low < high <= 100, got {age_range!r}")
    scanners = tuple(dict(sc) for sc in scanners)
    if not scanners:
        raise ValueError("scanners must hold at least one scanner's metadata")
    root = np.random.SeedSequence([int(seed), 20200706])
    fleet_rng, subj_rng, err_rng = (np.random.default_rng(s) for s in root.spawn(3))
    lines, bias = {}, {}
    for j, sc in enumerate(scanners):
        for kvp in _KVP_CHOICES:
            a0, b0 = _physics.default_hu_line(kvp)
            da, db = fleet_rng.normal(0.0, 3.0), fleet_rng.normal(0.0, 0.03)
            c = fleet_rng.normal(0.0, 0.015)
            if j == 0:
                da, db = 0.0, 0.0
            lines[(sc["device_serial"], kvp)] = (round(a0 + da, 3), round(b0 * (1.0 + db), 4))
            bias[(sc["device_serial"], kvp)] = float(c)
    subjects = []
    for i in range(int(n)):
        sub_seed = int(np.random.SeedSequence([int(seed), i, 7]).generate_state(1)[0] % (2**31 - 1))
        sex = "F" if subj_rng.random() < female_fraction else "M"
        age = lo + (hi - lo) * float(subj_rng.beta(2.4, 1.6))
        l1 = _population.draw_l1_density(age, sex, subj_rng)
        density = _population.level_profile(l1, MODEL_LEVELS, subj_rng)
        kvp = float(subj_rng.choice(_KVP_CHOICES, p=_KVP_P))
        noise = round(float(subj_rng.uniform(20.0, 45.0)) + (6.0 if kvp == 80.0 else 0.0), 1)
        sc = scanners[int(subj_rng.integers(0, len(scanners)))]
        a_hu, b_hu = lines[(sc["device_serial"], kvp)]
        date = (_dt.date(2024, 1, 8) + _dt.timedelta(days=int(subj_rng.integers(0, 350)))).isoformat()
        options = {}
        u = subj_rng.random(6)
        if u[0] < transitional_rate:
            options["n_rib_pairs"] = 11 if u[1] < 1.0 / 3.0 else 13
        dx = 0.5 * (density["L1"] + density["L2"])
        p_fx = min(1.0, fracture_rate * (2.5 if dx < 80.0 else 0.7))
        if u[2] < p_fx:
            options["fracture"] = ("T11", "T12", "L1", "L2")[int(u[3] * 4) % 4]
        if u[4] < sclerotic_rate:
            options["sclerotic"] = ("T12", "L1", "L2")[int(u[5] * 3) % 3]
        c = bias[(sc["device_serial"], kvp)]
        reference = {}
        for level in REFERENCE_LEVELS:
            true = density[level]
            sd = math.sqrt(1.5**2 + (0.02 * true) ** 2)
            value = true * (1.0 + c) + sd * float(err_rng.standard_normal())
            reference[level] = math.nan if options.get("fracture") == level else round(value, 2)
        subjects.append(CohortSubject(
            case=f"case_{i:03d}" if n <= 1000 else f"case_{i:05d}", seed=sub_seed, sex=sex,
            age_years=round(age, 2), density_mg_cm3={k: round(v, 3) for k, v in density.items()},
            reference_mg_cm3=reference, kvp=kvp, noise_hu=noise, scanner=dict(sc), a_hu=a_hu,
            b_hu_per_mg_cm3=b_hu, study_date=date, options=options))
    error_model = {"calibration_bias_sd": 0.015, "measurement_sd_mg_cm3": 1.5,
                   "measurement_sd_fraction": 0.02}
    return Cohort(subjects=tuple(subjects), seed=int(seed), scanner_lines=lines, error_model=error_model)
