"""Tests of the dense U-Net builder, the model grid and sliding-window inference."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("tensorflow").keras

from bmdqct.errors import SegmentationError  # noqa: E402
from bmdqct.segment import (  # noqa: E402
    PRESETS,
    SpineModel,
    build_dense_unet3d,
    build_model,
    predict_patches,
    segment_spine,
)
from bmdqct.segment.grid import (  # noqa: E402
    footprint,
    prepare,
    resample_to_model_grid,
    scale_hu,
    spine_centre_line,
    to_source_grid,
)
from bmdqct.segment.model import Preset, clear_model_cache, load_model, save_model  # noqa: E402
from bmdqct.segment.train import dice_loss, dice_scores  # noqa: E402
from bmdqct.volume import CTVolume  # noqa: E402


def toy_trunk(spacing=(2.5, 0.8, 0.8), shape=(60, 240, 240), shift_mm=(0.0, 0.0)):
    """An elliptic trunk (soft tissue) with a column of bony 'bodies' separated by discs.

    Returns the CT and a boolean mask of the bodies. The spine sits 40 mm behind
    the trunk's centre, like a real one, optionally shifted by `shift_mm` (row, col).
    """
    sz, sy, sx = spacing
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    cy, cx = shape[1] * sy / 2, shape[2] * sx / 2
    hu = np.full(shape, -1000.0, dtype=np.float32)
    trunk = ((y - cy) / 80.0) ** 2 + ((x - cx) / 110.0) ** 2 <= 1.0
    hu[trunk] = 40.0
    sy0, sx0 = cy + 20.0 + shift_mm[0], cx + shift_mm[1]
    body = ((y - sy0) / 14.0) ** 2 + ((x - sx0) / 18.0) ** 2 <= 1.0
    bodies = body & ((z % 30.0) < 24.0) & (z > 10) & (z < shape[0] * sz - 10)
    hu[bodies] = 300.0
    # posterior elements: a bony bar behind each body (not part of the truth)
    hu[((y - sy0 - 26.0) / 5.0) ** 2 + ((x - sx0) / 12.0) ** 2 <= 1.0] = 500.0
    return CTVolume.from_spacing(hu, spacing), bodies


def threshold_model(preset: Preset, threshold_hu=150.0) -> SpineModel:
    """A fixed 'network' that calls every voxel above `threshold_hu` class 3 (L1-L2)."""
    depth = preset.patch_depth
    inputs = keras.Input((depth, *preset.crop_shape, 1))
    logits = keras.layers.Conv3D(4, 1, name="fixed")(inputs)
    outputs = keras.layers.Softmax()(logits)
    network = keras.Model(inputs, outputs)
    scaled = float(scale_hu(np.array([threshold_hu]), preset.hu_window)[0])
    kernel = np.zeros((1, 1, 1, 1, 4), dtype=np.float32)
    kernel[..., 3] = 200.0
    bias = np.array([0.0, -50.0, -50.0, -200.0 * scaled], dtype=np.float32)
    network.get_layer("fixed").set_weights([kernel, bias])
    return SpineModel(network, preset, {}, "threshold-test")


def test_build_dense_unet3d_shapes_and_softmax():
    model = build_dense_unet3d((16, 16, 16, 1), layers_per_level=(1, 2, 2), growth_rate=8,
                               base_filters=4)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 16, 1)).astype(np.float32)
    y = np.asarray(model(x))
    assert y.shape == (1, 16, 16, 16, 4)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)
    # dense blocks: the first block's output holds the stem's 4 maps plus 1 x growth rate
    assert model.get_layer("enc0_concat0").output.shape[-1] == 4 + 8


def test_build_dense_unet3d_rejects_indivisible_shape():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2 = 4"):
        build_dense_unet3d((30, 32, 32, 1), layers_per_level=(1, 1, 1))


@pytest.mark.parametrize("name, params, shape", [
    ("pan2020", 669_812, (None, 64, 160, 160, 1)),  # design notes: 668 k parameters
    ("cpu-fast", 437_556, (None, 64, 64, 64, 1)),
])
def test_presets_build(name, params, shape):
    model = build_model(name)
    assert model.network.count_params() == params
    assert model.network.input_shape == shape
    assert model.network.output_shape == shape[:-1] + (4,)


@pytest.mark.slow
def test_pan2020_preset_runs_on_a_patch():
    # the paper's network (every layer and width of the preset; test_presets_build checks the
    # full 64 x 160 x 160 build) on a 16 x 32 x 32 patch: the full patch needs 5.4 GB to run
    from bmdqct.segment.model import PRESETS

    preset = PRESETS["pan2020"]
    network = build_dense_unet3d((16, 32, 32, 1), 4, layers_per_level=preset.layers_per_level,
                                 growth_rate=preset.growth_rate, base_filters=preset.base_filters)
    assert network.count_params() == 669_812                       # the same weights as the full build
    x = np.random.default_rng(0).normal(size=(1, 16, 32, 32, 1)).astype(np.float32)
    y = np.asarray(network(x, training=False))
    assert y.shape == (1, 16, 32, 32, 4)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


def test_scale_hu_window():
    np.testing.assert_array_equal(scale_hu(np.array([-3000.0, 250.0, 9000.0]), (-1000, 1500)),
                                  [-1.0, 0.0, 1.0])


def test_resample_keeps_extent_and_positions():
    # a ramp equal to the source index: model voxel m must read (m + 0.5) * 2 - 0.5,
    # the source index of its centre (linear interpolation of a linear function)
    array = np.broadcast_to(np.arange(40.0)[:, None, None], (40, 4, 4))
    out, ratio = resample_to_model_grid(array, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0), antialias=False)
    assert out.shape == (20, 4, 4)
    np.testing.assert_array_equal(ratio, [2.0, 1.0, 1.0])
    np.testing.assert_allclose(out[:-1, 0, 0], (np.arange(19) + 0.5) * 2 - 0.5, atol=1e-5)


def test_resample_antialiasing_keeps_mean():
    array = np.random.default_rng(1).normal(100.0, 30.0, size=(30, 60, 60)).astype(np.float32)
    out, _ = resample_to_model_grid(array, (1.0, 0.7, 0.7), (2.0, 2.0, 2.0))
    assert out.mean() == pytest.approx(100.0, abs=1.0)
    assert out.std() < 30.0 / 2  # averaging over ~ 2 x 2.9 x 2.9 voxels lowers the noise


@pytest.mark.parametrize("name", ["cpu-fast", "pan2020"])
def test_prepare_and_inverse_round_trip_of_labels(name):
    volume, bodies = toy_trunk(shift_mm=(6.0, -9.0))
    preset = PRESETS[name]
    prepared, crop_labels = prepare(volume, preset, labels=bodies.astype(np.int16))
    depth = round(volume.shape[0] * 2.5 / preset.spacing_mm[0])
    assert prepared.image.shape == (depth, *preset.crop_shape)
    onehot = np.eye(4, dtype=np.float32)[np.where(crop_labels > 0, 3, 0)]
    box = footprint(prepared)
    back = np.argmax(to_source_grid(onehot, prepared, box=box), axis=-1) == 3
    mapped = np.zeros_like(bodies)
    mapped[box] = back
    dice = 2 * (mapped & bodies).sum() / (mapped.sum() + bodies.sum())
    # 2 mm model voxels against 0.8 x 0.8 x 2.5 mm source voxels: boundary error
    # of about half a model voxel on bodies ~28 x 36 x 24 mm
    assert dice > 0.9


def test_spine_centre_line_follows_the_spine():
    volume, bodies = toy_trunk(shift_mm=(10.0, 15.0))
    model_hu, _ = resample_to_model_grid(volume.hu, volume.spacing, (2.0, 2.0, 2.0))
    centre = spine_centre_line(model_hu, (2.0, 2.0, 2.0))
    # model voxel m is centred at (m + 0.5) * 2 - 0.4 mm; the body's centre is at
    # 111 mm (column) and 126 mm (row). The bone centroid includes the posterior
    # bar (26 mm behind), then moves 12 mm anteriorly: within 8 voxels of the body.
    to_model = lambda mm: (mm + 0.4) / 2 - 0.5  # noqa: E731
    assert np.median(centre[:, 1]) == pytest.approx(to_model(111.0), abs=0.5)
    assert abs(np.median(centre[:, 0]) - to_model(126.0)) < 8.0


def test_crop_follows_the_spinal_canal_when_the_field_of_view_cuts_the_body():
    """A field of view cut 20 mm right of the spine and 140 mm left of it (a cardiac crop):
    the bone-centroid line strays to the ribs and the heart side; the canal's body line holds."""
    from bmdqct.segment.grid import prepare
    from bmdqct.segment.model import PRESETS
    from bmdqct.spine import find_spinal_canal
    from bmdqct.synthetic import synthesize_ldct

    ct, truth = synthesize_ldct(5, cranial="T8", caudal="L2", shape=(256, 256), pixel_mm=1.4, slice_mm=2.0)
    rows, cols = np.nonzero(np.asarray(truth.levels.labels).any(axis=0))
    r0, r1 = int(rows.min() - 40 / 1.4), int(rows.max() + 25 / 1.4)
    c0, c1 = int(cols.mean() - 20 / 1.4), min(int(cols.mean() + 140 / 1.4), 256)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ [0, r0, c0] + ct.affine[:3, 3]
    crop = CTVolume(np.asarray(ct.hu)[:, r0:r1, c0:c1].copy(), affine)
    body_mm = np.array([rows.mean() - r0 + 0.5, cols.mean() - c0 + 0.5]) * 1.4     # the bodies' mean centre
    preset = PRESETS["cpu-fast"]

    def off_mm(prepared):   # model voxel m spans [2m, 2m + 2] mm
        return float(np.hypot(*((np.median(prepared.centre_vox, axis=0) + 0.5) * 2.0 - body_mm)))

    assert off_mm(prepare(crop, preset)) > 35.0
    assert off_mm(prepare(crop, preset, canal=find_spinal_canal(crop))) < 12.0
    # on the whole field of view both lines agree: the crop the network was trained with stays
    whole = prepare(ct, preset, canal=find_spinal_canal(ct))
    assert np.array_equal(whole.centre_vox, prepare(ct, preset).centre_vox)


