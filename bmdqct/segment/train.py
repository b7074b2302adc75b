"""Training of the spine model: data, augmentation, Dice loss, resumable loop.

Training data are crops prepared exactly as at inference (:func:`bmdqct.segment.grid.prepare`),
with a margin of 8 voxels on every side so that in-plane rotation and translation
augmentation never invent image content. Two sources can be mixed:

* the synthetic generator (:func:`bmdqct.synthetic.synthesize_ldct`), one scan per
  seed with randomised anatomy, scan range, grid, dose and density;
* folders of annotated scans: ``DIR/<case>/`` holding a CT and a vertebra label
  map in VerSe or TotalSegmentator ids, whose levels are mapped to the three
  classes automatically (:func:`bmdqct.levels.segmentation_class`).

Prepared crops are cached as ``.npz`` files, so a resumed run does not rebuild them.
The loop follows Pan et al. (2020): soft Dice loss, Adam with learning rate
1e-4, halved when the validation Dice has not improved for 3 epochs. Every epoch
ends with a checkpoint (network, optimizer state, epoch, schedule and random
state); ``resume=True`` continues from it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage
from tensorflow import keras
from tqdm import tqdm  # not tqdm.auto: it warns in notebooks without ipywidgets

from .._util import record_dict
from ..errors import InputError
from ..levels import SEGMENTATION_CLASSES, segmentation_class
from .grid import prepare, scale_hu
from .inference import predict_patches
from .model import PRESETS, Preset, SpineModel, build_model, load_model, save_model

__all__ = [
    "TrainingConfig",
    "dice_loss",
    "dice_scores",
    "load_folder_cases",
    "prepare_case",
    "synthetic_training_scan",
    "train",
]

logger = logging.getLogger(__name__)

_MARGIN = 8  # voxels of context on every side of the crop, for augmentation
_N_CLASSES = len(SEGMENTATION_CLASSES)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run (stored in the checkpoint and the model card).

    Seeds of synthetic scans: training uses ``synthetic_seed_start + i`` for
    ``i < n_synthetic``; validation ``validation_seed_start + i``. bmdqct's
    evaluation scripts use seeds from 50000 on, which training never sees.
    `init_model` names a saved model (``.keras``) whose weights start the run
    (fine-tuning); its preset must be the run's preset.
    """

    preset: str | Preset = "cpu-fast"
    n_synthetic: int = 200
    synthetic_seed_start: int = 10000
    n_validation: int = 6
    validation_seed_start: int = 900
    data_dirs: tuple[str, ...] = ()
    label_scheme: str = "verse"
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 2
    learning_rate: float = 1e-4
    lr_factor: float = 0.5
    lr_patience: int = 3
    seed: int = 0
    workers: int = 2
    init_model: str | None = None
    generator: str = "training"
    data_fraction: float = 0.0
    transfer_augment: bool = False

    def to_dict(self) -> dict:
        """JSON-safe dictionary of the fields (tuples as lists)."""
        return record_dict(self)


# --------------------------------------------------------------------------- loss
@keras.utils.register_keras_serializable(package="bmdqct")
def dice_loss(y_true, y_pred, eps: float = 1.0):
    """Soft Dice loss averaged over classes: ``1 - mean_c (2|P∩T| + eps) / (|P| + |T| + eps)``.

    Sums run over the batch and all voxels, so a class absent from a batch and
    not predicted scores 1.
    """
    ops = keras.ops
    axes = tuple(range(len(y_pred.shape) - 1))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    denominator = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - ops.mean((2.0 * intersection + eps) / (denominator + eps))


def dice_scores(truth: np.ndarray, prediction: np.ndarray, classes=(1, 2, 3)) -> dict[int, float]:
    """Hard Dice per class; NaN where a class is absent from both.

    Examples
    --------
    >>> dice_scores(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), classes=(1, 2))
    {1: 0.6666666666666666, 2: 0.6666666666666666}
    """
    out = {}
    for c in classes:
        t, p = truth == c, prediction == c
        denom = t.sum() + p.sum()
        out[c] = float(2.0 * np.logical_and(t, p).sum() / denom) if denom else float("nan")
    return out


