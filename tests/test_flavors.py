"""One builder, two flavors: Keras 3 and tf_keras graphs agree, contain only real layers, and reload."""

import keras
import numpy as np
import pytest
import tf_keras
from conftest import randomize_batchnorm, resize

import keras_mobilenets as km

VARIANTS = [("v1", False), ("v2", False), ("v3-large", False), ("v3-small", False),
            ("v3-large", True), ("v3-small", True)]


@pytest.mark.parametrize("arch,minimalistic", VARIANTS)
@pytest.mark.parametrize("include_preprocessing", [True, False])
def test_keras3_and_tf_keras_give_same_outputs(arch, minimalistic, include_preprocessing, photos):
    kwargs = dict(alpha=0.75 if not minimalistic else 1.0, minimalistic=minimalistic,
                  input_shape=(160, 160, 3), include_preprocessing=include_preprocessing)
    model = randomize_batchnorm(km.create_model(arch, **kwargs))
    legacy = km.create_model(arch, flavor="tf_keras", **kwargs)
    assert isinstance(legacy, tf_keras.Model) and not isinstance(legacy, keras.Model)
    assert [layer.name for layer in legacy.layers[1:]] == [layer.name for layer in model.layers[1:]]
    legacy.set_weights(model.get_weights())
    pixels = resize(photos, 160)
    pixels = pixels if include_preprocessing else pixels / 127.5 - 1.0
    np.testing.assert_allclose(legacy(pixels, training=False).numpy(),
                               model(pixels, training=False).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["v2", "v3-large"])
def test_graphs_have_no_op_lambdas(arch):
    model = km.create_model(arch, input_shape=(96, 96, 3))
    assert all(isinstance(op, keras.layers.Layer) for op in model.operations)
    legacy = km.create_model(arch, input_shape=(96, 96, 3), flavor="tf_keras")
    kinds = {type(layer).__name__ for layer in legacy.layers}
    assert not kinds & {"TFOpLambda", "SlicingOpLambda", "Lambda"}
    if arch.startswith("v3"):
        assert {"HardSwish", "HardSigmoid"} <= kinds


def test_relu6_is_a_relu_layer_not_an_activation():
    model = km.create_model("v2", input_shape=(96, 96, 3))
    relus = [layer for layer in model.layers if layer.name.endswith("_relu")]
    assert relus and all(isinstance(layer, keras.layers.ReLU) and float(layer.max_value) == 6.0
                         for layer in relus)


@pytest.mark.parametrize("arch,minimalistic", VARIANTS)
def test_keras3_models_save_and_reload_in_safe_mode(arch, minimalistic, photos, tmp_path):
    model = randomize_batchnorm(km.create_model(arch, minimalistic=minimalistic,
                                                input_shape=(128, 128, 3)))
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    pixels = resize(photos, 128)
    np.testing.assert_array_equal(reloaded(pixels, training=False).numpy(),
                                  model(pixels, training=False).numpy())


def test_tf_keras_model_saves_and_reloads(photos, tmp_path):
    model = randomize_batchnorm(km.create_model("v3-small", input_shape=(128, 128, 3),
                                                flavor="tf_keras"))
    model.save(tmp_path / "model.h5")
    reloaded = tf_keras.models.load_model(tmp_path / "model.h5")
    pixels = resize(photos, 128)
    np.testing.assert_allclose(reloaded(pixels, training=False).numpy(),
                               model(pixels, training=False).numpy(), atol=1e-7)


def test_preprocessing_contract_is_the_same_for_every_version(photos):
    """include_preprocessing=True takes [0, 255]; without it the model takes preprocess_input's [-1, 1]."""
    pixels = resize(photos, 128)
    for arch in ("v1", "v2", "v3-small"):
        with_pre = randomize_batchnorm(km.create_model(arch, input_shape=(128, 128, 3),
                                                       include_preprocessing=True))
        without = km.create_model(arch, input_shape=(128, 128, 3), include_preprocessing=False)
        without.set_weights(with_pre.get_weights())
        assert km.includes_preprocessing(with_pre) and not km.includes_preprocessing(without)
        np.testing.assert_allclose(with_pre(pixels, training=False).numpy(),
                                   without(km.preprocess_input(pixels), training=False).numpy(),
                                   rtol=1e-5, atol=1e-6)
        assert km.preprocess_input(pixels, model=with_pre) is pixels