def test_spine_centre_line_requires_bone():
    volume, _ = toy_trunk()
    soft = np.minimum(np.asarray(volume.hu), 40.0)
    with pytest.raises(SegmentationError, match="no spine found"):
        spine_centre_line(soft, volume.spacing)


def test_predict_patches_blends_windows():
    preset = Preset("tiny", (2.0, 2.0, 2.0), (16, 16), "spine", 16, layers_per_level=(1, 1))
    model = threshold_model(preset)
    image = np.linspace(-1, 1, 40 * 16 * 16, dtype=np.float32).reshape(40, 16, 16)
    probs = predict_patches(model, image, overlap=0.5)
    assert probs.shape == (40, 16, 16, 4)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    single = np.asarray(model.network(image[None, :16, ..., None]))[0]
    np.testing.assert_allclose(probs[:16], single, atol=1e-5)  # a pointwise model: exact
    with pytest.raises(ValueError, match="overlap"):
        predict_patches(model, image, overlap=1.0)


def test_segment_spine_maps_back_to_the_ct_grid():
    volume, bodies = toy_trunk(shift_mm=(-5.0, 8.0))
    model = threshold_model(PRESETS["cpu-fast"])
    # toy bodies are all class L1-L2: keep them so (no anatomical-order decoding)
    seg = segment_spine(volume, model, anatomical_order=False)
    assert seg.classes.shape == volume.shape
    np.testing.assert_array_equal(seg.classes.affine, volume.affine)
    assert seg.model_id == "threshold-test"
    found = seg.classes.labels == 3
    # the threshold model also finds the posterior bar; compare within the bodies' columns
    dice = 2 * (found & bodies).sum() / ((found & ~_bars(volume)).sum() + bodies.sum())
    assert dice > 0.9
    assert seg.confidence.shape == volume.shape and seg.confidence.dtype == np.float16
    assert 0.5 <= seg.confidence.min() and seg.confidence.max() <= 1.0


