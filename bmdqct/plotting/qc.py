"""Quality-control picture of a measurement: where the levels and VOIs are.

One figure per case: a sagittal reformat through the VOIs with every labelled
level outlined and named, the VOIs drawn as rectangles with their centres
marked; and one axial slice per requested level (its VOI's middle section)
with the body outlined and the VOI ellipse drawn, titled with the level's HU,
BMD and status. Display follows the radiological convention: axial images
seen from the feet (patient's right on the image's left, anterior at the top),
sagittal images with anterior on the left and superior at the top. Grey
window −250 to 1000 HU (bone and soft tissue).

**One frame.** Every coordinate drawn is patient LPS millimetres, the frame of
``center_mm`` in ``result.json`` (:meth:`bmdqct.volume.CTVolume.index_to_world`):
the sagittal panel's axes are labelled "LPS y (mm)" and "LPS z (mm)", and a
VOI centre drawn there sits at its ``center_mm`` (y, z).

**Colours.** Only the levels that were measured are drawn in their level
colour (:data:`LEVEL_COLORS`); bodies that are labelled but were not
requested, or are partial, failed or excluded, are drawn in grey with their
status. A level whose name is uncertain (a ``level_uncertain:<level>`` QC flag)
is written with a question mark ("T12?") and its panel title says "name
uncertain".
"""

from __future__ import annotations

import logging
import textwrap

import numpy as np

__all__ = ["plot_qc", "QC_WINDOW_HU", "LEVEL_COLORS"]

logger = logging.getLogger(__name__)

