"""Accuracy of the segmentation model on held-out synthetic scans and on real CT.

Run:  python benchmarks/eval_segment.py [--model PATH] [--n 10] [--seed-start 50000]

Synthetic (seeds never used in training; training uses 10000+, validation 900+):
  * Dice of each class (T1-T6, T7-T12, L1-L2) on the CT grid;
  * per vertebral body: Dice of the true body against the predicted vertebral-body
    voxels (any class) in its Voronoi cell, the voxels nearer to it than to any
    other true body (class-agnostic; touching predictions are not penalised twice)
    — the "vertebral-body Dice";
  * class correctness: the majority predicted class inside each true T1-L2 body;
  * names after labelling (bmdqct.labeling.label_vertebrae) for T12, L1, L2;
  * the "named-body Dice": each true T1-L2 body not cut by the scan's end against
    the labelled body of the same name (0 when that name is missing) — the masks a
    user gets from measure(), naming errors included.
The spinal canal is found first and given to the segmentation and the labelling, as
bmdqct.measure does.
``--config heldout`` draws each scan from :func:`bmdqct.synthetic.heldout_options`
(anatomy ranges and appearance families that no training run uses).
Real (ts_abdomen_3mm and verse_lumbar_crop are training scans for the transfer
fine-tune, benchmarks/training/transfer-r1: their figures are training-set figures):
  * ts_abdomen_3mm: Dice per level (T12, L1, L2) against TotalSegmentator's
    vertebra labels intersected with its vertebral-body mask;
  * lidc_0314_chest: thoracic bodies found, and whether their classes and names
    run in anatomical order.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denom = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / denom) if denom else float("nan")


def evaluate_synthetic(model, seeds, *, pixel_mm=None, slice_mm=None, config="default") -> dict:
    from bmdqct.labeling import label_vertebrae
    from bmdqct.levels import segmentation_class
    from bmdqct.segment import segment_spine
    from bmdqct.spine import find_spinal_canal
    from bmdqct.synthetic import heldout_options, synthesize_ldct

    rng = np.random.default_rng(0)
    class_dice = {1: [], 2: [], 3: []}
    body_dice, class_ok, names_ok, seconds, named_dice = [], [], [], [], []
    certain_wrong, uncertain = 0, 0
    for seed in seeds:
        if config == "heldout":  # the configuration no training run draws from
            options = heldout_options(np.random.default_rng([seed, 11]))
        else:
            options = {"cranial": "C7", "caudal": "L3"}
            options["slice_mm"] = slice_mm or float(rng.choice([1.0, 1.25, 2.0, 2.5]))
        if pixel_mm:
            options["pixel_mm"] = pixel_mm
        ct, truth = synthesize_ldct(seed, **options)
        canal = find_spinal_canal(ct)   # as measure() does: the crop and the labelling use it
        t0 = time.perf_counter()        # segmentation time only: the canal search (about 2 s) is not in it
        seg = segment_spine(ct, model, canal=canal)
        seconds.append(time.perf_counter() - t0)
        predicted = np.asarray(seg.classes.labels)
        true_classes = np.asarray(truth.classes.labels)
        for c in class_dice:
            class_dice[c].append(dice(true_classes == c, predicted == c))
        levels = np.asarray(truth.levels.labels)
        cells, box = _voronoi_cells(levels, ct.spacing)
        found = predicted[box] > 0
        for name, lid in truth.levels.names.items():
            if segmentation_class(name) == 0:
                continue
            body = levels == lid
            if not body.any():
                continue
            body_dice.append(dice(body[box], found & (cells == lid)))
            votes = np.bincount(predicted[body], minlength=4)
            votes[0] = 0
            class_ok.append(bool(votes.any()) and int(np.argmax(votes)) == segmentation_class(name))
        named = []                        # the true bodies a user gets by name, with their masks
        for name, lid in truth.levels.names.items():
            body = levels == lid
            if segmentation_class(name) != 0 and body.any() and not _at_edge(body):
                named.append((name, body))
        try:
            labels = label_vertebrae(ct, seg.classes, confidence=seg.confidence, canal=canal)
            scores = [dice(body, labels.mask(name)) if name in labels.levels else 0.0 for name, body in named]
            unsure = {f.level for f in labels.flags if f.code == "level_uncertain"}
            got = []
            for name in ("T12", "L1", "L2"):
                lid = truth.levels.names.get(name)
                if lid is None:
                    continue
                truth_mask = np.asarray(truth.levels.labels) == lid
                ok = name in labels.levels and dice(truth_mask, labels.mask(name)) > 0.5
                names_ok.append(ok)
                got.append(name if ok else "x")
            for name in ("T12", "L1", "L2"):      # a certain name on the wrong body is the failure
                if name in labels.levels:
                    lid = truth.levels.names.get(name)
                    right = lid is not None and dice(np.asarray(truth.levels.labels) == lid, labels.mask(name)) > 0.5
                    if name in unsure:
                        uncertain += 1
                    elif not right:
                        certain_wrong += 1
            print(f"  seed {seed}: T12/L1/L2 {' '.join(got)}; uncertain {sorted(unsure & {'T12', 'L1', 'L2'})}")
        except Exception as err:  # a labelling failure counts as three wrong names
            print(f"  seed {seed}: labelling failed: {err}")
            names_ok.extend([False] * 3)
            scores = [0.0] * len(named)
        named_dice.extend(scores)
        print(f"  seed {seed}: body Dice so far {np.mean(body_dice):.3f}, "
              f"classes correct {np.mean(class_ok):.1%}, {seconds[-1]:.1f} s", flush=True)
    return {"class_dice": {c: float(np.nanmean(v)) for c, v in class_dice.items()},
            "body_dice_mean": float(np.mean(body_dice)), "body_dice_min": float(np.min(body_dice)),
            "n_bodies": len(body_dice), "class_correct": float(np.mean(class_ok)),
            "named_body_dice_mean": float(np.mean(named_dice)) if named_dice else float("nan"),
            "n_named_bodies": len(named_dice),
            "names_T12_L1_L2_correct": float(np.mean(names_ok)), "n_names": len(names_ok),
            "names_certain_but_wrong": certain_wrong, "names_uncertain": uncertain,
            "seconds_mean": float(np.mean(seconds))}


def _at_edge(mask: np.ndarray) -> bool:
    """True if a body touches the first or last slice (cut by the scan's end)."""
    return bool(mask[0].any() or mask[-1].any())


def _voronoi_cells(levels: np.ndarray, spacing, margin_mm: float = 30.0):
    """Label of the nearest true body for every voxel of the spine's bounding box (+ margin)."""
    from scipy import ndimage

    idx = np.nonzero(levels)
    pad = [int(np.ceil(margin_mm / s)) for s in spacing]
    box = tuple(slice(max(int(i.min()) - p, 0), min(int(i.max()) + p + 1, n))
                for i, p, n in zip(idx, pad, levels.shape))
    sub = levels[box]
    _, nearest = ndimage.distance_transform_edt(sub == 0, sampling=spacing, return_indices=True)
    return sub[tuple(nearest)], box


def evaluate_ts_abdomen(model) -> dict:
    from bmdqct.io import load_ct, load_labels
    from bmdqct.labeling import label_vertebrae
    from bmdqct.segment import segment_spine
    from bmdqct.spine import find_spinal_canal

    folder = REAL / "ts_abdomen_3mm"
    ct = load_ct(folder / "ct.nii.gz")
    levels = load_labels(folder / "totalseg_labels.nii.gz", like=ct, scheme="totalsegmentator")
    body = np.asarray(load_labels(folder / "totalseg_vertebrae_body.nii.gz", like=ct).labels) == 1
    canal = find_spinal_canal(ct)
    seg = segment_spine(ct, model, canal=canal)
    out = {"classes_found": {n: int((np.asarray(seg.classes.labels) == c).sum())
                             for n, c in seg.classes.names.items()}}
    try:
        labels = label_vertebrae(ct, seg.classes, confidence=seg.confidence, canal=canal)
        out["levels_named"] = list(labels.levels)
        for name in ("T12", "L1", "L2"):
            truth = levels.mask(name) & body
            pred = labels.mask(name) if name in labels.levels else np.zeros_like(truth)
            out[f"dice_{name}"] = dice(truth, pred)
        out["flags"] = [str(f) for f in labels.flags]
    except Exception as err:
        out["labelling_error"] = str(err)
    # class-agnostic: predicted foreground against each true body
    fg = np.asarray(seg.classes.labels) > 0
    for name in ("T12", "L1", "L2"):
        truth = levels.mask(name) & body
        near = np.zeros_like(truth)
        zs = np.flatnonzero(truth.any(axis=(1, 2)))
        near[zs.min():zs.max() + 1] = True
        out[f"dice_foreground_{name}"] = dice(truth, fg & near)
    return out


def evaluate_lidc(model) -> dict:
    from bmdqct.io import load_ct
    from bmdqct.labeling import label_vertebrae
    from bmdqct.segment import segment_spine
    from bmdqct.spine import find_spinal_canal

    ct = load_ct(REAL / "lidc_0314_chest" / "dicom")
    canal = find_spinal_canal(ct)
    seg = segment_spine(ct, model, canal=canal)
    out = {}
    try:
        labels = label_vertebrae(ct, seg.classes, confidence=seg.confidence, canal=canal)
        order = sorted(labels.levels.values(), key=lambda info: -info.z_range_mm[1])
        out["levels_top_down"] = [info.level for info in order]
        out["classes_top_down"] = [info.source_class for info in order]
        out["n_bodies"] = len(order)
        classes = [c for c in out["classes_top_down"] if c is not None]
        out["classes_in_anatomical_order"] = classes == sorted(classes)
        out["flags"] = [str(f) for f in labels.flags]
    except Exception as err:
        out["labelling_error"] = str(err)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model .keras (default: shipped)")
    parser.add_argument("--n", type=int, default=10,
                        help="held-out synthetic scans (0: real scans only)")
    parser.add_argument("--seed-start", type=int, default=50000)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--config", default="default", choices=["default", "heldout"],
                        help="synthetic configuration: C7-L3 defaults or heldout_options")
    args = parser.parse_args(argv)

    from bmdqct.segment import load_model

    model = load_model(args.model)
    print(f"model {model.model_id}")
    if args.n > 0:
        _print_synthetic(model, args)
    if args.skip_real:
        return
    print("real CT (ts_abdomen_3mm and verse_lumbar_crop are training scans of the transfer rounds):")
    ts = evaluate_ts_abdomen(model)
    print(f"  ts_abdomen_3mm: {ts}")
    lidc = evaluate_lidc(model)
    print(f"  lidc_0314_chest: {lidc}")


