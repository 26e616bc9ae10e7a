"""MobileNetV4 and the Model Garden MobileNets: parameter counts against Model Garden and timm, MACs
against timm's model cards and the paper, features, bad rows, and timm .safetensors weights."""

import numpy as np
import pytest

import keras_mobilenets as km
from keras_mobilenets.nets import timm_weights
from keras_mobilenets.nets.spec import Architecture
from keras_mobilenets.nets.spec_v4 import MobileMQA, NormHeadClassifier, conv, mqa, uib

# Model Garden official/vision/modeling/backbones/mobilenet_test.py, test_mobilenet_scaling:
# backbone count_params() (BatchNorm statistics and the 1280-wide conv included, no classifier).
MODEL_GARDEN = {
    "v4-conv-small": (2518112, 1670408),
    "v4-conv-medium": (8502416, 5096424),
    "v4-conv-large": (31459416, 18099824),
    "v4-hybrid-medium": (9869488, 6072584),
    "v4-hybrid-large": (36648024, 21598064),
    "edgetpu": (2849312, 1737288),
    "multi-avg": (3704416, 2349704),
    "multi-max": (3174560, 2045816),
    "multi-avg-seg": (2239840, 1395272),
    "multi-max-seg": (1929088, 1216544),
}
CLASSIFIER = 1280 * 1000 + 1000  # the one Dense layer on top of Model Garden's backbone


@pytest.mark.parametrize("arch", sorted(MODEL_GARDEN))
def test_parameter_counts_match_model_garden_at_both_widths(arch):
    for alpha, expected in zip((1.0, 0.75), MODEL_GARDEN[arch]):
        if arch == "edgetpu":  # its backbone ends in the 1280 conv; the top is pool + Dense
            model = km.create_model(arch, alpha=alpha, include_top=False, input_shape=(224, 224, 3))
            assert model.count_params() == expected, (arch, alpha)
        else:  # the 1280 conv + BN is our top's first layer, then the classifier
            model = km.create_model(arch, alpha=alpha, classes=1000, input_shape=(224, 224, 3))
            assert model.count_params() == expected + CLASSIFIER, (arch, alpha)


def test_conv_small_trainable_parameters_match_timm():
    model = km.MobileNetV4ConvSmall()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 3_774_024  # timm mobilenetv4_conv_small, num_classes=1000
    assert model.input_shape == (None, 224, 224, 3)


def _attention_macs(model):
    """Independent count: per Mobile MQA, (H * W * heads) queries against M key positions, times
    (key_dim + value_dim) for the two matmuls."""
    total = 0
    for layer in model.layers:
        if layer.name.endswith("_query_proj"):
            prefix = layer.name[: -len("query_proj")]
            height, width = layer.output.shape[1:3]
            keys = model.get_layer(f"{prefix}key_proj").output.shape
            values = model.get_layer(f"{prefix}value_proj").output.shape
            heads = layer.output.shape[-1] // keys[-1]
            total += height * width * heads * keys[1] * keys[2] * (keys[-1] + values[-1])
    return total


def test_profile_matches_timm_model_cards_and_paper():
    # the paper's table: Conv-S 3.8M parameters, 0.2G MACs at 224
    small = km.profile(km.MobileNetV4ConvSmall(input_shape=(224, 224, 3)))
    assert round(small.trainable_params / 1e6, 1) == 3.8 and round(small.macs / 1e9, 1) == 0.2
    # timm's model cards (the paper prints 9.2M / 1.0G for Conv-M and 31M / 5.9G for Conv-L; both codes
    # build these tables and count as we do)
    medium = km.profile(km.MobileNetV4ConvMedium(input_shape=(256, 256, 3)))
    assert round(medium.trainable_params / 1e6, 1) == 9.7 and round(medium.macs / 1e9, 1) == 1.1
    hybrid = km.MobileNetV4HybridMedium(input_shape=(256, 256, 3))
    attention = _attention_macs(hybrid)
    assert attention == 4 * 256 * 4 * 64 * 128 + 4 * 64 * 4 * 64 * 128  # 24px stage kv-strided, 12px not
    dots = sum(km.analysis.profiling.layer_macs(layer) for layer in hybrid.layers
               if type(layer).__name__ == "Dot")
    assert dots == attention
    profile = km.profile(hybrid)
    assert round(profile.trainable_params / 1e6, 1) == 11.1
    assert round((profile.macs - attention) / 1e9, 1) == 1.2  # the paper's 1.2G leaves out the matmuls


