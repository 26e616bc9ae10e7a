"""MobileNetV4 downstream: safe-mode saving, PTQ and QAT int8 TFLite (attention included), CLI fine-tuning.

The attention test runs on a small table of every V4 block (the full Hybrid-M takes minutes to quantize
here; benchmarks/bench_v4.py and the README give its figures)."""

import numpy as np
import pytest

import keras_mobilenets as km
from keras_mobilenets.nets.spec import Architecture
from keras_mobilenets.nets.spec_v4 import NormHeadClassifier, conv, fused_ib, mqa, uib

from conftest import TINY

# every MobileNetV4 block once: Conv, Fused IB, the four UIB types (LayerScale on), Mobile MQA with and
# without key/value downsampling
MINI_HYBRID = Architecture(
    name="mini_hybrid",
    rows=(
        conv(3, 2, 16, name="stem_conv"),
        fused_ib(3, 2, 4.0, 24),
        uib("ExtraDW", 3, 5, 2, 4.0, 32, layer_scale=True),
        uib("ConvNext", 3, 0, 1, 2.0, 32, layer_scale=True),
        mqa(2, 16, 2, 32),
        uib("IB", 0, 3, 2, 4.0, 48, layer_scale=True),
        uib("FFN", 0, 0, 1, 2.0, 48, layer_scale=True),
        mqa(2, 16, 1, 48),
        conv(1, 1, 96),
    ),
    classifier=NormHeadClassifier(128),
    bn_momentum=0.99,
    bn_epsilon=1e-5,
)


def test_mini_hybrid_saves_in_safe_mode_and_quantizes_every_op_to_int8(tmp_path):
    import keras

    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.optimize import qat

    model = km.create_model(MINI_HYBRID, input_shape=(64, 64, 3), classes=5, include_preprocessing=True)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # LayerScale at 1 instead of 1e-5, so the attention branches count
        if layer.weights and (type(layer).__name__ == "BatchNormalization" or "layer_scale" in layer.name):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights])
    assert not any(type(layer).__name__ in ("Lambda", "TFOpLambda") for layer in model.layers)
    images = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    expected = np.asarray(model(images, training=False))
    model.save(tmp_path / "mini.keras")
    reloaded = keras.saving.load_model(tmp_path / "mini.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(images, training=False)), expected, atol=1e-5)

    float32, _ = tflite.run_tflite(tflite.convert(model, "float32"), images)
    np.testing.assert_allclose(float32, expected, rtol=1e-4, atol=1e-5)  # TFLite's BATCH_MATMUL, reshapes

    quantized = qat.quantize_model(model)  # tf_keras + tfmot; Dot, Softmax and the attention's BN included
    qat.calibrate(quantized, images, batches=1)
    outputs, interpreter = tflite.run_tflite(tflite.convert(quantized, "qat-int8"), images)
    assert tflite.non_int8_ops(interpreter) == []  # BATCH_MATMUL and SOFTMAX run in int8 too
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"BATCH_MATMUL", "SOFTMAX", "DEPTHWISE_CONV_2D"} <= ops
    assert outputs.shape == (8, 5)


def test_cli_profiles_and_the_fine_tuning_recipe_builds_v4(capsys):
    """`--arch v4-...` is a CLI choice; the recipe's classifier (preprocessing inside, new head, block
    boundaries for freezing) builds for Conv-S and Hybrid-M. (A full `keras-mobilenets train --arch
    v4-conv-small` epoch ran once in 132 s here: too long for CI, see the README.)"""
    from keras_mobilenets.app import cli
    from keras_mobilenets.app.runs import RunConfig, build_classifier
    from keras_mobilenets.train import recipe

    assert cli.main(["profile", "--arch", "v4-conv-small"]) == 0
    out = capsys.readouterr().out
    assert "MobileNetV4ConvSmall" in out and "MACs 186,005,568" in out
    for arch in ("v4-conv-small", "v4-hybrid-medium"):
        config = RunConfig(arch=arch, alpha=0.5, image_size=64, bn_momentum=0.9)
        model = build_classifier(config, 3)
        assert model.output_shape == (None, 3) and model.get_layer("rescaling") is not None
        recipe.set_trainable(model, trainable_blocks=2)
        frozen = [layer.name for layer in model.layers if layer.weights and not layer.trainable]
        assert "stem_conv" in frozen and "block_4_pw_proj" in frozen


def test_conv_small_post_training_int8_is_int8_throughout():
    from keras_mobilenets.deploy import tflite

    model = km.MobileNetV4ConvSmall(alpha=0.35, input_shape=(96, 96, 3), classes=10, include_preprocessing=True)
    images = np.random.default_rng(0).uniform(0, 255, (8, 96, 96, 3)).astype("float32")
    outputs, interpreter = tflite.run_tflite(tflite.convert(model, "int8", representative=images), images)
    assert tflite.non_int8_ops(interpreter) == [] and outputs.shape == (8, 10)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, atol=0.05)  # an int8 softmax, dequantized