# --------------------------------------------------------------------------- data
def _margin_preset(preset: Preset) -> Preset:
    shape = tuple(s + 2 * _MARGIN for s in preset.crop_shape)
    return replace(preset, crop_shape=shape)


def prepare_case(volume, classes: np.ndarray, preset: Preset) -> dict:
    """Crop a CT and its class map for training (with the augmentation margin).

    Returns a dict with ``hu`` (int16, HU) and ``labels`` (uint8), both (Z, H, W).
    """
    prepared, labels = prepare(volume, _margin_preset(preset), labels=classes)
    hu = np.clip(np.round(prepared.hu), -1024, 3071).astype(np.int16)
    return {"hu": hu, "labels": labels.astype(np.uint8)}


def synthetic_training_scan(seed: int, generator: str = "training"):
    """One randomised synthetic scan for training: ``(CTVolume, classes ndarray)``.

    The options come from :func:`bmdqct.synthetic.random_training_options`:
    scan ranges from C6–T5 down to T11–L5 (a third stop above L2), grids of
    0.7–3 mm pixels and 1–3 mm slices, 80–140 kVp, dose, density, rib count,
    fractures, sclerotic foci, scoliosis, and the appearance of cortex,
    endplates, trabecular texture, marrow, body shape, discs and soft tissue.
    """
    from ..synthetic import (
        random_training_options,
        random_transfer_options,
        synthesize_ldct,
    )

    draw = {"training": random_training_options, "transfer": random_transfer_options}[generator]
    options = draw(np.random.default_rng([seed, 7]))
    volume, truth = synthesize_ldct(seed, **options)
    return volume, np.asarray(truth.classes.labels)


def _classes_from_levels(labels) -> np.ndarray:
    """Map a per-level VerSe label array onto the four segmentation classes."""
    out = np.zeros(labels.shape, dtype=np.uint8)
    for name, lid in labels.names.items():
        out[labels.labels == lid] = segmentation_class(name)
    return out


def load_folder_cases(folder, *, scheme: str = "verse") -> list[tuple[str, object, np.ndarray]]:
    """Annotated scans of a folder: ``folder/<case>/`` with a CT and a label map.

    The CT is the file or DICOM folder whose name starts with ``ct`` (``ct.nii.gz``,
    ``ct/``, …); the label map is the file whose name contains ``seg`` or
    ``label``. Level ids follow `scheme` (``"verse"`` or ``"totalsegmentator"``).

    Returns
    -------
    list of (case name, CTVolume, classes ndarray)
    """
    from ..io import load_ct, load_labels

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"training data folder {folder} does not exist; expected "
                         "FOLDER/<case>/ holding ct.nii.gz (or a DICOM folder) and a label map")
    cases = []
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        entries = sorted(case_dir.iterdir())
        cts = [p for p in entries if p.name.lower().startswith("ct")]
        segs = [p for p in entries if ("seg" in p.name.lower() or "label" in p.name.lower())
                and p.is_file()]
        if len(cts) != 1 or len(segs) != 1:
            raise InputError(f"{case_dir}: expected one CT (name starting with 'ct') and one "
                             f"label map (name containing 'seg' or 'label'); found CT {cts}, "
                             f"labels {segs}")
        volume = load_ct(cts[0])
        labels = load_labels(segs[0], like=volume, scheme=scheme)
        cases.append((case_dir.name, volume, _classes_from_levels(labels)))
    if not cases:
        raise InputError(f"training data folder {folder} holds no case folders")
    return cases


def _cached(cache_dir: Path, key: str, build) -> dict:
    path = cache_dir / f"{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    case = build()
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **case)
    tmp.replace(path)
    return case


def _synthetic_case(seed: int, preset: Preset, generator: str = "training") -> dict:
    volume, classes = synthetic_training_scan(seed, generator)
    return prepare_case(volume, classes, preset)


