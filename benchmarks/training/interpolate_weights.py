"""Interpolate two models' weights (WiSE-FT): ``(1 - alpha) * A + alpha * B``.

    python benchmarks/training/interpolate_weights.py A.keras B.keras ALPHA OUT.keras

Wortsman et al. (CVPR 2022, "Robust fine-tuning of zero-shot models") showed that
averaging the weights of a model and of its fine-tuned copy keeps much of what the
fine-tuning gained on the new data and much of what the original did elsewhere;
here A is the shipped synthetic model and B a transfer fine-tune of it. A and B
must share a preset (same network). B may be a training checkpoint
(``ckpt/checkpoint.keras``: network and optimizer); OUT is a plain bmdqct model whose
``.json`` records the two sources and alpha.
"""

from __future__ import annotations

import sys
from pathlib import Path


def load_network(path):
    """The network of a bmdqct model file or of a training checkpoint."""
    import keras

    from bmdqct.segment import load_model
    from bmdqct.segment.train import dice_loss

    if Path(path).with_suffix(".json").is_file():
        return load_model(path).network
    return keras.models.load_model(path, custom_objects={"dice_loss": dice_loss}, compile=False)


def interpolate(a_path, b_path, alpha: float, out_path):
    from bmdqct.segment import load_model
    from bmdqct.segment.model import SpineModel, save_model

    base = load_model(a_path)
    other = load_network(b_path)
    weights = [(1.0 - alpha) * wa + alpha * wb
               for wa, wb in zip(base.network.get_weights(), other.get_weights(), strict=True)]
    network = base.network.__class__.from_config(base.network.get_config())
    network.set_weights(weights)
    info = {"interpolated": {"a": str(a_path), "a_model_id": base.model_id, "b": str(b_path),
                             "alpha": alpha}}
    return save_model(SpineModel(network, base.preset, info, ""), out_path)


if __name__ == "__main__":
    a, b, alpha, out = sys.argv[1:5]
    print(interpolate(a, b, float(alpha), out))
