"""TFLite Micro: int8 files it runs (parity with LiteRT on the same file), the checks before it sees a
file, the measured arena, and the V2 paper's t-way split (float equality, int8 top-1, smaller arena)."""

import numpy as np
import pytest

from conftest import randomize_batchnorm, resize

micro = pytest.importorskip("keras_mobilenets.deploy.micro")
pytest.importorskip("tflite_micro")

CLASSIC = {  # the classic microcontroller configurations at 96x96, grayscale and RGB
    "v1-0.25": dict(arch="v1", alpha=0.25),
    "v2-0.35": dict(arch="v2", alpha=0.35),
    "v3-small-min-0.75": dict(arch="v3-small", alpha=0.75, minimalistic=True),
}


def _photos96(photos):
    return resize(photos, 96)


def _crops(photos, count, seed):
    """`count` random crops (60-100% of the side, every other one mirrored) of each 224x224 photo at 96x96,
    and the index of the photo each came from."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for label, photo in enumerate(photos):
        for j in range(count):
            side = int(rng.integers(134, 225))
            top, left = rng.integers(0, 225 - side, 2)
            crop = resize(photo[None, top:top + side, left:left + side], 96)[0]
            crops.append(crop[:, ::-1] if j % 2 else crop)
            labels.append(label)
    return np.stack(crops), np.array(labels)


def trained_like(model, photos):
    """A stand-in for a trained net, built without training: outputs that depend on the image, logits
    that name each photo's own class with a margin, and an int8 file that keeps its top-1.

    No trained MobileNet can be had offline (the ImageNet files are downloads), and a few epochs in CI cost
    minutes. An untrained net is the opposite of a trained one in what matters here: calibrating random
    BatchNorms on five photos left logits within one int8 step of each other, and through 17 random blocks
    the int8 rounding noise grew to 40% of the features (measured), so any rounding flipped the top-1.
    What a trained net has, and is given here: BatchNorm statistics of its data (40 crops of the photos),
    residual branches small against the stream they add to (scaled by 0.1: the int8 noise at the
    features halves, 21% measured), and a classifier fit to its features (ridge regression of the pooled
    features of the photos and crops onto one class per photo, the logits layer's own weights)."""
    import keras
    import tensorflow as tf

    from keras_mobilenets.nets.builder import block_info
    from keras_mobilenets.train.recipe import recalibrate_batchnorm

    randomize_batchnorm(model)
    for record in block_info(model):
        kinds = [type(model.get_layer(name)).__name__ for name in record.layers]
        if kinds[-2:] == ["BatchNormalization", "Add"]:
            branch = model.get_layer(record.layers[-2])
            gamma, beta, mean, var = branch.get_weights()
            branch.set_weights([gamma * 0.1, beta * 0.1, mean, var])
    crops, labels = _crops(photos, 8, seed=1)
    crops = micro.model_inputs(model, crops)
    data = tf.data.Dataset.from_tensor_slices((crops, np.zeros(len(crops)))).batch(len(crops))
    recalibrate_batchnorm(model, data, batches=1)
    head = [layer for layer in model.layers if layer.get_weights()][-1]  # Dense, or V1/V3's 1x1 Conv2D
    features = keras.Model(model.input, head.input)(np.concatenate([crops, _inputs(model, photos)]))
    features = np.asarray(features).reshape(len(features), -1)
    kernel_shape = head.get_weights()[0].shape
    classes = np.r_[labels, np.arange(len(photos))]
    targets = -np.ones((len(classes), kernel_shape[-1]))
    targets[np.arange(len(classes)), classes] = 1
    centered = np.c_[features - features.mean(0), np.ones(len(features))]
    # ridge (lambda 10) in its dual form: 45 samples, up to 1280 features
    weights = centered.T @ np.linalg.solve(centered @ centered.T + 10 * np.eye(len(centered)), targets)
    kernel = weights[:-1]
    bias = weights[-1] - features.mean(0) @ kernel
    head.set_weights([kernel.reshape(kernel_shape).astype(np.float32), bias.astype(np.float32)])
    return model


def _inputs(model, photos):
    return micro.model_inputs(model, _photos96(photos))


_FILES = {}


def int8_file(name, channels, photos):
    """(model, images, int8 file) of a classic configuration with 10 classes, converted once per run."""
    if (name, channels) not in _FILES:
        import keras

        keras.utils.set_random_seed(0)  # the kernels too: the same net every run
        model = micro.micro_model(resolution=96, channels=channels, classes=10, **CLASSIC[name])
        images = _inputs(model, photos)
        trained_like(model, photos)
        _FILES[name, channels] = model, images, micro.convert_micro(model, images)
    return _FILES[name, channels]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_micro_matches_litert_on_the_same_int8_file(name, channels, photos):
    model, images, content = int8_file(name, channels, photos)
    assert images.shape[-1] == channels
    assert {op for op, *_ in micro.operators(content)} <= micro.SUPPORTED_OPS
    outputs = micro.run_micro(content, images, raw=True)
    assert outputs.dtype == np.int8 and outputs.shape == (len(images), 10)
    assert np.ptp(outputs.astype(int), axis=0).max() > 10  # outputs depend on the image
    # bit-exact against LiteRT's reference kernels: TFLite Micro's kernels are the same integer arithmetic
    assert micro.parity_steps(content, images) == 0


@pytest.fixture(scope="module")
def v2_small(photos):
    return int8_file("v2-0.35", 3, photos)


def test_arena_is_the_smallest_that_runs_and_matches_the_recording_allocator(v2_small):
    _, images, content = v2_small
    arena = micro.smallest_arena(content, resolution=64)
    assert micro.fits(content, arena) and not micro.fits(content, arena - 64)
    recorded = micro.recorded_allocations(content, arena)
    assert recorded["head"] + recorded["tail"] == recorded["total"]
    assert recorded["total"] <= arena <= recorded["total"] + 64 + 16  # alignment slack only
    # the planned tensors are at least the largest op's input + output (48x48x16 twice at 0.35/96)
    assert recorded["head"] >= 2 * 48 * 48 * 16
    np.testing.assert_array_equal(micro.run_micro(content, images[:2], arena + 64, raw=True),
                                  micro.run_micro(content, images[:2], raw=True))


def test_too_small_arena_is_a_runtime_error(v2_small):
    _, images, content = v2_small
    with pytest.raises(RuntimeError, match="arena_size=4096"):
        micro.run_micro(content, images[:1], arena_size=4096)


def test_degenerate_softmax_is_refused_and_its_abort_stays_in_a_child(photos):
    from keras_mobilenets.deploy.tflite import convert
    from keras_mobilenets.nets.models import create_model

    # untrained, softmax head: the logits are ~1e-6, so the softmax input scale is ~1e-8
    model = create_model("v1", input_shape=(32, 32, 3), alpha=0.25, include_preprocessing=False)
    images = micro.model_inputs(model, resize(photos, 32))[:2]
    content = convert(model, "int8", images, input_type="int8", output_type="int8")
    with pytest.raises(ValueError, match="SOFTMAX.*would abort"):
        micro.check_file(content)
    with pytest.raises(micro.MicroAbortError, match="aborted"):
        micro.run_micro(content, images[:1], isolate=True, check=False)


def test_op_tflite_micro_lacks_is_named_with_its_layer(photos):
    import keras

    from keras_mobilenets.deploy.tflite import convert
    from keras_mobilenets.nets.models import create_model

    base = create_model("v1", input_shape=(32, 32, 3), alpha=0.25, include_top=False, pooling="avg")
    x = keras.layers.Activation("gelu", name="gelu_head")(base.output)
    model = keras.Model(base.inputs, keras.layers.Dense(10, name="logits")(x))
    images = micro.model_inputs(model, resize(photos, 32))[:2]
    content = convert(model, "int8", images, input_type="int8", output_type="int8")
    with pytest.raises(ValueError, match="op GELU \\(layer 'gelu_head'.*not in TFLite Micro"):
        micro.check_file(content)


def test_split_equals_the_original_in_float_keeps_the_int8_top1_and_lowers_the_planned_arena(v2_small):
    from keras_mobilenets.optimize.split import (block_peaks, execution_order, needed_t, split_blocks,
                                                 splittable_blocks)

    model, images, content = v2_small
    blocks = splittable_blocks(model)
    # every block; the first takes the stem conv (16 filters) as its expansion
    assert len(blocks) == 17 and blocks["block_1_project_BN"] == 48 and blocks["expanded_conv_project_BN"] == 16
    # float equality on BatchNorm statistics drawn at random (as the builders' parity tests do); on the
    # photo-calibrated net, whose variances are small, float32 reassociation alone moved logits ~3e-5
    plain = randomize_batchnorm(micro.micro_model("v2", 0.35, 96, classes=10))
    split_plain = split_blocks(plain, 4)
    assert "block_5_expand_g3" in [layer.name for layer in split_plain.layers]
    assert {type(layer).__name__ for layer in split_plain.layers} <= {type(layer).__name__ for layer in plain.layers}
    expected = np.asarray(plain(images))
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(np.asarray(split_plain(images)), expected, atol=1e-5)
    # t per block: only block 1 split, in 3 groups
    one = split_blocks(plain, {"block_1_project_BN": 3})
    assert len(one.layers) == len(plain.layers) - 9 + 3 * 8 + 2  # 9 layers -> 3 groups of 8 + 2 adds
    np.testing.assert_allclose(np.asarray(one(images)), expected, atol=1e-5)
    split = split_blocks(model, 4)
    split_file = micro.convert_micro(split, images)
    planned = micro.plan_offline(split_file, layer_order=execution_order(split))
    ops = [name for name, *_ in micro.operators(planned)]
    assert ops[:7] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"] * 2 + ["ADD"]  # group by group
    split_outputs = micro.run_micro(planned, images, raw=True)
    np.testing.assert_array_equal(split_outputs, micro.run_micro(split_file, images, raw=True))
    # int8 on TFLite Micro: the split file keeps the unsplit file's top-1 on every photo, on a net whose
    # logits name each photo's own class (see trained_like), by a margin of many int8 steps
    assert list(np.asarray(model(images)).argmax(1)) == list(range(len(images)))
    outputs = micro.run_micro(content, images, raw=True).astype(int)
    ranked = np.sort(outputs, axis=1)
    print(f"\nint8 margins {ranked[:, -1] - ranked[:, -2]}, split vs unsplit up to "
          f"{np.abs(split_outputs.astype(int) - outputs).max()} steps")
    assert (ranked[:, -1] - ranked[:, -2]).min() >= 10
    np.testing.assert_array_equal(split_outputs.argmax(1), outputs.argmax(1))
    np.testing.assert_array_equal(outputs.argmax(1), np.arange(len(images)))
    with pytest.raises(RuntimeError, match="offline memory plan alone needs"):  # not a crash
        micro.run_micro(planned, images[:1], arena_size=micro.offline_plan_bytes(planned) - 16)
    head = micro.recorded_allocations(content)["head"]
    split_head = micro.recorded_allocations(planned)["head"]
    assert split_head <= 0.6 * head  # 73,728 vs 138,240 bytes
    # the per-block peaks predicted from the Keras shapes are what the recording allocator planned
    assert max(block_peaks(model).values()) == head and max(block_peaks(model, 4).values()) == split_head
    # t per block where needed: at 0.35/96 only block 1 sets the peak (3 groups keep it under t=4's peak)
    assert {name: t for name, t in needed_t(model, 4).items() if t > 1} == {"block_1_project_BN": 3}


def test_split_t_out_of_range_is_refused(v2_small):
    from keras_mobilenets.optimize.split import needed_t, split_blocks

    model = v2_small[0]
    for t in (0, 17):  # 16: the narrowest expansion of V2 0.35 (the stem, block 0's expansion)
        with pytest.raises(ValueError, match=f"t={t} is not allowed: .*from 1 to .*16"):
            split_blocks(model, t)
    with pytest.raises(ValueError, match="t=49 is not allowed: .*48 for block_3_project_BN"):
        split_blocks(model, {"block_3_project_BN": 49})
    with pytest.raises(ValueError, match="not splittable blocks"):
        split_blocks(model, {"Conv1": 2})
    with pytest.raises(ValueError, match="t=17 is not allowed: .*16 for expanded_conv_project_BN"):
        needed_t(model, 17)


def test_cli_measures_one_configuration(capsys):
    from keras_mobilenets.app.cli import main

    assert main(["micro", "--arch", "v2", "--alpha", "0.35", "--resolution", "96", "--split", "2",
                 "--classes", "10"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    values = dict(item.split("=") for item in last.split())
    assert list(values) == ["arena_bytes", "predicted_peak_bytes", "file_bytes"]
    assert int(values["predicted_peak_bytes"]) == 96 * 96 * 3  # Section 5 at 8 bits: the input
    assert int(values["predicted_peak_bytes"]) < int(values["arena_bytes"]) < 256 * 1024
    assert 100_000 < int(values["file_bytes"]) < 1024 * 1024


def test_cli_lists_configurations_that_fit_sorted_by_macs(capsys):
    from keras_mobilenets.app.cli import main
    from keras_mobilenets.deploy.micro_table import MEASURED

    assert main(["micro", "--arena", "256KB", "--flash", "1MB"]) in (0, 1)
    lines = capsys.readouterr().out.strip().splitlines()[2:]
    fitting = [r for r in MEASURED if r.arena_bytes <= 256 * 1024 and r.file_bytes <= 1024 ** 2]
    assert len(lines) == len(fitting) > 0
    macs = [int(line.split()[5].replace(",", "")) for line in lines]
    assert macs == sorted(macs, reverse=True)


@pytest.mark.parametrize("size", ["256 KB", "0", "-1"])
def test_cli_budget_that_is_not_a_size(size, capsys):
    from keras_mobilenets.app.cli import main

    assert main(["micro", "--arena", size]) == 2
    error = capsys.readouterr().err
    assert f"--arena={size!r} is not allowed" in error and "256KB" in error