def _bars(volume):
    return np.asarray(volume.hu) == 500.0


def test_segment_spine_without_bone_raises():
    volume, _ = toy_trunk()
    soft = volume.with_hu(np.minimum(np.asarray(volume.hu), 40.0))
    with pytest.raises(SegmentationError, match="no spine found"):
        segment_spine(soft, threshold_model(PRESETS["cpu-fast"]))


def test_dice_loss_and_scores():
    y = np.eye(4, dtype=np.float32)[np.array([[0, 1], [2, 3]])][None]
    assert float(dice_loss(y, y)) == pytest.approx(0.0, abs=1e-6)
    # a uniform 0.25 on 4 voxels, each class in exactly one: per class the intersection is 0.25
    # and |P| + |T| = 1 + 1, so each ratio is (2 * 0.25 + eps) / (2 + eps)
    uniform = np.full_like(y, 0.25)
    assert float(dice_loss(y, uniform)) == pytest.approx(1.0 - 1.5 / 3.0, rel=1e-6)  # eps = 1
    assert float(dice_loss(y, uniform, eps=0.0)) == pytest.approx(1.0 - 0.5 / 2.0, rel=1e-6)
    scores = dice_scores(np.array([1, 1, 0]), np.array([1, 0, 0]), classes=(1, 2))
    assert scores[1] == pytest.approx(2 / 3)
    assert np.isnan(scores[2])  # absent from both


