"""Figures of CT volumes and synthetic scans: mid-sagittal and axial views in a CT window.

Works for any canonical :class:`~bmdqct.volume.CTVolume` (synthetic or real), so a
synthetic scan and a real one can be shown side by side with the same code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CT_WINDOWS", "plot_axial", "plot_scan_views", "plot_synthetic_scan", "plot_side_by_side"]

#: Display windows as (level, width) in HU.
CT_WINDOWS = {
    "bone": (400.0, 1800.0),
    "spine": (250.0, 1200.0),
    "soft": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
}


def _window(window):
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise ValueError(f"unknown window {window!r}; expected one of {sorted(CT_WINDOWS)} "
                             "or (level, width) in HU")
        window = CT_WINDOWS[window]
    level, width = (float(v) for v in window)
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return level - width / 2.0, level + width / 2.0


def _index(volume, axis, mm):
    """Array index along a canonical axis (0: S, 1: P, 2: L) nearest to world `mm`."""
    origin = volume.affine[:3, 3]
    world_axis = {0: 2, 1: 1, 2: 0}[axis]
    step = volume.affine[world_axis, axis]
    i = int(round((mm - origin[world_axis]) / step))
    return int(np.clip(i, 0, volume.shape[axis] - 1))


def _spine_column(volume):
    """Column (array axis 2) through the spine: the bone-richest column of the posterior half."""
    hu = volume.hu
    nz, ny, nx = hu.shape
    step = max(1, nz // 40)
    sample = hu[::step, ny // 3:, :]
    counts = (sample > 200).sum(axis=(0, 1)).astype(float)
    lo, hi = nx // 4, 3 * nx // 4
    if counts[lo:hi].max() <= 0:
        return nx // 2
    smooth = np.convolve(counts, np.ones(9) / 9.0, mode="same")
    return int(lo + np.argmax(smooth[lo:hi]))


def plot_scan_views(volume, *, axial_z_mm=None, sagittal_x_mm=None, window="spine", title=None,
                    fig=None, labels=None):
    """Mid-sagittal and axial views of a canonical CT volume.

    Parameters
    ----------
    volume : CTVolume
        Canonical (S, P, L) volume.
    axial_z_mm : float, optional
        World z (mm) of the axial slice; default the middle slice.
    sagittal_x_mm : float, optional
        World x (mm) of the sagittal slice; default the column through the spine.
    window : str or (float, float), optional
        A name of :data:`CT_WINDOWS` or ``(level, width)`` in HU.
    title : str, optional
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (two axes are added); default a new Figure.
    labels : LabelVolume, optional
        Outlines of these labels are drawn on both views (e.g. ``truth.levels``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from bmdqct.synthetic import synthesize_ldct
    >>> vol, truth = synthesize_ldct(1, shape=64, pixel_mm=6.0, slice_mm=6.0, noise_hu=0.0,
    ...                              cranial="T11", caudal="L2")
    >>> fig = plot_scan_views(vol, axial_z_mm=truth.centers_mm["L1"][2])
    >>> len(fig.axes)
    2
    """
    from matplotlib.figure import Figure

    vmin, vmax = _window(window)
    if fig is None:
        fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax_sag, ax_ax = fig.subplots(1, 2, width_ratios=[1, 1])
    _draw(volume, ax_sag, ax_ax, axial_z_mm, sagittal_x_mm, vmin, vmax, labels)
    if title:
        fig.suptitle(title)
    return fig


def _draw(volume, ax_sag, ax_ax, axial_z_mm, sagittal_x_mm, vmin, vmax, labels):
    hu = volume.hu
    nz, ny, nx = hu.shape
    sz, sy, sx = volume.spacing
    k = nz // 2 if axial_z_mm is None else _index(volume, 0, axial_z_mm)
    i = _spine_column(volume) if sagittal_x_mm is None else _index(volume, 2, sagittal_x_mm)
    origin = volume.affine[:3, 3]
    y0, y1 = origin[1] - sy / 2, origin[1] + (ny - 0.5) * sy
    z0, z1 = origin[2] - sz / 2, origin[2] + (nz - 0.5) * sz
    x0, x1 = origin[0] - sx / 2, origin[0] + (nx - 0.5) * sx
    # sagittal: anterior left, superior up (radiological convention)
    ax_sag.imshow(hu[::-1, :, i], cmap="gray", vmin=vmin, vmax=vmax, extent=(y0, y1, z0, z1),
                  interpolation="bilinear")
    ax_sag.axhline(origin[2] + k * sz, color="tab:orange", lw=0.6, alpha=0.7)
    ax_sag.set_xlabel("y (mm, posterior →)")
    ax_sag.set_ylabel("z (mm, superior ↑)")
    ax_sag.set_title(f"sagittal x = {origin[0] + i * sx:.0f} mm")
    # axial: patient's right on the image left, anterior up (radiological convention)
    ax_ax.imshow(hu[k], cmap="gray", vmin=vmin, vmax=vmax, extent=(x0, x1, y1, y0),
                 interpolation="bilinear")
    ax_ax.set_xlabel("x (mm, patient left →)")
    ax_ax.set_ylabel("y (mm, posterior ↓)")
    ax_ax.set_title(f"axial z = {origin[2] + k * sz:.0f} mm")
    if labels is not None and labels.names:
        ids = list(labels.names.values())
        ys = origin[1] + np.arange(ny) * sy
        zs = origin[2] + np.arange(nz) * sz
        xs = origin[0] + np.arange(nx) * sx
        sag = np.isin(labels.labels[:, :, i], ids).astype(float)
        axi = np.isin(labels.labels[k], ids).astype(float)
        if sag.any():
            ax_sag.contour(ys, zs, sag, levels=[0.5], colors="tab:cyan", linewidths=0.6)
        if axi.any():
            ax_ax.contour(xs, ys, axi, levels=[0.5], colors="tab:cyan", linewidths=0.6)
    for ax in (ax_sag, ax_ax):
        ax.set_aspect("equal")


def plot_axial(volume, z_mm=None, *, window="soft", ax=None, title=None):
    """One axial slice (nearest to world `z_mm`) in a CT window, radiological orientation.

    Parameters
    ----------
    volume : CTVolume
    z_mm : float, optional
        World z in mm; default the middle slice.
    window : str or (float, float), optional
    ax : matplotlib.axes.Axes, optional
        Default: a new Figure with one Axes.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.volume import CTVolume
    >>> ax = plot_axial(CTVolume.from_spacing(np.zeros((3, 8, 8)), (1, 1, 1)), window="lung")
    >>> ax.get_title()
    'axial z = 1 mm'
    """
    from matplotlib.figure import Figure

    vmin, vmax = _window(window)
    if ax is None:
        ax = Figure(figsize=(6, 6), layout="constrained").add_subplot()
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing
    k = nz // 2 if z_mm is None else _index(volume, 0, z_mm)
    origin = volume.affine[:3, 3]
    extent = (origin[0] - sx / 2, origin[0] + (nx - 0.5) * sx, origin[1] + (ny - 0.5) * sy, origin[1] - sy / 2)
    ax.imshow(volume.hu[k], cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="bilinear")
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm, patient left →)")
    ax.set_ylabel("y (mm, posterior ↓)")
    ax.set_title(title or f"axial z = {origin[2] + k * sz:.0f} mm")
    return ax


def plot_synthetic_scan(volume, truth, *, level="L1", window="spine", outlines=False, fig=None):
    """Mid-sagittal view and the axial slice through the centre of `level` of a synthetic scan.

    Parameters
    ----------
    volume : CTVolume
    truth : bmdqct.synthetic.Truth
    level : str, optional
        Level whose body centre sets the axial slice (default "L1"; the middle
        slice if the level is not in view).
    window : str or (float, float), optional
    outlines : bool, optional
        Draw the true vertebral-body outlines.
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from bmdqct.synthetic import synthesize_ldct
    >>> vol, truth = synthesize_ldct(2, shape=64, pixel_mm=6.0, slice_mm=6.0, noise_hu=0.0,
    ...                              cranial="T11", caudal="L2")
    >>> fig = plot_synthetic_scan(vol, truth)
    >>> fig.axes[1].get_title().startswith("axial")
    True
    """
    center = truth.centers_mm.get(level)
    z = None if center is None else center[2]
    x = None if center is None else center[0]
    dens = truth.density_mg_cm3.get(level)
    title = (f"synthetic LDCT seed {truth.seed}: {truth.kvp:g} kVp, noise {truth.noise_hu:g} HU"
             + (f", {level} {dens:.0f} mg/cm³" if dens is not None else ""))
    return plot_scan_views(volume, axial_z_mm=z, sagittal_x_mm=x, window=window, title=title, fig=fig,
                           labels=truth.levels if outlines else None)


def plot_side_by_side(panels, *, window="spine", fig=None):
    """Several volumes side by side, each as a sagittal/axial pair.

    Parameters
    ----------
    panels : sequence of (title, CTVolume, axial_z_mm or None, sagittal_x_mm or None)
    window : str or (float, float), optional
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    vmin, vmax = _window(window)
    n = len(panels)
    if fig is None:
        fig = Figure(figsize=(6.0 * n, 10.5), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for col, (title, volume, z, x) in enumerate(panels):
        _draw(volume, axes[0, col], axes[1, col], z, x, vmin, vmax, None)
        axes[0, col].set_title(f"{title}\n{axes[0, col].get_title()}")
    return fig
