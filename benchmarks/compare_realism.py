"""Compare synthetic training crops with real CT crops, side by side.

Run:  python benchmarks/compare_realism.py [--seeds 6] [--start 20000] [--output DIR_OR_PNG]
                                          [--real-dir ../shared/data/real]

Renders ``--seeds`` scans with :func:`bmdqct.synthetic.random_training_options`,
prepares each exactly like the segmentation model does
(``bmdqct.segment.prepare(volume, PRESETS["cpu-fast"])``: 2-mm voxels, a 128-mm crop
around the spine) and writes ``realism.png`` (in the current folder, or ``--output``):
one row per case, the real LIDC-IDRI-0314 chest CT and the TotalSegmentator 3-mm
abdomen CT first, then the synthetic seeds; per row the mid-sagittal plane of the
crop and three axial slices through vertebral bodies (window -250..900 HU).

It prints one short line per case: the crop shape, and over the bodies found in
six axial slices the interior mean and SD (HU), the fine-scale SD (HU minus its
2-mm smoothing: the 1-3 mm heterogeneity plus noise) and the cortex contrast (peak
HU of the outer 5 mm of the body minus the HU just inside it, anterior and lateral
walls).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]


def _body_slices(hu, n=3):
    """Axial indices of body centres: midway between discs (minima of the central-ROI profile)."""
    roi = np.median(hu[:, 18:32, 26:38].reshape(len(hu), -1), axis=1)
    smooth = ndimage.uniform_filter1d(roi, 3, mode="nearest")
    discs = [k for k in range(1, len(smooth) - 1) if smooth[k] == smooth[max(0, k - 4):k + 5].min()]
    centres = [(a + b) // 2 for a, b in zip(discs[:-1], discs[1:]) if 6 <= b - a <= 22]
    if len(centres) < n:
        centres = sorted(set(centres) | set(np.linspace(5, len(hu) - 6, n).astype(int).tolist()))
    pick = np.linspace(0, len(centres) - 1, n).round().astype(int)
    return [centres[i] for i in pick]


def _body_outline(img, centre, n_rays=48, max_px=22.0):
    """Edge radius (px) of the body along rays from `centre`: where HU first drops below 70."""
    angles = np.linspace(-np.pi, np.pi, n_rays, endpoint=False)
    steps = np.arange(0.0, max_px, 0.5)
    rows = centre[0] + np.sin(angles)[:, None] * steps[None, :]
    cols = centre[1] + np.cos(angles)[:, None] * steps[None, :]
    prof = ndimage.map_coordinates(ndimage.gaussian_filter(img, 0.7), [rows, cols], order=1, cval=-1000.0)
    below = prof < 70.0
    below[:, :4] = False  # ignore a dark centre (vein, fatty island)
    edge = np.where(below.any(axis=1), below.argmax(axis=1), len(steps) - 1) * 0.5
    return angles, edge, steps, prof


def _body_stats(hu, ks):
    """(interior mean, interior SD, fine-scale SD, cortex contrast) of the bodies in slices ks.

    Per slice: rays from the body centre find its outline (the first drop below 70 HU,
    which the spinal canal also stops posteriorly); the interior lies more than 2.5 px
    (5 mm) inside it; the cortex contrast is the peak HU of the outer 2.5 px along the
    anterior and lateral rays minus the mean 3.5-6 px inside the outline.
    """
    inner, fine, ring = [], [], []
    yy, xx = np.mgrid[0:hu.shape[1], 0:hu.shape[2]]
    for k in ks:
        img = hu[k]
        centre = np.array([24.0, 32.0])
        for _ in range(2):
            angles, edge, steps, prof = _body_outline(img, centre)
            pts = np.stack([centre[0] + np.sin(angles) * edge, centre[1] + np.cos(angles) * edge], 1)
            centre = pts.mean(axis=0)
        if np.median(edge) < 5.0:
            continue
        ang = np.arctan2(yy - centre[0], xx - centre[1])
        rad = np.hypot(yy - centre[0], xx - centre[1])
        limit = np.interp(ang, angles, edge, period=2 * np.pi)
        core = rad < limit - 2.5
        if core.sum() < 10:
            continue
        inner.append(img[core])
        fine.append((img - ndimage.gaussian_filter(img, 1.0))[core])
        front = (np.sin(angles) < 0.3) & (edge > 7.0)  # anterior and lateral rays
        for i in np.nonzero(front)[0]:
            e = int(2 * edge[i])
            ring.append(float(prof[i, e - 5:e + 1].max() - prof[i, e - 12:e - 6].mean()))
    if not inner:
        return (float("nan"),) * 4
    values = np.concatenate(inner)
    return float(values.mean()), float(values.std()), float(np.concatenate(fine).std()), float(np.mean(ring))


def _plot(rows, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 3.1 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 4, squeeze=False)
    for (name, hu, ks), row in zip(rows, axes):
        sag = hu[::-1, :, hu.shape[2] // 2]
        row[0].imshow(sag, cmap="gray", vmin=-250, vmax=900, aspect="equal", interpolation="nearest")
        for k in ks:
            row[0].axhline(hu.shape[0] - 1 - k, color="tab:orange", lw=0.6)
        row[0].set_title(f"{name}: sagittal", fontsize=8)
        for ax, k in zip(row[1:], ks):
            ax.imshow(hu[k], cmap="gray", vmin=-250, vmax=900, interpolation="nearest")
            ax.set_title(f"axial {k}", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.savefig(path, dpi=75)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="number of synthetic scans (default 6)")
    parser.add_argument("--start", type=int, default=20000, help="first seed (default 20000)")
    parser.add_argument("--output", default=".", help="folder or .png path (default: current folder)")
    parser.add_argument("--real-dir", default=str(ROOT.parent / "shared" / "data" / "real"),
                        help="folder of the real scans (default ../shared/data/real)")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if out.suffix.lower() != ".png":
        out.mkdir(parents=True, exist_ok=True)
        out = out / "realism.png"

    from bmdqct.io import load_ct
    from bmdqct.segment import PRESETS, prepare
    from bmdqct.synthetic import random_training_options, synthesize_ldct

    preset = PRESETS["cpu-fast"]
    rows = []
    real = Path(args.real_dir)
    for name, path in (("real LIDC chest", real / "lidc_0314_chest" / "dicom"),
                       ("real abdomen 3 mm", real / "ts_abdomen_3mm" / "ct.nii.gz")):
        if path.exists():
            rows.append((name, prepare(load_ct(path), preset).hu, None))
        else:
            print(f"{name}: {path} not found, skipped")
    times = []
    for seed in range(args.start, args.start + args.seeds):
        opts = random_training_options(np.random.default_rng([seed, 1]))
        t0 = time.perf_counter()
        volume, _ = synthesize_ldct(seed, **opts)
        times.append(time.perf_counter() - t0)
        label = (f"seed {seed} {opts['cranial']}-{opts['caudal']} {opts['pixel_mm']:.1f}mm "
                 f"psf {opts['psf_fwhm_mm']:.1f}")
        rows.append((label, prepare(volume, preset).hu, None))
    rows = [(name, hu, _body_slices(hu)) for name, hu, _ in rows]
    print(f"{'case':44s} {'crop':>13s} {'mean':>6s} {'sd':>5s} {'fine':>5s} {'cortex':>6s}")
    for name, hu, ks in rows:
        mean, sd, fine, cortex = _body_stats(hu, _body_slices(hu, 6))
        print(f"{name:44s} {str(hu.shape):>13s} {mean:6.0f} {sd:5.0f} {fine:5.0f} {cortex:6.0f}")
    if times:
        print(f"synthetic scans: mean {np.mean(times):.2f} s, max {np.max(times):.2f} s")
    _plot(rows, out)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