# ------------------------------------------------------------------ augmentation
def _sample(case: dict, preset: Preset, rng: np.random.Generator, *, augment: bool = True,
            transfer: bool = False):
    """One (image, one-hot labels) training pair from a cached case."""
    depth = preset.patch_depth
    hu, labels = case["hu"], case["labels"]
    n = hu.shape[0]
    if n < depth:
        pad = depth - n
        hu = np.concatenate([hu, np.full((pad,) + hu.shape[1:], -1000, hu.dtype)])
        labels = np.concatenate([labels, np.zeros((pad,) + labels.shape[1:], labels.dtype)])
        n = depth
    fg = np.flatnonzero(labels.reshape(n, -1).any(axis=1))
    if len(fg) and rng.random() < 0.9:  # mostly windows that hold vertebrae
        centre = int(rng.choice(fg))
        start = int(np.clip(centre - rng.integers(0, depth), 0, n - depth))
    else:
        start = int(rng.integers(0, n - depth + 1))
    x = hu[start:start + depth].astype(np.float32)
    y = labels[start:start + depth]
    if augment:
        angle = rng.uniform(-12.0, 12.0)
        x = ndimage.rotate(x, angle, axes=(1, 2), reshape=False, order=1, mode="nearest")
        y = ndimage.rotate(y, angle, axes=(1, 2), reshape=False, order=0, mode="nearest")
        dr, dc = rng.integers(-_MARGIN, _MARGIN + 1, size=2)
    else:
        dr = dc = 0
    h, w = preset.crop_shape
    r0, c0 = _MARGIN + dr, _MARGIN + dc
    x = x[:, r0:r0 + h, c0:c0 + w]
    y = y[:, r0:r0 + h, c0:c0 + w]
    if augment:
        if rng.random() < 0.5:  # left-right mirror: the classes do not depend on side
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        x = x * rng.uniform(0.9, 1.1) + rng.uniform(-25.0, 25.0)  # density / calibration
        if rng.random() < 0.5:  # bone contrast: cortex and trabeculae brighter or fainter
            x = x + (rng.uniform(0.6, 1.25) - 1.0) * np.maximum(x - 150.0, 0.0)
        if rng.random() < 0.4:  # resolution: sharp kernels to blurry 3-mm reconstructions
            x = ndimage.gaussian_filter(x, (rng.uniform(0.0, 0.8), *[rng.uniform(0.3, 1.2)] * 2))
        sigma = rng.uniform(0.0, 30.0)  # dose
        if sigma > 1.0:
            noise = rng.standard_normal(x.shape).astype(np.float32)
            noise = ndimage.gaussian_filter(noise, (0.0, 0.6, 0.6))
            x = x + noise * (sigma / max(noise.std(), 1e-6))
        if transfer and rng.random() < 0.7:
            x = transfer_augment(x, y, rng, float(preset.spacing_mm[1]))
    image = scale_hu(x, preset.hu_window)
    onehot = np.eye(_N_CLASSES, dtype=np.float32)[y]
    return image[..., None], onehot