#: Display window of the QC picture (HU).
QC_WINDOW_HU = (-250.0, 1000.0)
#: Colour of each measured level's outline (Okabe-Ito, colour-blind safe); others are grey.
LEVEL_COLORS = {"T11": "#f0e442", "T12": "#e69f00", "L1": "#56b4e9", "L2": "#009e73", "L3": "#cc79a7"}
_OTHER = "#bbbbbb"
_VOI = "#ff2020"
_HALF_FOV_MM = 50.0
_HEADLINE_CHARS = 90


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
        Its first axes is the sagittal panel, in patient LPS mm; each VOI centre
        is a marker whose ``gid`` is ``"voi-centre:<level>"``.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> from bmdqct.measure import measure
    >>> k, j, i = np.mgrid[:40, :40, :50]
    >>> body = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1)
    >>> lab = np.where(body & (k >= 2) & (k < 18), 21, 0) + np.where(body & (k >= 22) & (k < 38), 20, 0)
    >>> ct = CTVolume.from_spacing(np.where(lab > 0, 130.0, 0.0), (1.5, 1, 1), origin=(-25.0, -20.0, 100.0))
    >>> res = measure(ct, labels=LabelVolume.from_spacing(lab, (1.5, 1, 1), names={"L1": 20, "L2": 21},
    ...                                                    origin=(-25.0, -20.0, 100.0)))
    >>> fig = plot_qc(res, ct)
    >>> len(fig.axes)
    4
    >>> fig.axes[0].get_ylabel()
    'LPS z (mm)'
    >>> marker = [ln for ln in fig.axes[0].lines if ln.get_gid() == "voi-centre:L1"][0]
    >>> bool(np.allclose([marker.get_xdata()[0], marker.get_ydata()[0]], res.vois["L1"].center_mm[1:]))
    True
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse, Rectangle

    levels = list(result.levels)
    n = max(len(levels), 1)
    fig = Figure(figsize=figsize or (4.2 + 3.3 * n, 6.6), layout="constrained")
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1.25] + [1.0] * n)
    hu = np.asarray(volume.hu)
    labels = np.asarray(result.labels.labels.labels)
    vmin, vmax = QC_WINDOW_HU
    measured = {name for name, m in result.levels.items() if m.status == "measured"}
    uncertain = _uncertain_levels(result)

    # ---- sagittal panel (LPS y horizontal, LPS z vertical) -------------------------------
    ax = fig.add_subplot(grid[0, 0])
    centres = [v.center_vox for v in result.vois.values()]
    if centres:
        centre = np.mean(np.asarray(centres, float), axis=0)
    elif result.labels.levels:
        centre = np.mean([volume.world_to_index(i.centroid_mm) for i in result.labels.levels.values()], axis=0)
    else:
        centre = (np.asarray(hu.shape, float) - 1) / 2
    k_sag = int(np.clip(round(float(centre[2])), 0, hu.shape[2] - 1))
    dy = float(volume.spacing[1])
    j_lo = max(int(centre[1] - 1.6 * _HALF_FOV_MM / dy), 0)
    j_hi = min(int(centre[1] + 1.6 * _HALF_FOV_MM / dy) + 1, hu.shape[1])
    anchor = (float(centre[0]), float(centre[1]), float(k_sag))
    zz = _world_along(volume, 0, 2, np.arange(hu.shape[0]), anchor)     # LPS z of each slice
    jj = _world_along(volume, 1, 1, np.arange(j_lo, j_hi), anchor)      # LPS y of each row
    ax.imshow(hu[:, j_lo:j_hi, k_sag], cmap="gray", vmin=vmin, vmax=vmax, origin="lower",
              extent=(*_edges(jj), *_edges(zz)), interpolation="nearest")
    for name, info in result.labels.levels.items():
        plane = labels[:, j_lo:j_hi, k_sag] == info.label_id
        if not plane.any():
            continue
        color = LEVEL_COLORS.get(name, _OTHER) if name in measured else _OTHER
        ax.contour(jj, zz, plane.astype(float), levels=[0.5], colors=[color], linewidths=1.0,
                   linestyles="solid" if name in measured else "dashed")
        rows, cols = np.nonzero(plane)
        z_text = float(zz[int(round(rows.mean()))])
        if name in measured:      # beside the body, in the level's colour
            ax.text(float(jj[cols].min()) - 4.0, z_text, _display_name(name, uncertain), color=color,
                    fontsize=9, ha="right", va="center", fontweight="bold", gid=f"level-name:{name}")
        else:                     # inside the body (it has no VOI), grey, with its status
            status = result.levels[name].status if name in result.levels else "not measured"
            ax.text(float(jj[int(round(cols.mean()))]), z_text, f"{_display_name(name, uncertain)}\n{status}",
                    color=color, fontsize=7, ha="center", va="center", gid=f"level-name:{name}")
    for name, voi in result.vois.items():
        k0, k1 = voi.slice_range
        z0, z1 = sorted((float(zz[k0]), float(zz[k1])))
        half = 0.5 * abs(float(zz[1] - zz[0])) if len(zz) > 1 else 0.5 * float(volume.spacing[0])
        b = voi.semi_axis_ap_mm
        y_c, z_c = float(voi.center_mm[1]), float(voi.center_mm[2])
        ax.add_patch(Rectangle((y_c - b, z0 - half), 2 * b, z1 - z0 + 2 * half,
                               fill=False, edgecolor=_VOI, linewidth=1.2, gid=f"voi:{name}"))
        ax.plot([y_c], [z_c], marker="+", color=_VOI, markersize=7, linestyle="none", gid=f"voi-centre:{name}")
    x_sag = float(volume.index_to_world(np.asarray(anchor))[0])
    ax.set_title(f"sagittal, LPS x = {x_sag:.1f} mm", fontsize=10)
    ax.set_xlabel("LPS y (mm): anterior \u2192 posterior", fontsize=8)
    ax.set_ylabel("LPS z (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xlim(*sorted(ax.get_xlim()))
    _zoom_to_spine(ax, result, zz)

    # ---- one axial panel per level (LPS x horizontal, LPS y vertical, anterior up) ------
    for col, name in enumerate(levels, start=1):
        ax = fig.add_subplot(grid[0, col])
        m = result.levels[name]
        voi = result.vois.get(name)
        info = result.labels.levels.get(name)
        color = LEVEL_COLORS.get(name, _OTHER) if name in measured else _OTHER
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
            ax.set_title(_level_title(name, m, result.calibrated, name in uncertain), fontsize=10)
            continue
        dy, dx = (float(s) for s in volume.spacing[1:])
        j0 = max(int(jc - _HALF_FOV_MM / dy), 0)
        j1 = min(int(jc + _HALF_FOV_MM / dy) + 1, hu.shape[1])
        c0 = max(int(kc - _HALF_FOV_MM / dx), 0)
        c1 = min(int(kc + _HALF_FOV_MM / dx) + 1, hu.shape[2])
        here = (float(k), float(jc), float(kc))
        ys = _world_along(volume, 1, 1, np.arange(j0, j1), here)
        xs = _world_along(volume, 2, 0, np.arange(c0, c1), here)
        y_edges = _edges(ys)
        ax.imshow(hu[k, j0:j1, c0:c1], cmap="gray", vmin=vmin, vmax=vmax,
                  extent=(*_edges(xs), y_edges[1], y_edges[0]), interpolation="nearest")
        if info is not None:
            body = (labels[k, j0:j1, c0:c1] == info.label_id).astype(float)
            if body.any():
                ax.contour(xs, ys, body, levels=[0.5], colors=[color], linewidths=1.0)
        if voi is not None:
            ax.add_patch(Ellipse((float(voi.center_mm[0]), float(voi.center_mm[1])), 2 * voi.semi_axis_lr_mm,
                                 2 * voi.semi_axis_ap_mm, fill=False, edgecolor=_VOI, linewidth=1.5))
        ax.set_title(_level_title(name, m, result.calibrated, name in uncertain), fontsize=9, color="black")
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


def _world_along(volume, axis: int, world_axis: int, indices, anchor) -> np.ndarray:
    """LPS coordinate `world_axis` of the voxels `indices` along array `axis`, through `anchor`."""
    points = np.tile(np.asarray(anchor, float), (len(indices), 1))
    points[:, axis] = indices
    return volume.index_to_world(points)[:, world_axis]


def _edges(centres) -> tuple[float, float]:
    """The outer pixel edges of a row of evenly spaced pixel centres."""
    centres = np.asarray(centres, float)
    half = 0.5 * (centres[1] - centres[0]) if len(centres) > 1 else 0.5
    return float(centres[0] - half), float(centres[-1] + half)


def _uncertain_levels(result) -> set[str]:
    flags = tuple(result.flags) + tuple(getattr(result.labels, "flags", ()) or ())
    return {f.level for f in flags if f.code == "level_uncertain" and f.level}


def _display_name(name: str, uncertain) -> str:
    return f"{name}?" if name in uncertain else name


def _zoom_to_spine(ax, result, zz) -> None:
    infos = list(result.labels.levels.values())
    y0, y1 = sorted(ax.get_ylim())
    if infos:
        ends = [float(zz[i]) for info in infos for i in info.slice_range]
        y0, y1 = max(min(ends) - 40.0, y0), min(max(ends) + 40.0, y1)
    ax.set_ylim(y0, y1)


def _level_title(name, m, calibrated, uncertain=False) -> str:
    head = f"{name}?" if uncertain else name
    note = " (name uncertain)" if uncertain else ""
    if m.mean_hu is None:
        return f"{head}: {m.status}{note}"
    line = f"{head}: {m.mean_hu:.0f} HU (SD {m.sd_hu:.0f}, n={m.n_voxels})"
    if calibrated and m.bmd_mg_cm3 is not None:
        line += f"\nBMD {m.bmd_mg_cm3:.1f} mg/cm\u00b3"
    if m.status != "measured":
        line += f" [{m.status}]"
    return line + ("\nname uncertain" if uncertain else "")


def _headline(result) -> str:
    """One line: the case, the L1-L2 value and category, or why there is none."""
    case = f"{result.case}: " if result.case else ""
    used = "+".join(result.levels_used) if result.levels_used else "no level"
    if tuple(result.levels_used) == ("L1", "L2"):
        used = "L1\u2013L2"
    if result.bmd_l1_l2_mg_cm3 is not None:
        category = "no category" if result.category is None else result.category.value
        line = f"{case}{used} {result.bmd_l1_l2_mg_cm3:.1f} mg/cm\u00b3, {category}"
    elif result.mean_hu_l1_l2 is not None:
        line = f"{case}{used} {result.mean_hu_l1_l2:.0f} HU, no calibration"
    else:
        reason = (result.diagnosis.reason or "no measurable level").splitlines()[0] if result.diagnosis else ""
        line = f"{case}no BMD: {reason or 'no measurable level'}"
    return textwrap.shorten(line, _HEADLINE_CHARS, placeholder="\u2026")
