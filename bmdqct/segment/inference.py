"""Sliding-window inference of the spine model on a whole CT.

Threads: :func:`segment_spine` asks TensorFlow for one intra-op thread per core
the process may use (``os.sched_getaffinity``) before its first prediction. The
setting lives in TensorFlow (``tf.config.threading``), not in this module: asking
again for the value it holds changes nothing, and once TensorFlow's runtime has
started (any earlier TensorFlow computation in the process) it keeps its thread
pools and the request is dropped with a DEBUG log message. The module keeps no
state of its own; the shipped model is cached by :func:`~bmdqct.segment.model.load_model`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm  # not tqdm.auto: it warns in notebooks without ipywidgets

from .._util import release_freed_memory, usable_cores
from ..errors import SegmentationError
from ..levels import SEGMENTATION_CLASSES
from ..volume import CTVolume, LabelVolume
from .grid import classes_on_source_grid, footprint, prepare
from .model import SpineModel, load_model
from .sequence import SequenceReport, enforce_anatomical_order

__all__ = ["Segmentation", "segment_spine", "predict_patches"]

logger = logging.getLogger(__name__)

CLASS_NAMES = {name: cid for cid, name in SEGMENTATION_CLASSES.items() if cid}


@dataclass(frozen=True, eq=False)
class Segmentation:
    """The network's answer on the CT's own grid.

    Attributes
    ----------
    classes : LabelVolume
        0 background, 1 T1-T6, 2 T7-T12, 3 L1-L2 (names ``{"T1-T6": 1, ...}``).
    confidence : (I, J, K) float16 ndarray
        Probability of the assigned class in every voxel (half precision: steps of
        0.0005 near 1; a full-size float32 map would cost 0.37 GB and 0.4 s more on
        a 512 x 512 x 350 scan).
    model_id : str
        Identity of the weights that produced it.
    order : SequenceReport or None
        Classes of the bodies before and after enforcing the anatomical order
        (None if that step was skipped).
    """

    classes: LabelVolume
    confidence: np.ndarray = field(repr=False)
    model_id: str
    order: SequenceReport | None = None


def _window_weights(depth: int) -> np.ndarray:
    """Tent weights along z so overlapping windows blend smoothly (never exactly 0)."""
    ramp = np.minimum(np.arange(depth) + 1, depth - np.arange(depth)).astype(np.float32)
    return ramp / ramp.max()


def predict_patches(model: SpineModel, image: np.ndarray, *, overlap: float = 0.5,
                    batch_size: int = 1, progress: bool = False) -> np.ndarray:
    """Class probabilities for a prepared crop, by overlapping windows along z.

    Parameters
    ----------
    model : SpineModel
    image : (Z, H, W) float32 ndarray
        Scaled crop (:attr:`Prepared.image`).
    overlap : float
        Fraction of a window shared with the next one, in [0, 1).

    Returns
    -------
    (Z, H, W, C) float32 ndarray
        Probabilities blended with tent weights along z.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    depth = model.network.input_shape[1]
    n_slices = image.shape[0]
    padded = image
    if n_slices < depth:  # pad short scans with air
        padded = np.full((depth, *image.shape[1:]), -1.0, dtype=np.float32)
        padded[:n_slices] = image
    step = max(1, int(round(depth * (1.0 - overlap))))
    starts = list(range(0, padded.shape[0] - depth + 1, step))
    if starts[-1] != padded.shape[0] - depth:
        starts.append(padded.shape[0] - depth)
    weights = _window_weights(depth)[:, None, None, None]
    total = np.zeros(padded.shape + (model.network.output_shape[-1],), dtype=np.float32)
    norm = np.zeros((padded.shape[0], 1, 1, 1), dtype=np.float32)
    batches = [starts[i:i + batch_size] for i in range(0, len(starts), batch_size)]
    for batch in tqdm(batches, disable=not progress, desc="segment", unit="batch"):
        x = np.stack([padded[s:s + depth] for s in batch])[..., None]
        y = np.asarray(model.network(x, training=False))
        for s, probs in zip(batch, y):
            total[s:s + depth] += probs * weights
            norm[s:s + depth] += weights
    return (total / norm)[:n_slices]


