"""Multi-scale features (timm's feature_info) and DeepLab's output_stride."""

import numpy as np
import pytest
from conftest import randomize_batchnorm, resize

import keras_mobilenets as km

EXPECTED = {
    "v1": ([64, 128, 256, 512, 1024], ["conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_5_relu",
                                       "conv_pw_11_relu", "conv_pw_13_relu"]),
    "v2": ([16, 24, 32, 96, 1280], ["expanded_conv_project_BN", "block_2_add", "block_5_add",
                                    "block_12_add", "out_relu"]),
    "v3-large": ([16, 24, 40, 112, 960], ["expanded_conv_add", "expanded_conv_2_add",
                                          "expanded_conv_5_add", "expanded_conv_11_add",
                                          "conv_1_hard_swish"]),
    "v3-small": ([16, 16, 24, 48, 576], ["conv_hard_swish", "expanded_conv_project_bn",
                                         "expanded_conv_2_add", "expanded_conv_7_add",
                                         "conv_1_hard_swish"]),
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_features_at_strides_2_to_32(arch):
    model = km.create_model(arch, include_top=False, input_shape=(224, 224, 3))
    info = km.feature_info(model)
    channels, layers = EXPECTED[arch]
    assert [i.stride for i in info] == [2, 4, 8, 16, 32]
    assert [i.channels for i in info] == channels
    assert [i.layer for i in info] == layers
    extractor = km.feature_extractor(model)
    assert [tuple(o.shape) for o in extractor.outputs] == [
        (None, 224 // s, 224 // s, c) for s, c in zip(km.FEATURE_STRIDES, channels)]
    assert extractor.count_params() == model.count_params()


@pytest.mark.parametrize("arch", ["v1", "v2", "v3-large", "v3-small"])
@pytest.mark.parametrize("output_stride,size", [(8, 28), (16, 14)])
def test_output_stride_dilates_instead_of_striding(arch, output_stride, size):
    plain = km.create_model(arch, include_top=False, input_shape=(224, 224, 3))
    model = km.create_model(arch, include_top=False, input_shape=(224, 224, 3),
                            output_stride=output_stride)
    assert tuple(model.output.shape) == (None, size, size, plain.output.shape[-1])
    assert model.count_params() == plain.count_params()
    rates = [layer.dilation_rate[0] for layer in model.layers if hasattr(layer, "dilation_rate")]
    assert max(rates) == 32 // output_stride
    assert [i.stride for i in km.feature_info(model)][-1] == output_stride
    with pytest.raises(ValueError, match="strides=.*32"):
        km.feature_extractor(model, strides=(4, 32))


def test_output_stride_32_is_the_plain_network(photos):
    plain = randomize_batchnorm(km.create_model("v2", input_shape=(224, 224, 3)))
    model = km.create_model("v2", input_shape=(224, 224, 3), output_stride=32)
    assert [layer.get_config() for layer in model.layers[1:]] == \
        [layer.get_config() for layer in plain.layers[1:]]
    model.set_weights(plain.get_weights())
    pixels = km.preprocess_input(resize(photos, 224))
    np.testing.assert_array_equal(model(pixels, training=False).numpy(),
                                  plain(pixels, training=False).numpy())


def test_dilation_starts_exactly_at_output_stride(photos):
    """Same weights, output_stride=16: everything up to the last stride-16 block is unchanged."""
    import keras

    plain = randomize_batchnorm(km.create_model("v2", include_top=False, input_shape=(224, 224, 3)))
    dilated = km.create_model("v2", include_top=False, input_shape=(224, 224, 3), output_stride=16)
    dilated.set_weights(plain.get_weights())
    pixels = km.preprocess_input(resize(photos, 224))

    def layer_output(model, name):
        return keras.Model(model.inputs, model.get_layer(name).output)(pixels, training=False).numpy()

    np.testing.assert_array_equal(layer_output(dilated, "block_12_add"),
                                  layer_output(plain, "block_12_add"))
    assert dilated.get_layer("block_13_depthwise").strides == (1, 1)
    assert dilated.get_layer("block_13_depthwise").dilation_rate == (1, 1)
    assert dilated.get_layer("block_14_depthwise").dilation_rate == (2, 2)
    assert layer_output(dilated, "block_16_project_BN").shape[1:3] == (14, 14)


def test_reloaded_models_say_how_to_get_features(tmp_path):
    import keras

    model = km.create_model("v3-small", include_top=False, input_shape=(96, 96, 3))
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="no block_info"):
        km.feature_info(keras.saving.load_model(tmp_path / "m.keras"))
