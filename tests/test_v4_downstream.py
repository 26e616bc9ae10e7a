"""MobileNetV4 downstream: safe-mode saving, PTQ and QAT int8 TFLite (attention included), the TFLite
parity report and Predictor for Conv-S, CLI fine-tuning (the run itself: test_cli_ux.py), and SavedModel
export and Predictor on all three formats for Conv-S and Hybrid-M.

The QAT test runs on a small table of every V4 block (the full Hybrid-M takes minutes to quantize
here; `benchmarks/bench_v4.py --qat` and BENCHMARKS.md give its figures)."""

import numpy as np
import pytest
from conftest import resize

import keras_mobilenets as km
from keras_mobilenets.nets.spec import Architecture
from keras_mobilenets.nets.spec_v4 import NormHeadClassifier, conv, fused_ib, mqa, uib

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


def _randomized(model, seed=1):
    """BatchNorm statistics and LayerScale away from their initial values (LayerScale at ~1 instead of
    1e-5, so the attention branches count in the outputs)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights and (type(layer).__name__ == "BatchNormalization" or "layer_scale" in layer.name):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights])
    return model


def test_mini_hybrid_saves_in_safe_mode_and_quantizes_every_op_to_int8(tmp_path):
    import keras

    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.optimize import qat

    model = _randomized(km.create_model(MINI_HYBRID, input_shape=(64, 64, 3), classes=5,
                                        include_preprocessing=True))
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
    boundaries for freezing) builds for Conv-S and Hybrid-M. (`keras-mobilenets train --arch v4-conv-small`
    runs end to end in tests/test_cli_ux.py::test_train_prints_progress_and_no_noise.)"""
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


def test_conv_small_tflite_parity_report_predictor_and_post_training_int8(tmp_path, photos):
    """Conv-S (width 0.35, 96 px): the float32 TFLite file's parity report, Predictor on the .keras and the
    TFLite file giving the model's probabilities on real photos, and PTQ int8 throughout."""
    import keras
    import tensorflow as tf

    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.train.recipe import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    model = km.MobileNetV4ConvSmall(alpha=0.35, input_shape=(96, 96, 3), classes=10, include_preprocessing=True)
    images = resize(photos, 96)
    # BatchNorm statistics of these photos: the initial ones let an untrained net give every image one class
    recalibrate_batchnorm(model, tf.data.Dataset.from_tensors((images, np.zeros(len(images)))), batches=1)
    expected = np.asarray(model(images, training=False))
    assert len(set(expected.argmax(1))) > 1
    report = tflite.export_tflite(model, tmp_path / "model.tflite", "float32", sample=images,
                                  min_top1_agreement=1.0)
    assert report.samples == len(images) and report.top1_agreement == 1.0 and report.max_abs_diff < 1e-4
    model.save(tmp_path / "model.keras")
    for path in (tmp_path / "model.keras", tmp_path / "model.tflite"):
        probabilities = km.Predictor(path, batch_size=4).predict(images)
        np.testing.assert_allclose(probabilities, expected, atol=1e-4, err_msg=str(path))
        np.testing.assert_array_equal(probabilities.argmax(1), expected.argmax(1))

    noise = np.random.default_rng(0).uniform(0, 255, (8, 96, 96, 3)).astype("float32")
    outputs, interpreter = tflite.run_tflite(tflite.convert(model, "int8", representative=noise), noise)
    assert tflite.non_int8_ops(interpreter) == [] and outputs.shape == (8, 10)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, atol=0.05)  # an int8 softmax, dequantized



@pytest.mark.parametrize("arch", ["v4-conv-small", "v4-hybrid-medium"])
def test_saved_model_tflite_report_and_predictor_agree_on_every_format(arch, tmp_path, photos):
    """The real tables (width 0.35, 64 px, LayerScale on): the SavedModel export (checked in a fresh process
    by export_saved_model), the float32 TFLite file's parity report, and Predictor on the .keras file, the
    SavedModel and the TFLite file give the in-memory model's probabilities on real photos (27 s for
    Conv-S and 59 s for Hybrid-M on an unloaded 2-core machine)."""
    import keras
    import tensorflow as tf

    from keras_mobilenets.deploy.tflite import export_tflite
    from keras_mobilenets.train.recipe import recalibrate_batchnorm

    keras.utils.set_random_seed(0)  # initial weights under which the photos get two or three classes
    model = _randomized(km.create_model(arch, alpha=0.35, input_shape=(64, 64, 3), classes=5,
                                        include_preprocessing=True), seed=2)
    images = resize(photos, 64)
    recalibrate_batchnorm(model, tf.data.Dataset.from_tensors((images, np.zeros(len(images)))), batches=1)
    expected = np.asarray(model(images, training=False))
    assert len(set(expected.argmax(1))) > 1  # the photos are not all one class: top-1 says something
    model.save(tmp_path / "model.keras")
    exported = km.export_saved_model(model, str(tmp_path / "serving"), labels=list("abcde"))
    report = export_tflite(model, tmp_path / "model.tflite", "float32", sample=images, min_top1_agreement=1.0)
    assert report.samples == len(images) and report.top1_agreement == 1.0 and report.max_abs_diff < 1e-4
    for path in (tmp_path / "model.keras", exported.path, tmp_path / "model.tflite"):
        probabilities = km.Predictor(path, batch_size=4).predict(images)
        np.testing.assert_allclose(probabilities, expected, atol=1e-4, err_msg=str(path))
        np.testing.assert_array_equal(probabilities.argmax(1), expected.argmax(1))