def segment_spine(volume: CTVolume, model=None, *, overlap: float = 0.5, batch_size: int = 1,
                  anatomical_order: bool = True, progress: bool = False, canal=None) -> Segmentation:
    """Segment the vertebral bodies of a CT into T1-T6, T7-T12 and L1-L2.

    Parameters
    ----------
    volume : CTVolume
        Canonical CT in HU (:func:`bmdqct.io.load_ct`).
    model : SpineModel or path, optional
        Default: the shipped weights (:data:`~bmdqct.segment.model.DEFAULT_MODEL_PATH`),
        loaded once per process.
    overlap : float
        Overlap of neighbouring windows along the body axis.
    batch_size : int
        Windows per network call. Each window of the ``cpu-fast`` preset costs
        about 1 GB of TensorFlow working memory; 2 saves about 10 % of the time.
    anatomical_order : bool
        Relabel bodies whose class contradicts the order and counts of the
        spine (:func:`~bmdqct.segment.sequence.enforce_anatomical_order`).
    progress : bool
        Show a progress bar.
    canal : SpinalCanal, optional
        The CT's spinal canal (:func:`bmdqct.spine.find_spinal_canal`, about 2 s for a
        512 x 512 x 350 scan): the network's crop then follows the vertebral bodies in
        front of it, which holds on cropped fields of view and beside bright vessels
        (:func:`~bmdqct.segment.grid.canal_centre_line`). Without it the crop follows
        dense bone near the posterior midline. :func:`bmdqct.measure` passes the canal it
        finds anyway.

    Returns
    -------
    Segmentation
        Classes and confidence on the CT's own grid.

    Raises
    ------
    SegmentationError
        If no spine is found or the model finds no vertebral body.
    """
    if not isinstance(model, SpineModel):
        model = load_model(model if model is None else Path(model))
    _use_all_cores()
    prepared = prepare(volume, model.preset, canal=canal)
    probabilities = predict_patches(model, prepared.image, overlap=overlap,
                                    batch_size=batch_size, progress=progress)
    release_freed_memory()  # TensorFlow's working memory, before the full-size outputs are made
    order = None
    if anatomical_order:
        probabilities, order = enforce_anatomical_order(probabilities, model.preset.spacing_mm)
    box = footprint(prepared)
    classes = np.zeros(volume.shape, dtype=np.int16)
    confidence = np.ones(volume.shape, dtype=np.float16)
    classes[box], confidence[box] = classes_on_source_grid(probabilities, prepared, box=box)
    if not classes.any():
        raise SegmentationError(
            f"the model ({model.model_id}) found no vertebral body in this CT "
            f"(source {volume.metadata.get('source')}); expected a CT of the trunk with the "
            "thoracic or lumbar spine in view")
    labels = LabelVolume(classes, volume.affine, CLASS_NAMES)
    return Segmentation(labels, confidence, model.model_id, order)


def _use_all_cores() -> None:
    """Ask TensorFlow for one intra-op thread per usable core (idempotent, no state of its own).

    TensorFlow keeps the setting itself: setting the value it already holds is a
    no-op, and once its runtime has started it refuses a different value with a
    ``RuntimeError``, which is expected (an earlier TensorFlow call in the process
    fixed the thread pools) and only logged.
    """
    import tensorflow as tf

    cores = usable_cores()
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() == cores:
        return
    try:
        threading.set_intra_op_parallelism_threads(cores)
    except RuntimeError:  # already initialised by an earlier TensorFlow call
        logger.debug("TensorFlow already started with %d intra-op threads (0: its default); "
                     "keeping them", threading.get_intra_op_parallelism_threads())
