"""Smoke tests of training: a few steps on tiny volumes, checkpoint and resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from bmdqct.cli import main  # noqa: E402
from bmdqct.errors import InputError  # noqa: E402
from bmdqct.io import write_nifti  # noqa: E402
from bmdqct.levels import level_id  # noqa: E402
from bmdqct.segment.model import Preset, load_model  # noqa: E402
from bmdqct.segment.train import (  # noqa: E402
    TrainingConfig,
    load_folder_cases,
    prepare_case,
    train,
)
from bmdqct.volume import LabelVolume  # noqa: E402

from test_segment import toy_trunk  # noqa: E402

TINY = Preset("tiny", (4.0, 4.0, 4.0), (16, 16), "spine", 16, layers_per_level=(1, 1),
              base_filters=4)


@pytest.fixture
def folder(tmp_path):
    """Two annotated toy scans in VerSe ids: bodies alternate L1 and L2 from the top."""
    root = tmp_path / "data"
    for case in ("a", "b"):
        ct, bodies = toy_trunk(spacing=(2.5, 1.6, 1.6), shape=(40, 120, 120))
        from scipy import ndimage

        components, n = ndimage.label(bodies)
        levels = np.zeros(bodies.shape, dtype=np.int16)
        for i in range(1, n + 1):
            levels[components == i] = level_id("L1") if i % 2 else level_id("T12")
        (root / case).mkdir(parents=True)
        write_nifti(ct, root / case / "ct.nii.gz")
        write_nifti(LabelVolume(levels, ct.affine, {"L1": 20, "T12": 19}),
                    root / case / "seg.nii.gz", like=ct)
    return root


def test_folder_cases_map_levels_to_classes(folder):
    cases = load_folder_cases(folder, scheme="verse")
    assert [name for name, _, _ in cases] == ["a", "b"]
    _, ct, classes = cases[0]
    assert set(np.unique(classes)) == {0, 2, 3}  # T12 -> T7-T12, L1 -> L1-L2
    crop = prepare_case(ct, classes, TINY)
    assert crop["hu"].dtype == np.int16 and crop["labels"].dtype == np.uint8
    assert crop["hu"].shape[1:] == (16 + 16, 16 + 16)  # crop plus the augmentation margin
    assert set(np.unique(crop["labels"])) <= {0, 2, 3} and crop["labels"].any()


def test_folder_without_label_map_is_refused(tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="expected one CT"):
        load_folder_cases(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_folder_cases(tmp_path / "absent")


@pytest.mark.slow
def test_smoke_training_checkpoints_and_resumes(folder, tmp_path):
    config = TrainingConfig(preset=TINY, n_synthetic=0, n_validation=0, data_dirs=(str(folder),),
                            epochs=1, steps_per_epoch=2, batch_size=2, workers=1)
    output, ckpt = tmp_path / "model.keras", tmp_path / "ckpt"
    model = train(config, output, checkpoint_dir=ckpt, snapshot_dir=tmp_path / "epochs")
    assert output.is_file() and output.with_suffix(".json").is_file()
    snapshot = load_model(tmp_path / "epochs" / "epoch-001.keras")
    assert snapshot.info["epoch"] == 1 and snapshot.model_id == model.model_id  # one epoch: the best
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert model.info["training"]["steps_per_epoch"] == 2
    # resuming with more epochs continues from the checkpoint, not from scratch
    longer = TrainingConfig(**{**config.__dict__, "epochs": 2})
    train(longer, output, checkpoint_dir=ckpt)
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert load_model(output).preset == TINY


@pytest.mark.slow
def test_train_command_runs(folder, tmp_path, capsys):
    code = main(["train", "--preset", "cpu-fast", "--synthetic", "0", "--validation", "0",
                 "--data", str(folder), "--epochs", "1", "--steps-per-epoch", "1",
                 "--lr-patience", "7",
                 "-o", str(tmp_path / "m.keras"), "--checkpoint-dir", str(tmp_path / "c")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_id"].startswith("cpu-fast-")
    assert load_model(tmp_path / "m.keras").info["training"]["lr_patience"] == 7


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_weights(folder, tmp_path):
    from bmdqct.segment.model import build_model, save_model
    from bmdqct.segment.train import _initial_network

    start = build_model(TINY)
    path = save_model(start, tmp_path / "start.keras")
    config = TrainingConfig(preset=TINY, n_synthetic=0, n_validation=0, data_dirs=(str(folder),),
                            epochs=1, steps_per_epoch=1, batch_size=1, workers=1,
                            init_model=str(path))
    network = _initial_network(config, TINY)
    for got, want in zip(network.get_weights(), start.network.get_weights()):
        np.testing.assert_array_equal(got, want)
    # a fresh network of the same preset draws other weights
    fresh = _initial_network(TrainingConfig(preset=TINY), TINY)
    assert any(not np.array_equal(a, b)
               for a, b in zip(fresh.get_weights(), start.network.get_weights()))
    model = train(config, tmp_path / "tuned.keras", checkpoint_dir=tmp_path / "ckpt")
    assert model.info["training"]["init_model"] == str(path)
    other = Preset("other", (4.0, 4.0, 4.0), (16, 16), "spine", 16, layers_per_level=(1, 1),
                   base_filters=8)
    with pytest.raises(InputError, match="preset 'tiny'.*'other'"):
        _initial_network(replace(config, preset=other), other)
