"""Dense 3-D U-Net for vertebral-body segmentation (Keras 3 on TensorFlow).

The architecture follows Pan et al. (2020): a symmetric encoder-decoder with
skip connections in which every resolution level holds a *dense block* (each
3x3x3 convolution sees the concatenation of all earlier feature maps of the
block; growth rate 8), followed by a 1x1x1 convolution that reduces the
channels. The output is a softmax over four classes (background, T1-T6,
T7-T12, L1-L2; see :data:`bmdqct.levels.SEGMENTATION_CLASSES`).

Two presets are defined (:data:`PRESETS`):

``"pan2020"``
    The published setting: axial slices resampled to 2 x 2 mm with 1 mm
    slices, a 160 x 160 crop around the centre of the patient's body and
    64 x 160 x 160 voxel patches. Built and run in the tests; too slow to train
    on a CPU (about 70 s per step on two cores).
``"cpu-fast"``
    bmdqct's shipped preset: 2 mm isotropic voxels and a 64 x 64 (128 mm) crop
    that follows the spine's centre line slice by slice ("straightened"), with
    64 x 64 x 64 patches. It sees the vertebral bodies, the rib heads and the
    paraspinal tissue at the resolution the paper used in-plane, for about 1/12
    of the paper's compute. See ``MODEL_CARD.md``.

Model cache
-----------
:func:`load_model` reads a file once per process: the reader is a
:func:`functools.lru_cache` (at most four models) keyed by the file's resolved
path and the size and modification time of the ``.keras`` file and its ``.json``
sidecar, so a rewritten file is read again and an unchanged one returns the same
:class:`SpineModel` object. :func:`clear_model_cache` empties it. This cache is
the module's only state; nothing else is kept between calls.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from tensorflow import keras

from .._util import record_dict
from ..errors import SegmentationError
from ..levels import SEGMENTATION_CLASSES

__all__ = [
    "Preset",
    "PRESETS",
    "SpineModel",
    "build_dense_unet3d",
    "build_model",
    "clear_model_cache",
    "load_model",
    "save_model",
    "DEFAULT_MODEL_PATH",
]

logger = logging.getLogger(__name__)

layers = keras.layers

#: The shipped weights (``bmdqct train`` writes this file; see MODEL_CARD.md).
DEFAULT_MODEL_PATH = Path(str(resources.files("bmdqct.segment") / "weights" / "cpu-fast.keras"))


@dataclass(frozen=True)
class Preset:
    """Everything that defines a model's input: grid, crop, patch, intensity scaling.

    Parameters
    ----------
    name : str
    spacing_mm : (3,) tuple of float
        Voxel size of the model grid along (S, P, L), in mm.
    crop_shape : (2,) tuple of int
        In-plane size of the crop, in model voxels.
    crop_mode : {"body", "spine"}
        ``"body"``: one crop per scan centred on the body's centre (the paper);
        ``"spine"``: every slice shifted so that the spine's centre line sits in
        the middle of the crop ("straightened").
    patch_depth : int
        Patch size along the body axis, in model voxels.
    hu_window : (2,) tuple of float
        HU clipped to this window, then scaled linearly to [-1, 1].
    layers_per_level, growth_rate, base_filters
        Dense U-Net shape, see :func:`build_dense_unet3d`.
    """

    name: str
    spacing_mm: tuple[float, float, float]
    crop_shape: tuple[int, int]
    crop_mode: str
    patch_depth: int
    hu_window: tuple[float, float] = (-1000.0, 1500.0)
    layers_per_level: tuple[int, ...] = (2, 3, 4, 4)
    growth_rate: int = 8
    base_filters: int = 16

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        return (self.patch_depth, *self.crop_shape)

    def to_dict(self) -> dict:
        """JSON-safe dictionary of the fields (tuples as lists)."""
        return record_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preset:
        data = dict(data)
        for key in ("spacing_mm", "crop_shape", "hu_window", "layers_per_level"):
            data[key] = tuple(data[key])
        return cls(**data)


PRESETS = {
    "pan2020": Preset("pan2020", spacing_mm=(1.0, 2.0, 2.0), crop_shape=(160, 160),
                      crop_mode="body", patch_depth=64, layers_per_level=(2, 4, 6, 8)),
    "cpu-fast": Preset("cpu-fast", spacing_mm=(2.0, 2.0, 2.0), crop_shape=(64, 64),
                       crop_mode="spine", patch_depth=64, layers_per_level=(2, 3, 4, 4)),
}


def build_dense_unet3d(input_shape=(64, 160, 160, 1), n_classes: int = 4, *,
                       layers_per_level=(2, 4, 6, 8), growth_rate: int = 8,
                       base_filters: int = 16, name: str = "dense_unet3d") -> keras.Model:
    """Build a dense 3-D U-Net (Pan et al. 2020).

    Parameters
    ----------
    input_shape : (I, J, K, 1) tuple of int
        Channels-last patch shape; every spatial size must be divisible by
        ``2 ** (len(layers_per_level) - 1)``.
    n_classes : int
        Softmax outputs.
    layers_per_level : sequence of int
        Dense layers per resolution level, finest first; the last entry is the
        bottleneck. Its length sets the depth.
    growth_rate : int
        Feature maps added by each dense layer (3x3x3 convolution).
    base_filters : int
        Channels after the stem and after the 1x1x1 reduction of the finest
        level; doubled at every coarser level.

    Returns
    -------
    keras.Model
        Input ``ct`` (scaled HU), output ``probabilities`` of shape
        ``(batch, I, J, K, n_classes)``.

    Raises
    ------
    ValueError
        If a spatial size is not divisible by the total down-sampling factor.

    Examples
    --------
    >>> model = build_dense_unet3d((16, 16, 16, 1), layers_per_level=(1, 1, 1),
    ...                            base_filters=4)
    >>> model.output_shape
    (None, 16, 16, 16, 4)
    """
    depth = len(layers_per_level) - 1
    factor = 2 ** depth
    if len(input_shape) != 4 or any(int(s) % factor for s in input_shape[:3]):
        raise ValueError(f"spatial input shape must be divisible by 2**{depth} = {factor}; "
                         f"got {tuple(input_shape)}")
    inputs = keras.Input(tuple(input_shape), name="ct")
    x = layers.Conv3D(base_filters, 3, padding="same", name="stem")(inputs)
    skips = []
    for level in range(depth):
        x = _dense_block(x, layers_per_level[level], growth_rate, name=f"enc{level}")
        x = _reduce(x, base_filters * 2**level, name=f"enc{level}_reduce")
        skips.append(x)
        x = layers.MaxPooling3D(2, name=f"pool{level}")(x)
    x = _dense_block(x, layers_per_level[depth], growth_rate, name="bottleneck")
    x = _reduce(x, base_filters * 2**depth, name="bottleneck_reduce")
    for level in reversed(range(depth)):
        x = layers.Conv3DTranspose(base_filters * 2**level, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _dense_block(x, layers_per_level[level], growth_rate, name=f"dec{level}")
        x = _reduce(x, base_filters * 2**level, name=f"dec{level}_reduce")
    outputs = layers.Conv3D(n_classes, 1, activation="softmax", dtype="float32",
                            name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _dense_block(x, n_layers: int, growth_rate: int, *, name: str):
    for i in range(n_layers):
        y = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        y = layers.Activation("relu", name=f"{name}_relu{i}")(y)
        y = layers.Conv3D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(y)
        x = layers.Concatenate(name=f"{name}_concat{i}")([x, y])
    return x


def _reduce(x, filters: int, *, name: str):
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Conv3D(filters, 1, use_bias=False, name=f"{name}_conv")(x)


@dataclass(frozen=True, eq=False)
class SpineModel:
    """A Keras network together with the preset its inputs must follow.

    Attributes
    ----------
    network : keras.Model
    preset : Preset
    info : dict
        Provenance written at training time (data, steps, validation Dice, ...).
    model_id : str
        ``"<preset>-<hash of the weights>"``; identifies the weights in results.
    """

    network: object = field(repr=False)
    preset: Preset
    info: dict = field(default_factory=dict, repr=False)
    model_id: str = ""


def build_model(preset: str | Preset = "cpu-fast", *, patch_depth: int | None = None) -> SpineModel:
    """Build an untrained :class:`SpineModel` for a preset.

    Examples
    --------
    >>> model = build_model("cpu-fast")
    >>> model.network.input_shape, model.preset.spacing_mm
    ((None, 64, 64, 64, 1), (2.0, 2.0, 2.0))
    """
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    depth = patch_depth or preset.patch_depth
    network = build_dense_unet3d((depth, *preset.crop_shape, 1), len(SEGMENTATION_CLASSES),
                                 layers_per_level=preset.layers_per_level,
                                 growth_rate=preset.growth_rate, base_filters=preset.base_filters,
                                 name=f"dense_unet3d_{preset.name}")
    return SpineModel(network, preset, {}, f"{preset.name}-untrained")


def _weights_id(network) -> str:
    digest = hashlib.sha256()
    for weight in network.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:12]


def save_model(model: SpineModel, path, *, include_optimizer: bool = False) -> Path:
    """Write the network (``.keras``) and its preset and provenance (``.json`` beside it)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files end in .keras, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    network = model.network
    if not include_optimizer and getattr(network, "optimizer", None) is not None:
        # Keras 3 always stores a compiled model's optimizer state (2x the weights);
        # an uncompiled twin built from the preset holds the weights alone
        network = build_model(model.preset, patch_depth=model.network.input_shape[1]).network
        network.set_weights(model.network.get_weights())
    network.save(tmp)
    tmp.replace(path)
    sidecar = {"preset": model.preset.to_dict(), "info": model.info,
               "model_id": f"{model.preset.name}-{_weights_id(model.network)}"}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return path