def test_feature_info_strides_and_channels():
    model = km.MobileNetV4ConvSmall(include_top=False, input_shape=(128, 128, 3))
    info = km.feature_info(model)
    assert [(f.stride, f.channels) for f in info] == [(2, 32), (4, 32), (8, 64), (16, 96), (32, 960)]
    # Model Garden's endpoints 2-5 (mobilenet_test.py): the last block before each stride change
    records = km.nets.builder.block_info(model)
    ends = [r.channels for r, nxt in zip(records, records[1:]) if nxt.stride != r.stride and r.index is not None]
    assert ends + [records[-2].channels] == [32, 64, 96, 128]
    extractor = km.feature_extractor(model, strides=(8, 16, 32))
    assert [tuple(o.shape[1:]) for o in extractor.outputs] == [(16, 16, 64), (8, 8, 96), (4, 4, 960)]
    hybrid = km.MobileNetV4HybridMedium(include_top=False, input_shape=(128, 128, 3), output_stride=16)
    assert [(f.stride, f.channels) for f in km.feature_info(hybrid)] == [
        (2, 32), (4, 48), (8, 80), (16, 960)]
    assert hybrid.output_shape == (None, 8, 8, 960)


def test_bad_rows_and_arguments_name_the_value_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"kind='Inverted'.*one of \('ExtraDW', 'IB', 'ConvNext', 'FFN'\)"):
        uib("Inverted", 3, 5, 2, 4.0, 80)
    with pytest.raises(ValueError, match=r"kernel=0 is not allowed: kernel must be a positive integer"):
        conv(0, 1, 32)
    with pytest.raises(ValueError, match=r"start_kernel=0.*ExtraDW UIB has a start depthwise"):
        uib("ExtraDW", 0, 5, 1, 4.0, 80)
    with pytest.raises(ValueError, match=r"heads=0 is not allowed: heads must be a positive integer"):
        mqa(0, 64, 1, 256)
    with pytest.raises(ValueError, match=r"key_dim=48 is not allowed.*divide filters=160"):
        MobileMQA(filters=160, heads=None, key_dim=48)
    with pytest.raises(ValueError, match=r"weights='imagenet' is not allowed.*load_timm_weights"):
        km.create_model("v4-conv-small", weights="imagenet")
    with pytest.raises(ValueError, match=r"minimalistic=True is not allowed.*only MobileNetV3"):
        km.create_model("v4-hybrid-medium", minimalistic=True)
    short = Architecture(name="short", rows=(conv(3, 2, 16, name="stem_conv"), uib("IB", 0, 3, 2, 4.0, 24),
                                             uib("ExtraDW", 3, 3, 2, 4.0, 32), conv(1, 1, 64)),
                         classifier=NormHeadClassifier(128))
    with pytest.raises(ValueError, match=r"output_stride=16 is not allowed.*one of \(None, 8\).*stride 8"):
        km.create_model(short, output_stride=16, input_shape=(64, 64, 3))
    assert km.create_model(short, output_stride=8, input_shape=(64, 64, 3)).output_shape == (None, 1000)


