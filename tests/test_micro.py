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


def calibrated(model, images):
    """An untrained model whose BatchNorm statistics fit `images` (as a trained one's fit its data), so
    its outputs depend on the image: the parity checks then compare something."""
    import tensorflow as tf

    from keras_mobilenets.train.recipe import recalibrate_batchnorm

    randomize_batchnorm(model)
    data = tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images)))).batch(len(images))
    recalibrate_batchnorm(model, data, batches=1)
    return model


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_micro_matches_litert_on_the_same_int8_file(name, channels, photos):
    model = micro.micro_model(resolution=96, channels=channels, classes=10, **CLASSIC[name])
    images = micro.model_inputs(model, _photos96(photos))
    calibrated(model, images)
    assert images.shape[-1] == channels
    content = micro.convert_micro(model, images)
    assert {op for op, *_ in micro.operators(content)} <= micro.SUPPORTED_OPS
    outputs = micro.run_micro(content, images, raw=True)
    assert outputs.dtype == np.int8 and outputs.shape == (len(images), 10)
    assert np.ptp(outputs.astype(int), axis=0).max() > 10  # outputs depend on the image
    # bit-exact against LiteRT's reference kernels: TFLite Micro's kernels are the same integer arithmetic
    assert micro.parity_steps(content, images) == 0


@pytest.fixture(scope="module")
def v2_small(photos):
    model = micro.micro_model("v2", 0.35, 96, classes=10)
    images = micro.model_inputs(model, _photos96(photos))
    calibrated(model, images)
    return model, images, micro.convert_micro(model, images)


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