def _print_synthetic(model, args) -> None:
    print(f"held-out synthetic scans, seeds {args.seed_start}-{args.seed_start + args.n - 1}:")
    syn = evaluate_synthetic(model, range(args.seed_start, args.seed_start + args.n),
                             config=args.config)
    print(f"  class Dice: T1-T6 {syn['class_dice'][1]:.3f}, T7-T12 {syn['class_dice'][2]:.3f}, "
          f"L1-L2 {syn['class_dice'][3]:.3f}")
    print(f"  vertebral-body Dice: mean {syn['body_dice_mean']:.3f} (min {syn['body_dice_min']:.3f}) "
          f"over {syn['n_bodies']} bodies")
    print(f"  named-body Dice (each true T1-L2 body not cut by the scan's end against the labelled body "
          f"of its name, 0 when missing): mean {syn['named_body_dice_mean']:.3f} over {syn['n_named_bodies']}")
    print(f"  correct class: {syn['class_correct']:.1%} of T1-L2 bodies")
    print(f"  T12/L1/L2 named correctly: {syn['names_T12_L1_L2_correct']:.1%} of {syn['n_names']}; "
          f"uncertain (not used for a category): {syn['names_uncertain']}; "
          f"certain but on the wrong body: {syn['names_certain_but_wrong']}")
    print(f"  segmentation time: {syn['seconds_mean']:.1f} s per scan")


if __name__ == "__main__":
    main()