def test_save_and_load_model_round_trip(tmp_path):
    preset = Preset("tiny", (2.0, 2.0, 2.0), (16, 16), "spine", 16, layers_per_level=(1, 1))
    model = build_model(preset)
    path = save_model(model, tmp_path / "m.keras")
    loaded = load_model(path)
    assert loaded.preset == preset
    assert loaded.model_id.startswith("tiny-")
    x = np.zeros((1, 16, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.network(x), model.network(x), atol=1e-6)
    assert load_model(path) is loaded  # loaded once per process


def test_model_cache_rereads_a_rewritten_file_and_can_be_cleared(tmp_path, monkeypatch):
    preset = Preset("tiny", (2.0, 2.0, 2.0), (16, 16), "spine", 16, layers_per_level=(1, 1))
    path = save_model(build_model(preset), tmp_path / "m.keras")
    first = load_model(path)
    assert load_model(str(path)) is first
    monkeypatch.chdir(tmp_path)
    assert load_model("m.keras") is first  # keyed by the resolved path
    clear_model_cache()
    second = load_model(path)
    assert second is not first and second.model_id == first.model_id
    # a new network written to the same file (new weights, new stamp) is read again, uncleared
    other = build_model(preset)
    other.network.set_weights([w + 0.5 for w in other.network.get_weights()])
    save_model(other, path)
    third = load_model(path)
    assert third is not second and third.model_id != second.model_id
    x = np.ones((1, 16, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(third.network(x), other.network(x), atol=1e-6)


@pytest.mark.slow  # each case imports TensorFlow in a fresh process (~10 s)
@pytest.mark.subprocess
@pytest.mark.parametrize("started_before, threads_after", [(False, "cores"), (True, "0")])
def test_use_all_cores_is_idempotent_without_module_state(started_before, threads_after):
    """Thread set-up keeps no flag of its own: TensorFlow holds the value.

    Before the runtime starts, the request sets one thread per core and repeating it changes
    nothing; once an earlier TensorFlow computation started the runtime (default 0 = TensorFlow's
    choice), the request is dropped without an error and the runtime keeps its pools.
    """
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("os.sched_getaffinity is Linux-only")
    start = "float(tf.reduce_sum(tf.ones(3)))\n" if started_before else ""
    code = (
        "import os, tensorflow as tf\n"
        "from bmdqct.segment import inference\n"
        "cores = len(os.sched_getaffinity(0))\n"
        f"{start}"
        "inference._use_all_cores(); inference._use_all_cores()\n"
        "float(tf.reduce_sum(tf.ones(3)))\n"
        "inference._use_all_cores()\n"
        f"assert tf.config.threading.get_intra_op_parallelism_threads() == {threads_after}, "
        "tf.config.threading.get_intra_op_parallelism_threads()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_save_compiled_model_keeps_weights_and_depth_without_optimizer(tmp_path):
    from tensorflow import keras

    preset = Preset("tiny", (2.0, 2.0, 2.0), (16, 16), "spine", 16, layers_per_level=(1, 1))
    model = build_model(preset, patch_depth=24)
    model.network.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss)
    x = np.random.default_rng(0).normal(size=(1, 24, 16, 16, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[np.zeros((1, 24, 16, 16), int)]
    model.network.train_on_batch(x, y)  # optimizer state exists now
    path = save_model(model, tmp_path / "m.keras", include_optimizer=False)
    loaded = load_model(path)
    assert loaded.network.input_shape == (None, 24, 16, 16, 1)
    assert getattr(loaded.network, "optimizer", None) is None
    np.testing.assert_allclose(loaded.network(x), model.network(x), atol=1e-6)
    with_state = save_model(model, tmp_path / "full.keras", include_optimizer=True)
    assert with_state.stat().st_size > path.stat().st_size


def test_load_model_missing_file(tmp_path):
    with pytest.raises(SegmentationError, match="not found"):
        load_model(tmp_path / "absent.keras")


def test_segment_command_writes_classes_on_the_input_grid(tmp_path, capsys):
    import json

    from bmdqct.cli import main
    from bmdqct.io import load_labels, write_nifti

    volume, bodies = toy_trunk(shift_mm=(0.0, 5.0))
    write_nifti(volume, tmp_path / "ct.nii.gz")
    model_path = save_model(threshold_model(PRESETS["cpu-fast"]), tmp_path / "threshold.keras")
    code = main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "out"),
                 "--model", str(model_path), "--no-order"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voxels_per_class"]["L1-L2"] > bodies.sum() * 0.9
    classes = load_labels(tmp_path / "out" / "classes.nii.gz")
    assert classes.shape == volume.shape
    np.testing.assert_allclose(classes.affine, volume.affine, atol=1e-4)
    assert (tmp_path / "out" / "confidence.nii.gz").is_file()


def test_segment_command_reports_missing_input(tmp_path, capsys):
    from bmdqct.cli import main

    assert main(["segment", str(tmp_path / "absent.nii.gz"), "-o", str(tmp_path)]) == 1
    assert "absent.nii.gz" in capsys.readouterr().err


def test_classes_on_source_grid_matches_full_probabilities():
    from bmdqct.segment.grid import classes_on_source_grid

    volume, bodies = toy_trunk(shift_mm=(3.0, -4.0))
    preset = PRESETS["cpu-fast"]
    prepared, crop_labels = prepare(volume, preset, labels=bodies.astype(np.int16))
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=prepared.image.shape).astype(np.float32)
    full = to_source_grid(probs, prepared)
    classes, confidence = classes_on_source_grid(probs, prepared)
    np.testing.assert_array_equal(classes, np.argmax(full, axis=-1))
    np.testing.assert_allclose(confidence, np.max(full, axis=-1), rtol=1e-6)