def transfer_augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                     spacing_mm: float = 2.0) -> np.ndarray:
    """Appearance the renderer does not draw, added to a (Z, H, W) HU crop (new array).

    SynthSeg-style: a random piecewise-linear remapping of the HU of fat, soft
    tissue and bone (levels within wide bounds); contrast-filled tubes and
    chambers of 150-500 HU outside the vertebral bodies (aorta, heart, vessels),
    sometimes with calcified wall spots; a smooth bias field; streaks; a
    field-of-view edge that blanks part of the crop; correlated noise up to 80 HU.
    Labels `y` are unchanged (nothing is drawn over a labelled body).

    Examples
    --------
    >>> x = np.zeros((4, 16, 16), np.float32); y = np.zeros(x.shape, np.uint8)
    >>> transfer_augment(x, y, np.random.default_rng(0)).shape
    (4, 16, 16)
    """
    x = np.array(x, dtype=np.float32)
    z, h, w = x.shape
    if rng.random() < 0.7:  # tissue levels: fat, muscle/organ, bone move independently
        knots = np.array([-1000.0, -100.0, 40.0, 200.0, 1000.0, 2000.0])
        moved = knots + np.array([0.0, rng.uniform(-60, 60), rng.uniform(-40, 60),
                                  rng.uniform(-60, 80), rng.uniform(-250, 250), 0.0])
        x = np.interp(x, knots, np.maximum.accumulate(moved)).astype(np.float32)
    free = y == 0
    zz, rr, cc = np.meshgrid(np.arange(z), np.arange(h), np.arange(w), indexing="ij")
    for _ in range(int(rng.integers(0, 4))):  # contrast-filled vessels and chambers
        hu = rng.uniform(150.0, 500.0)
        radius = rng.uniform(3.0, 18.0) / spacing_mm
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.6:  # a tube along z (aorta, IVC), slightly oblique
            dr, dc = rng.uniform(-0.3, 0.3, 2)
            dist = np.hypot(rr - (r0 + dr * zz), cc - (c0 + dc * zz))
        else:  # a chamber
            z0 = rng.uniform(0, z)
            dist = np.sqrt((rr - r0) ** 2 + (cc - c0) ** 2 + ((zz - z0) * rng.uniform(0.5, 1.5)) ** 2)
        inside = (dist < radius) & free
        x[inside] = hu + rng.normal(0.0, 15.0, inside.sum())
        if rng.random() < 0.3:  # calcified wall plaques
            wall = (np.abs(dist - radius) < 0.8) & free & (rng.random(x.shape) < 0.05)
            x[ndimage.binary_dilation(wall)] = rng.uniform(500.0, 1200.0)
    if rng.random() < 0.4:  # smooth bias field
        field = ndimage.zoom(rng.normal(0.0, 1.0, (2, 3, 3)), (z / 2, h / 3, w / 3), order=1)
        x = x + rng.uniform(10.0, 60.0) * field[:z, :h, :w]
    if rng.random() < 0.25:  # streaks from dense contrast or metal
        for _ in range(int(rng.integers(1, 4))):
            angle = rng.uniform(0, np.pi)
            d = (rr - rng.uniform(0, h)) * np.cos(angle) - (cc - rng.uniform(0, w)) * np.sin(angle)
            x = x + rng.choice([-1.0, 1.0]) * rng.uniform(50.0, 250.0) * np.exp(-0.5 * (d / 0.7) ** 2)
    if rng.random() < 0.15:  # the reconstruction circle cuts through the crop
        angle = rng.uniform(0, 2 * np.pi)
        d = (rr - h / 2) * np.cos(angle) + (cc - w / 2) * np.sin(angle)
        x[d > rng.uniform(0.3, 0.5) * h] = -1024.0
    sigma = float(np.exp(rng.uniform(np.log(1.0), np.log(80.0))))
    noise = ndimage.gaussian_filter(rng.standard_normal(x.shape).astype(np.float32),
                                    (0.0, rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)))
    return (x + noise * (sigma / max(float(noise.std()), 1e-6))).astype(np.float32)


# -------------------------------------------------------------------------- loop
def _validation_dice(model: SpineModel, cases: list[dict]) -> float:
    scores = []
    h, w = model.preset.crop_shape
    for case in cases:
        hu = case["hu"][:, _MARGIN:_MARGIN + h, _MARGIN:_MARGIN + w]
        labels = case["labels"][:, _MARGIN:_MARGIN + h, _MARGIN:_MARGIN + w]
        probs = predict_patches(model, scale_hu(hu, model.preset.hu_window))
        dice = dice_scores(labels, np.argmax(probs, axis=-1))
        scores.extend(v for v in dice.values() if np.isfinite(v))
    return float(np.mean(scores)) if scores else 0.0


