"""Quality-control picture of a measurement: where the levels and VOIs are.

One figure per case: a sagittal reformat through the VOIs with every labelled
level outlined and named, the VOIs drawn as rectangles; and one axial slice per
requested level (its VOI's middle section) with the body outlined and the VOI
ellipse drawn, titled with the level's HU, BMD and status. Display follows the
radiological convention: axial images seen from the feet (patient's right on
the image's left, anterior at the top), sagittal images with anterior on the
left and superior at the top. Grey window −250 to 1000 HU (bone and soft tissue).
"""

from __future__ import annotations

import textwrap

import numpy as np

__all__ = ["plot_qc", "QC_WINDOW_HU", "LEVEL_COLORS"]

#: Display window of the QC picture (HU).
QC_WINDOW_HU = (-250.0, 1000.0)
#: Colour of each level's outline (Okabe-Ito, colour-blind safe); others are grey.
LEVEL_COLORS = {"T11": "#f0e442", "T12": "#e69f00", "L1": "#56b4e9", "L2": "#009e73", "L3": "#cc79a7"}
_OTHER = "#bbbbbb"
_VOI = "#ff2020"
_HALF_FOV_MM = 50.0


def plot_qc(result, volume, *, figsize=None):
    """Draw the QC picture of a :class:`bmdqct.measure.Result`.

    Parameters
    ----------
    result : Result
        From :func:`bmdqct.measure`.
    volume : CTVolume
        The CT that was measured (same grid as ``result.labels``).
    figsize : (float, float), optional
        Inches; default scales with the number of levels.

    Returns
    -------
    matplotlib.figure.Figure
        A new figure (not registered with pyplot); save it with ``fig.savefig``.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> from bmdqct.measure import measure
    >>> k, j, i = np.mgrid[:40, :40, :50]
    >>> body = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1)
    >>> lab = np.where(body & (k >= 2) & (k < 18), 21, 0) + np.where(body & (k >= 22) & (k < 38), 20, 0)
    >>> ct = CTVolume.from_spacing(np.where(lab > 0, 130.0, 0.0), (1.5, 1, 1))
    >>> res = measure(ct, labels=LabelVolume.from_spacing(lab, (1.5, 1, 1), names={"L1": 20, "L2": 21}))
    >>> fig = plot_qc(res, ct)
    >>> len(fig.axes)
    4
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse, Rectangle

    levels = list(result.levels)
    n = max(len(levels), 1)
    fig = Figure(figsize=figsize or (4.2 + 3.3 * n, 6.6), layout="constrained")
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1.25] + [1.0] * n)
    hu = np.asarray(volume.hu)
    dz, dy, dx = volume.spacing
    labels = np.asarray(result.labels.labels.labels)
    vmin, vmax = QC_WINDOW_HU

    # ---- sagittal panel ---------------------------------------------------------------
    ax = fig.add_subplot(grid[0, 0])
    centres = [v.center_vox for v in result.vois.values()]
    if centres:
        k_sag = int(round(float(np.mean([c[2] for c in centres]))))
        j_mid = float(np.mean([c[1] for c in centres]))
    elif result.labels.levels:
        centre = np.mean([volume.world_to_index(i.centroid_mm) for i in result.labels.levels.values()], axis=0)
        k_sag, j_mid = int(round(centre[2])), float(centre[1])
    else:
        k_sag, j_mid = hu.shape[2] // 2, hu.shape[1] / 2
    j_lo = max(int(j_mid - 1.6 * _HALF_FOV_MM / dy), 0)
    j_hi = min(int(j_mid + 1.6 * _HALF_FOV_MM / dy) + 1, hu.shape[1])
    sag = hu[:, j_lo:j_hi, k_sag]
    extent = (j_lo * dy - 0.5 * dy, j_hi * dy - 0.5 * dy, -0.5 * dz, (hu.shape[0] - 0.5) * dz)
    ax.imshow(sag, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=extent, interpolation="nearest")
    jj = np.arange(j_lo, j_hi) * dy
    zz = np.arange(hu.shape[0]) * dz
    for name, info in result.labels.levels.items():
        plane = labels[:, j_lo:j_hi, k_sag] == info.label_id
        color = LEVEL_COLORS.get(name, _OTHER)
        if plane.any():
            ax.contour(jj, zz, plane.astype(float), levels=[0.5], colors=[color], linewidths=1.0)
            rows, cols = np.nonzero(plane)
            ax.text(jj[cols.min()] - 4.0, zz[int(round(rows.mean()))], name, color=color, fontsize=9,
                    ha="right", va="center", fontweight="bold")
    for name, voi in result.vois.items():
        k0, k1 = voi.slice_range
        b = voi.semi_axis_ap_mm
        ax.add_patch(Rectangle((voi.center_vox[1] * dy - b, (k0 - 0.5) * dz), 2 * b, (k1 - k0 + 1) * dz,
                               fill=False, edgecolor=_VOI, linewidth=1.2))
    ax.set_title(f"sagittal (column {k_sag})", fontsize=10)
    ax.set_xlabel("anterior \u2192 posterior (mm)", fontsize=8)
    ax.set_ylabel("inferior \u2192 superior (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    _zoom_to_spine(ax, result, dz)

    # ---- one axial panel per level ------------------------------------------------------
    for col, name in enumerate(levels, start=1):
        ax = fig.add_subplot(grid[0, col])
        m = result.levels[name]
        voi = result.vois.get(name)
        info = result.labels.levels.get(name)
        color = LEVEL_COLORS.get(name, _OTHER)
        if voi is not None:
            k, jc, kc = voi.middle_slice, voi.center_vox[1], voi.center_vox[2]
        elif info is not None:
            k = int(round(0.5 * (info.slice_range[0] + info.slice_range[1])))
            jc, kc = (float(v) for v in volume.world_to_index(info.centroid_mm)[1:])
        else:
            ax.set_facecolor("black")
            ax.text(0.5, 0.5, f"{name}\nnot in the labels", color="white", ha="center", va="center",
                    transform=ax.transAxes, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: {m.status}", fontsize=10)
            continue
        j0 = max(int(jc - _HALF_FOV_MM / dy), 0)
        j1 = min(int(jc + _HALF_FOV_MM / dy) + 1, hu.shape[1])
        c0 = max(int(kc - _HALF_FOV_MM / dx), 0)
        c1 = min(int(kc + _HALF_FOV_MM / dx) + 1, hu.shape[2])
        image = hu[k, j0:j1, c0:c1]
        ext = (c0 * dx - 0.5 * dx, c1 * dx - 0.5 * dx, j1 * dy - 0.5 * dy, j0 * dy - 0.5 * dy)
        ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, extent=ext, interpolation="nearest")
        if info is not None:
            body = (labels[k, j0:j1, c0:c1] == info.label_id).astype(float)
            if body.any():
                ax.contour(np.arange(c0, c1) * dx, np.arange(j0, j1) * dy, body, levels=[0.5],
                           colors=[color], linewidths=1.0)
        if voi is not None:
            ax.add_patch(Ellipse((kc * dx, jc * dy), 2 * voi.semi_axis_lr_mm, 2 * voi.semi_axis_ap_mm,
                                 fill=False, edgecolor=_VOI, linewidth=1.5))
        ax.set_title(_level_title(name, m, result.calibrated), fontsize=9, color="black")
        ax.text(0.02, 0.02, "R", color="white", transform=ax.transAxes, fontsize=9, fontweight="bold")
        ax.text(0.98, 0.02, "L", color="white", transform=ax.transAxes, fontsize=9, ha="right",
                fontweight="bold")
        ax.text(0.5, 0.98, "A", color="white", transform=ax.transAxes, fontsize=9, ha="center", va="top",
                fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
        if m.status not in ("measured",):
            ax.text(0.5, 0.12, textwrap.fill(f"{m.status.upper()}: {m.reason}", 38), color="#ffd0d0",
                    transform=ax.transAxes, ha="center", va="bottom", fontsize=7,
                    bbox=dict(facecolor="black", alpha=0.6, edgecolor="none"))
        ax.set_xlabel(f"slice {k}", fontsize=8)

    fig.suptitle(_headline(result), fontsize=12, fontweight="bold")
    if result.flags:
        text = "QC flags: " + ", ".join(str(f) for f in result.flags)
        fig.supxlabel(textwrap.fill(text, 50 + 40 * n), fontsize=8, color="#a00000")
    return fig


def _zoom_to_spine(ax, result, dz) -> None:
    infos = list(result.labels.levels.values())
    if not infos:
        return
    lo = min(i.slice_range[0] for i in infos) * dz - 40.0
    hi = max(i.slice_range[1] for i in infos) * dz + 40.0
    y0, y1 = ax.get_ylim()
    ax.set_ylim(max(lo, y0), min(hi, y1))


def _level_title(name, m, calibrated) -> str:
    if m.hu_mean is None:
        return f"{name}: {m.status}"
    line = f"{name}: {m.hu_mean:.0f} HU (SD {m.hu_sd:.0f}, n={m.n_voxels})"
    if calibrated and m.bmd_mg_cm3 is not None:
        line += f"\nBMD {m.bmd_mg_cm3:.1f} mg/cm\u00b3"
    if m.status != "measured":
        line += f" [{m.status}]"
    return line


def _headline(result) -> str:
    case = f"{result.case}: " if result.case else ""
    used = "+".join(result.levels_used) if result.levels_used else "no level"
    if tuple(result.levels_used) == ("L1", "L2"):
        used = "L1\u2013L2"
    if result.bmd_l1_l2_mg_cm3 is not None:
        return (f"{case}BMD {used} = {result.bmd_l1_l2_mg_cm3:.1f} mg/cm\u00b3 "
                f"{result.calibration.mineral} \u2192 {result.category.value.upper()}")
    if result.hu_l1_l2 is not None:
        return f"{case}{used} = {result.hu_l1_l2:.0f} HU (no calibration: HU only, no category)"
    return f"{case}no measurable level - {result.diagnosis.reason}"