def _randomize(model, seed=0):
    """Non-trivial BatchNorm statistics and LayerScale values, so a misplaced tensor changes outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights and (type(layer).__name__ == "BatchNormalization" or "layer_scale" in layer.name):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights])


def test_timm_safetensors_round_trip_and_first_bad_key(tmp_path):
    from safetensors.numpy import load_file, save_file

    source = km.MobileNetV4HybridMedium(alpha=0.5, input_shape=(64, 64, 3), classes=10)
    _randomize(source)
    path = timm_weights.save_timm_weights(source, tmp_path / "model.safetensors")
    tensors = load_file(str(path))
    # timm's names and PyTorch layouts (out, in, kh, kw) / (channels, 1, kh, kw)
    assert tensors["conv_stem.weight"].shape == (16, 3, 3, 3)
    assert tensors["blocks.0.0.conv_exp.weight"].shape == (64, 16, 3, 3)  # Fused IB: 16 * 4 = 64
    assert tensors["blocks.2.0.dw_start.conv.weight"].shape == (40, 1, 3, 3)
    assert tensors["blocks.2.4.attn.query.proj.weight"].shape == (256, 80, 1, 1)  # 4 heads x 64
    assert tensors["blocks.2.4.attn.key.down_conv.weight"].shape == (80, 1, 3, 3)
    assert tensors["blocks.2.4.layer_scale.gamma"].shape == (80,)
    assert tensors["blocks.4.0.conv.weight"].shape == (480, 128, 1, 1)  # the last 1x1 conv: its own stage
    assert tensors["norm_head.running_var"].shape == (1280,) and tensors["classifier.weight"].shape == (10, 1280)
    tensors["blocks.2.4.attn.key.norm.num_batches_tracked"] = np.array(7)  # PyTorch's extra, ignored

    save_file(tensors, str(tmp_path / "timm.safetensors"))
    loaded = km.create_model("v4-hybrid-medium", alpha=0.5, input_shape=(64, 64, 3), classes=10,
                             weights=str(tmp_path / "timm.safetensors"))
    images = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(images, training=False)),
                                  np.asarray(source(images, training=False)))

    del tensors["blocks.1.1.pw_exp.bn.running_mean"]
    save_file(tensors, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"no tensor 'blocks.1.1.pw_exp.bn.running_mean'.*block_2_pw_exp_bn"):
        timm_weights.load_timm_weights(loaded, tmp_path / "missing.safetensors")
    wide = km.create_model("v4-conv-small", input_shape=(64, 64, 3), classes=10)
    with pytest.raises(ValueError, match=r"tensor 'conv_stem.weight' has shape \(16, 3, 3, 3\).*\(3, 3, 3, 32\)"):
        timm_weights.load_timm_weights(wide, tmp_path / "timm.safetensors")


def test_tf_keras_flavor_builds_the_same_hybrid_network():
    keras3 = km.MobileNetV4HybridMedium(alpha=0.5, input_shape=(64, 64, 3), classes=10)
    tf_keras = km.MobileNetV4HybridMedium(alpha=0.5, input_shape=(64, 64, 3), classes=10, flavor="tf_keras")
    assert [layer.name for layer in tf_keras.layers][1:] == [layer.name for layer in keras3.layers][1:]
    _randomize(keras3)
    tf_keras.set_weights(keras3.get_weights())
    images = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(tf_keras(images, training=False).numpy(),
                               np.asarray(keras3(images, training=False)), atol=1e-5)


def test_the_paper_rows_say_which_figures_round_to_the_paper():
    """`reproduce`'s MobileNetV4 rule: MACs with the attention matmuls, trainable parameters, the paper's
    printed precision ("31" is to 1M, "10.5" to 0.1M)."""
    from keras_mobilenets.analysis.papers import PUBLISHED_V4

    small, medium, hybrid, large, _ = PUBLISHED_V4
    assert small.paper_agrees(186_005_568, 3_774_024)
    assert not medium.paper_agrees(1_080e6, 9.72e6) and medium.paper_agrees(1_049e6, 9.249e6)
    assert not hybrid.paper_agrees(1_272e6, 10.5e6)  # with its 42M attention MACs Hybrid-M rounds to 1.3G
    assert large.paper_agrees(5.9e9, 31.49e6) and not large.paper_agrees(5.9e9, 31.51e6)