def _initial_network(config: TrainingConfig, preset: Preset):
    """A fresh network of `preset`, or a copy of ``config.init_model``'s for fine-tuning."""
    network = build_model(preset).network
    if config.init_model is None:
        return network
    start = load_model(config.init_model)
    if start.preset != preset:
        raise InputError(f"model {config.init_model} has preset {start.preset.name!r}; "
                         f"expected the training preset {preset.name!r} to fine-tune it")
    network.set_weights(start.network.get_weights())
    logger.info("starting from the weights of %s (%s)", config.init_model, start.model_id)
    return network


def _compile(network, learning_rate: float) -> None:
    network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=dice_loss)


def train(config: TrainingConfig, output, *, checkpoint_dir, cache_dir=None, resume: bool = True,
          progress: bool = False, snapshot_dir=None) -> SpineModel:
    """Train (or resume training of) a spine model and write the best weights to `output`.

    Parameters
    ----------
    config : TrainingConfig
    output : path
        Best model so far (``.keras`` + ``.json``), updated after every epoch that
        improves the validation Dice.
    checkpoint_dir : path
        Holds ``checkpoint.keras`` (network + optimizer) and ``state.json``; a run
        with ``resume=True`` continues from there.
    cache_dir : path, optional
        Prepared crops (default ``checkpoint_dir / "cache"``).
    progress : bool
        Show progress bars.
    snapshot_dir : path, optional
        When given, every epoch's model is also written there as
        ``epoch-NNN.keras`` (+ ``.json``), so that epochs can be judged on real
        scans afterwards, not only by the synthetic validation Dice that picks
        `output`.

    Returns
    -------
    SpineModel
        The best model.
    """
    preset = config.preset if isinstance(config.preset, Preset) else PRESETS[config.preset]
    output, checkpoint_dir = Path(output), Path(checkpoint_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else checkpoint_dir / "cache"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ckpt, state_file = checkpoint_dir / "checkpoint.keras", checkpoint_dir / "state.json"

    train_cases = _load_training_cases(config, preset, cache_dir, progress)
    val_seeds = range(config.validation_seed_start,
                      config.validation_seed_start + config.n_validation)
    _fill_cache(val_seeds, preset, cache_dir, workers=config.workers, progress=progress)
    val_cases = [_cached(cache_dir, f"{preset.name}-syn-{s}", lambda s=s: _synthetic_case(s, preset))
                 for s in val_seeds] or train_cases[:2]

    if resume and ckpt.is_file() and state_file.is_file():
        state = json.loads(state_file.read_text())
        network = keras.models.load_model(ckpt, custom_objects={"dice_loss": dice_loss})
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        logger.info("resuming at epoch %d (best Dice %.4f)", state["epoch"], state["best_dice"])
    else:
        network = _initial_network(config, preset)
        _compile(network, config.learning_rate)
        rng = np.random.default_rng(config.seed)
        state = {"epoch": 0, "best_dice": -1.0, "wait": 0, "lr": config.learning_rate,
                 "history": [], "seconds": 0.0}
    model = SpineModel(network, preset, {}, "")
    while state["epoch"] < config.epochs:
        started = time.perf_counter()
        losses = []
        steps = tqdm(range(config.steps_per_epoch), disable=not progress,
                     desc=f"epoch {state['epoch'] + 1}/{config.epochs}", unit="step")
        for _ in steps:
            pairs = [_sample(_pick_case(train_cases, config, rng), preset, rng,
                             transfer=config.transfer_augment)
                     for _ in range(config.batch_size)]
            x = np.stack([p[0] for p in pairs])
            y = np.stack([p[1] for p in pairs])
            losses.append(float(network.train_on_batch(x, y)))
            steps.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        dice = _validation_dice(model, val_cases)
        state["epoch"] += 1
        state["seconds"] += time.perf_counter() - started
        state["history"].append({"epoch": state["epoch"], "loss": float(np.mean(losses)),
                                 "val_dice": dice, "lr": state["lr"]})
        logger.info("epoch %d: loss %.4f, validation Dice %.4f, lr %.2g", state["epoch"],
                    np.mean(losses), dice, state["lr"])
        info = {"training": config.to_dict(), "epoch": state["epoch"],
                "validation_dice": dice, "training_seconds": round(state["seconds"], 1),
                "history": state["history"]}
        if snapshot_dir is not None:
            save_model(replace(model, info=info), Path(snapshot_dir) / f"epoch-{state['epoch']:03d}.keras")
        if dice > state["best_dice"]:
            state["best_dice"], state["wait"] = dice, 0
            save_model(replace(model, info=info), output)
        else:
            state["wait"] += 1
            if state["wait"] >= config.lr_patience:
                state["lr"] *= config.lr_factor
                state["wait"] = 0
                network.optimizer.learning_rate.assign(state["lr"])
                logger.info("validation Dice flat for %d epochs: learning rate -> %.2g",
                            config.lr_patience, state["lr"])
        state["rng"] = rng.bit_generator.state
        network.save(ckpt.with_name("checkpoint.tmp.keras"))
        ckpt.with_name("checkpoint.tmp.keras").replace(ckpt)
        state_file.write_text(json.dumps(state, indent=1))
    return load_model(output)  # the best epoch's weights, not the last


def _pick_case(cases: list[dict], config: TrainingConfig, rng: np.random.Generator) -> dict:
    """A training case: a real one (``config.data_fraction`` of draws) or a synthetic one.

    With ``data_fraction <= 0`` every case is equally likely (real or synthetic).
    """
    if config.data_fraction <= 0:
        return cases[rng.integers(len(cases))]
    real = [c for c in cases if c.get("real")]
    synthetic = [c for c in cases if not c.get("real")] or real
    if real and rng.random() < config.data_fraction:
        return real[rng.integers(len(real))]
    return synthetic[rng.integers(len(synthetic))]


def _syn_key(preset: Preset, seed: int, generator: str) -> str:
    tag = "syn" if generator == "training" else f"syn{generator}"
    return f"{preset.name}-{tag}-{seed}"


def _build_cache_entry(seed: int, preset: Preset, cache_dir: str, generator: str = "training") -> None:
    _cached(Path(cache_dir), _syn_key(preset, seed, generator),
            lambda: _synthetic_case(seed, preset, generator))


def _fill_cache(seeds, preset: Preset, cache_dir: Path, *, workers: int, progress: bool,
                generator: str = "training") -> None:
    """Build missing synthetic cache entries, in `workers` processes."""
    missing = [s for s in seeds
               if not (cache_dir / f"{_syn_key(preset, s, generator)}.npz").is_file()]
    if not missing:
        return
    bar = tqdm(total=len(missing), disable=not progress, desc="synthetic scans", unit="scan")
    if workers <= 1:
        for seed in missing:
            _build_cache_entry(seed, preset, str(cache_dir), generator)
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(_build_cache_entry, s, preset, str(cache_dir), generator)
                       for s in missing]
            for future in futures:
                future.result()
                bar.update()
    bar.close()


def _load_training_cases(config: TrainingConfig, preset: Preset, cache_dir: Path,
                         progress: bool) -> list[dict]:
    seeds = range(config.synthetic_seed_start, config.synthetic_seed_start + config.n_synthetic)
    gen = config.generator
    _fill_cache(seeds, preset, cache_dir, workers=config.workers, progress=progress, generator=gen)
    cases = [_cached(cache_dir, _syn_key(preset, s, gen), lambda s=s: _synthetic_case(s, preset, gen))
             for s in seeds]
    for entry in config.data_dirs:
        # "DIR=scheme" overrides config.label_scheme for one folder
        folder, _, scheme = str(entry).rpartition("=") if "=" in str(entry) else (entry, "", "")
        for name, volume, classes in load_folder_cases(folder, scheme=scheme or config.label_scheme):
            key = f"{preset.name}-dir-{Path(folder).name}-{name}"
            case = _cached(cache_dir, key, lambda v=volume, c=classes: prepare_case(v, c, preset))
            cases.append({**case, "real": True})
    if not cases:
        raise InputError("no training data: set n_synthetic > 0 or give data_dirs")
    logger.info("training on %d prepared scans", len(cases))
    return cases
