"""Vertebral-body segmentation with a dense 3-D U-Net (the only TensorFlow user).

Importing this subpackage loads TensorFlow; ``import bmdqct`` does not.

Typical use (``volume`` from :func:`bmdqct.io.load_ct`)::

    from bmdqct.segment import segment_spine
    seg = segment_spine(volume)      # shipped weights, loaded once per process
    seg.classes.names                # {'T1-T6': 1, 'T7-T12': 2, 'L1-L2': 3}
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner off stderr

from ._tf_quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # before .model imports it: start-up logging -> DEBUG log messages

from .grid import Prepared, prepare, to_source_grid  # noqa: E402
from .inference import Segmentation, predict_patches, segment_spine  # noqa: E402
from .model import (  # noqa: E402
    DEFAULT_MODEL_PATH,
    PRESETS,
    Preset,
    SpineModel,
    build_dense_unet3d,
    build_model,
    clear_model_cache,
    load_model,
    save_model,
)

__all__ = [
    "DEFAULT_MODEL_PATH",
    "PRESETS",
    "Preset",
    "Prepared",
    "Segmentation",
    "SpineModel",
    "build_dense_unet3d",
    "build_model",
    "clear_model_cache",
    "load_model",
    "predict_patches",
    "prepare",
    "save_model",
    "segment_spine",
    "to_source_grid",
]
