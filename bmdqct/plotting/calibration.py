"""Figures of calibrations: drift over time, a phantom fit, the rod ROIs of a phantom scan.

Compute with :mod:`bmdqct.calibration` first (:func:`~bmdqct.calibration.calibration_history`,
:func:`~bmdqct.calibration.calibrate_phantom`); these functions only draw.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_calibration_history", "plot_phantom_fit", "plot_rod_rois"]

_DRIFT = "#d62728"


def _new_axes(ax, n=1, *, figsize=(6.4, 4.0)):
    if ax is not None:
        axes = list(np.atleast_1d(ax))
        if len(axes) != n:
            raise ValueError(f"expected {n} Axes, got {len(axes)}")
        return axes[0].figure, axes
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]))


def plot_calibration_history(history, *, axes=None, reference_hu: float | None = None):
    """Draw slope, intercept and BMD at a reference HU over time, one line per scanner/kVp.

    Parameters
    ----------
    history : pandas.DataFrame
        From :func:`bmdqct.calibration.calibration_history`.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; default a new Figure with three stacked panels.
    reference_hu : float, optional
        Which ``bmd_at_<HU>_hu`` column to draw in the third panel; default the
        first one in `history`.

    Returns
    -------
    matplotlib.figure.Figure
        Calibrations flagged as drift are circled in red and labelled with the change.

    Examples
    --------
    >>> import pandas as pd
    >>> h = pd.DataFrame({"group": ["S_120kV_K2HPO4"] * 2, "acquisition_date": ["2024-01-01", "2024-02-01"],
    ...                   "slope": [0.80, 0.83], "intercept": [0.3, -1.0], "bmd_at_50_hu": [40.3, 40.5],
    ...                   "change_mg_cm3": [float("nan"), 4.0], "drift": [False, True]})
    >>> fig = plot_calibration_history(h)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['slope (mg/cm³ per HU)', 'intercept (mg/cm³)', 'BMD at 50 HU (mg/cm³)']
    """
    import pandas as pd

    fig, (ax_slope, ax_intercept, ax_bmd) = _new_axes(axes, 3, figsize=(7.0, 7.0))
    bmd_columns = [c for c in history.columns if c.startswith("bmd_at_") and c.endswith("_hu")]
    if reference_hu is not None:
        column = f"bmd_at_{float(reference_hu):g}_hu"
        if column not in bmd_columns:
            raise ValueError(f"history has no column {column!r}; it has {bmd_columns}")
    else:
        column = bmd_columns[0] if bmd_columns else None
    panels = [(ax_slope, "slope", "slope (mg/cm³ per HU)"), (ax_intercept, "intercept", "intercept (mg/cm³)")]
    if column is not None:
        hu = column[len("bmd_at_"):-len("_hu")]
        panels.append((ax_bmd, column, f"BMD at {hu} HU (mg/cm³)"))
    else:
        ax_bmd.set_visible(False)
    for group, rows in history.groupby("group", sort=True):
        dates = pd.to_datetime(rows["acquisition_date"])
        drift = rows["drift"].astype(bool).to_numpy()
        for ax, name, _ in panels:
            ax.plot(dates, rows[name], marker="o", label=str(group))
            if drift.any():
                ax.scatter(dates[drift], rows[name][drift], s=160, facecolors="none", edgecolors=_DRIFT,
                           linewidths=2, zorder=3)
        if column is not None:
            for date, value, change in zip(dates[drift], rows[column][drift], rows["change_mg_cm3"][drift]):
                ax_bmd.annotate(f"drift Δ{change:.1f} mg/cm³", (date, value), textcoords="offset points",
                                xytext=(6, 6), color=_DRIFT, fontsize="small")
    for ax, _, label in panels:
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_slope.set_title("Calibration history (red circles: drift beyond tolerance)")
    if len(history):
        ax_slope.legend(fontsize="small")
    if axes is None:
        fig.autofmt_xdate()
    return fig


def plot_phantom_fit(calibration, *, ax=None):
    """Draw a phantom calibration: rods against certified density, with the fitted line.

    Mindways (two-component) fits show ``HU - water`` against K2HPO4 with the
    reference line ``sigma_ref * K + beta_ref``; linear fits show HU against density.

    Parameters
    ----------
    calibration : Calibration
        ``method="phantom"`` with ``details["rods"]``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the calibration holds no rod table.

    Examples
    --------
    >>> from bmdqct.calibration import fit_phantom
    >>> from bmdqct.synthetic import example_certificate
    >>> cal = fit_phantom([-60.312, -17.810, 186.002, 339.390, 449.362], example_certificate())
    >>> ax = plot_phantom_fit(cal)
    >>> len(ax.lines), ax.get_xlabel()
    (2, 'certified density (mg K2HPO4/cm³)')
    """
    rods = calibration.details.get("rods")
    if calibration.method != "phantom" or not rods:
        raise ValueError(f"calibration {calibration.id} is not a phantom calibration with a rod table")
    _, (ax,) = _new_axes(ax)
    density = np.array([r["density_mg_cm3"] for r in rods])
    hu = np.array([_rod_hu(r, "mean_hu") for r in rods])
    two_component = calibration.details.get("fit") == "two-component"
    if two_component:
        y = hu - np.array([r["water_mg_cm3"] for r in rods])
        sigma, beta = (calibration.details[k] for k in ("sigma_ref_hu_per_mg_cm3", "beta_ref_hu"))
        ylabel = "rod HU − water-equivalent density (mg/cm³)"
    else:
        y = hu
        sigma, beta = (calibration.details[k] for k in ("hu_per_mg_cm3", "hu_at_zero_density"))
        ylabel = "rod HU"
    grid = np.linspace(density.min(), density.max(), 50)
    ax.plot(grid, sigma * grid + beta, color="0.4", label=f"fit, R² = {calibration.r_squared:.5f}")
    ax.plot(density, y, "o", color="C0", label="rods")
    texts = []
    for rod, x_value, y_value in zip(rods, density, y):
        residual = calibration.residuals_mg_cm3.get(rod["label"], np.nan)
        texts.append(ax.annotate(f"{rod['label']} ({residual:+.1f})", (x_value, y_value),
                                 textcoords="offset points", xytext=(8, -6), fontsize="small",
                                 gid=f"rod-label:{rod['label']}", va="top",
                                 arrowprops=dict(arrowstyle="-", color="0.6", linewidth=0.6,
                                                 shrinkA=0, shrinkB=4)))
    ax.margins(y=0.12)
    ax.set_xlabel(f"certified density (mg {calibration.mineral}/cm³)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{calibration.phantom_model} {calibration.phantom_serial or ''}: "
                 f"BMD = {calibration.slope:.4f}·HU {calibration.intercept:+.2f}", fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    _separate_labels(ax, texts)
    return ax


def _separate_labels(ax, texts, *, gap_px: float = 2.0, max_steps: int = 12) -> None:
    """Place rod labels so that no two overlap; a thin line joins each to its rod.

    Each label goes below-right of its rod if that spot is free, else above-left,
    else further up on the left, step by step, preferring spots inside the axes.
    Rods of nearly equal density (a Mindways phantom's A and B differ by
    1.6 mg/cm³) would otherwise print their labels on top of each other.
    """
    if len(texts) < 2:
        return
    ax.figure.draw_without_rendering()
    frame = ax.get_window_extent()
    candidates = [((8.0, -6.0), "left", "top")] + [((-8.0, 6.0 + 11.0 * k), "right", "bottom")
                                                    for k in range(max_steps)]

    def overlaps(box, others):
        return any(box.x0 < b.x1 + gap_px and b.x0 < box.x1 + gap_px and box.y0 < b.y1 + gap_px
                   and b.y0 < box.y1 + gap_px for b in others)

    placed = []
    for text in sorted(texts, key=lambda t: (-t.xy[1], t.xy[0])):
        fallback = None
        for offset, ha, va in candidates:
            text.set_position(offset)
            text.set_horizontalalignment(ha)
            text.set_verticalalignment(va)
            box = text.get_window_extent()
            if overlaps(box, placed):
                continue
            fallback = fallback or (offset, ha, va)
            if frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1:
                break
        else:
            if fallback is not None:
                offset, ha, va = fallback
                text.set_position(offset)
                text.set_horizontalalignment(ha)
                text.set_verticalalignment(va)
        placed.append(text.get_window_extent())


def plot_rod_rois(volume, calibration, *, ax=None, window_hu=(-200.0, 600.0)):
    """Draw the sampled slab of a phantom scan with each rod's ROI circle and label.

    Parameters
    ----------
    volume : CTVolume
        The phantom scan the calibration came from (drawn in its canonical orientation,
        where the ROIs' ``center_vox`` are given).
    calibration : Calibration
        From :func:`bmdqct.calibration.calibrate_phantom` (``details["rod_rois"]``).
    ax : matplotlib Axes, optional
    window_hu : (float, float), optional
        Grey-scale window.

    Returns
    -------
    matplotlib.axes.Axes
        The image is seen from the feet (patient's right on the left), anterior up.

    Raises
    ------
    ValueError
        If the calibration holds no rod ROIs.

    Examples
    --------
    >>> from bmdqct.calibration import calibrate_phantom
    >>> from bmdqct.synthetic import synthesize_phantom_scan
    >>> vol, truth = synthesize_phantom_scan("mindways-model3-ct", 0, shape=(128, 128), pixel_mm=1.6,
    ...                                      n_slices=6, noise_hu=0)
    >>> ax = plot_rod_rois(vol, calibrate_phantom(vol, truth.certificate))
    >>> len(ax.patches), ax.images[0].get_array().shape      # two circles per rod, one axial image
    (10, (128, 128))
    """
    from matplotlib.patches import Circle

    rois = calibration.details.get("rod_rois")
    if not rois:
        raise ValueError(f"calibration {calibration.id} holds no rod ROIs (not from calibrate_phantom)")
    from ..volume import to_canonical

    volume = to_canonical(volume)
    _, (ax,) = _new_axes(ax, figsize=(6.4, 6.4))
    first, last = rois[0]["slices"]
    image = volume.hu[first:last + 1].mean(axis=0)
    sj, sk = volume.spacing[1:]
    extent = (-0.5 * sk, (image.shape[1] - 0.5) * sk, (image.shape[0] - 0.5) * sj, -0.5 * sj)
    ax.imshow(image, cmap="gray", vmin=window_hu[0], vmax=window_hu[1], extent=extent)
    for roi in rois:
        _, cj, ck = roi["center_vox"]
        ax.add_patch(Circle((ck * sk, cj * sj), roi["roi_radius_mm"], fill=False, color="#ff7f0e", lw=1.5))
        ax.add_patch(Circle((ck * sk, cj * sj), roi["radius_mm"], fill=False, color="#1f77b4", lw=0.8, ls="--"))
        ax.annotate(f"{roi['label']}\n{_rod_hu(roi, 'mean_hu'):.1f}±{_rod_hu(roi, 'sd_hu'):.1f}",
                    (ck * sk, cj * sj - roi["radius_mm"]), color="yellow", ha="center", va="bottom",
                    fontsize="small")
    ax.set_xlabel("mm (patient right → left)")
    ax.set_ylabel("mm (anterior → posterior)")
    ax.set_title(f"rod ROIs, slices {first}–{last} averaged", fontsize="medium")
    return ax


#: Rod statistics of calibrations fitted before bmdqct result format 3 (stored calibration files keep them).
_OLD_ROD_KEYS = {"mean_hu": "hu_mean", "sd_hu": "hu_sd"}


def _rod_hu(entry, key: str) -> float:
    """A rod's ``mean_hu`` or ``sd_hu`` from a calibration's details, under its new or its old name."""
    return entry[key] if key in entry else entry[_OLD_ROD_KEYS[key]]
