"""Average the weights of models of one network: WiSE-FT and SWA.

    python benchmarks/training/average_weights.py OUT.keras MODEL[=WEIGHT] MODEL[=WEIGHT] ...

Each MODEL is a bmdqct model file (``.keras`` with its ``.json``) or a training
checkpoint (``ckpt/checkpoint.keras``, network and optimizer); weights default to
equal and are normalised to sum 1. The first model file among them gives the preset
(``cpu-fast`` when all are checkpoints). OUT's ``.json`` records the sources and their
weights.

* WiSE-FT (Wortsman et al., CVPR 2022, "Robust fine-tuning of zero-shot models"):
  the original model and its fine-tuned copy, e.g. ``cpu-fast.keras=0.5 tuned.keras=0.5``,
  keeps much of what fine-tuning gained on the new data and of what the original did
  elsewhere.
* SWA (Izmailov et al., UAI 2018, "Averaging weights leads to wider optima and better
  generalization"): the epochs of a run at a constant learning rate, equally weighted.
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


def average(sources, out_path):
    """Write the weighted average of `sources` ((path, weight) pairs) to `out_path`."""
    from bmdqct.segment.model import PRESETS, SpineModel, save_model

    files = [p for p, _ in sources if Path(p).with_suffix(".json").is_file()]
    preset = _preset_of(files[0]) if files else PRESETS["cpu-fast"]
    total = sum(w for _, w in sources)
    network = load_network(sources[0][0])          # holds the average in the end
    weights = [sources[0][1] / total * a for a in network.get_weights()]
    for path, w in sources[1:]:
        layers = load_network(path).get_weights()
        if len(layers) != len(weights):
            raise SystemExit(f"{path}: not the network of {sources[0][0]}")
        weights = [acc + w / total * a for acc, a in zip(weights, layers)]
    network.set_weights(weights)
    info = {"averaged": [{"model": str(p), "weight": w / total} for p, w in sources]}
    return save_model(SpineModel(network, preset, info, ""), out_path)


def _preset_of(path):
    from bmdqct.segment import load_model

    return load_model(path).preset


def _parse(arg: str):
    path, _, weight = arg.partition("=")
    return path, float(weight) if weight else 1.0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    print(average([_parse(a) for a in sys.argv[2:]], sys.argv[1]))