def load_model(path=None) -> SpineModel:
    """Load a trained model; ``None`` loads the shipped default weights.

    Loading goes through the process-wide model cache (see :func:`clear_model_cache`):
    the same unchanged file returns the same :class:`SpineModel` object, so a batch
    run never holds two copies of one network.

    Parameters
    ----------
    path : str or Path, optional
        A ``.keras`` file written by :func:`save_model`, with its ``.json`` sidecar.

    Returns
    -------
    SpineModel

    Raises
    ------
    SegmentationError
        If the file or its ``.json`` preset sidecar is missing or unreadable.

    Examples
    --------
    >>> load_model() is load_model(DEFAULT_MODEL_PATH)
    True
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        hint = (" (the shipped weights are missing: reinstall bmdqct or run `bmdqct train`)"
                if path == DEFAULT_MODEL_PATH else "")
        raise SegmentationError(f"model file {path} or its preset file {sidecar.name} not found; "
                                f"expected a .keras file written by bmdqct.segment.save_model{hint}")
    return _load_model_file(str(path.resolve()), _file_stamp(path), _file_stamp(sidecar))


def clear_model_cache() -> None:
    """Forget every model loaded by :func:`load_model`.

    The cache is keyed by the resolved path of the ``.keras`` file and the size
    and modification time of it and of its ``.json`` sidecar, so a file that is
    rewritten (e.g. by ``bmdqct train``) is reloaded without clearing. Clear it to
    free the memory of networks no longer needed, or to force a re-read. It holds
    at most four models; the least recently used is dropped first.

    Examples
    --------
    >>> first = load_model()
    >>> clear_model_cache()
    >>> load_model() is first
    False
    """
    _load_model_file.cache_clear()


_MODEL_CACHE_SIZE = 4  # models kept by load_model's cache (a batch run uses one)


def _file_stamp(path: Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns): changes whenever the file is rewritten."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=_MODEL_CACHE_SIZE)
def _load_model_file(resolved: str, model_stamp: tuple[int, int],
                     sidecar_stamp: tuple[int, int]) -> SpineModel:
    """Read one model file; the stamps only key the cache (see :func:`clear_model_cache`)."""
    path = Path(resolved)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        preset = Preset.from_dict(meta["preset"])
        network = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        raise SegmentationError(f"cannot read model {path}: {err}") from err
    model = SpineModel(network, preset, meta.get("info", {}),
                       meta.get("model_id") or f"{preset.name}-{_weights_id(network)}")
    logger.info("loaded segmentation model %s from %s", model.model_id, path)
    return model
