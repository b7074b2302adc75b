"""Figures for bmdqct results (matplotlib, imported only here).

Computation lives in the pipeline modules; these functions only draw results
that were already computed. Every function accepts an optional ``ax`` and returns
the matplotlib Axes (or Figure for multi-panel pictures). ``import bmdqct`` never
imports this subpackage.
"""

from .agreement import plot_bland_altman, plot_regression, plot_roc  # noqa: F401  (agreement owner)
from .qc import plot_qc  # noqa: F401  (measure owner)
from .calibration import plot_calibration_history, plot_phantom_fit, plot_rod_rois  # noqa: F401  (calibration owner)
from .synthetic import plot_axial, plot_scan_views, plot_side_by_side, plot_synthetic_scan  # noqa: F401  (synthetic owner)
