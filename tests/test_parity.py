"""Exact parity with keras.applications: parameter counts, weight-layer names, weight files, outputs."""

import numpy as np
import pytest
from conftest import randomize_batchnorm, reference_input, reference_model, resize, save_legacy_h5

import keras_mobilenets as km

CONFIGS = (
    [("v1", a, False) for a in (0.25, 0.5, 0.75, 1.0)]
    + [("v2", a, False) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)]
    + [(v, a, False) for v in ("v3-large", "v3-small") for a in (0.75, 1.0)]
    + [(v, 1.0, True) for v in ("v3-large", "v3-small")]
)
IDS = [f"{arch}-{alpha}{'-min' if minimal else ''}" for arch, alpha, minimal in CONFIGS]


def ours(arch, alpha, minimalistic, **kwargs):
    return km.create_model(arch, alpha=alpha, minimalistic=minimalistic, **kwargs)


def weight_layers(model):
    return [layer.name for layer in model.layers if layer.weights]


@pytest.mark.parametrize("arch,alpha,minimalistic", CONFIGS, ids=IDS)
@pytest.mark.parametrize("size", [224, 160])
@pytest.mark.parametrize("include_top", [True, False])
def test_params_and_weight_layer_names(arch, alpha, minimalistic, size, include_top):
    shape = (size, size, 3)
    ref = reference_model(arch, alpha, minimalistic, input_shape=shape, include_top=include_top)
    model = ours(arch, alpha, minimalistic, input_shape=shape, include_top=include_top)
    assert model.count_params() == ref.count_params()
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == \
        sum(int(np.prod(w.shape)) for w in ref.trainable_weights)
    assert weight_layers(model) == weight_layers(ref)
    assert model.output.shape == ref.output.shape


@pytest.mark.parametrize("arch,total,trainable,no_top", [
    ("v1", 4_253_864, 4_231_976, 3_228_864),
    ("v2", 3_538_984, 3_504_872, 2_257_984),
    ("v3-large", 5_507_432, 5_483_032, 2_996_352),
    ("v3-small", 2_554_968, 2_542_856, 939_120),
])
def test_reference_parameter_counts(arch, total, trainable, no_top):
    model = km.create_model(arch, input_shape=(224, 224, 3))
    assert model.count_params() == total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert km.create_model(arch, include_top=False).count_params() == no_top


@pytest.mark.parametrize("arch,alpha,minimalistic", CONFIGS, ids=IDS)
@pytest.mark.parametrize("include_top", [True, False])
def test_keras_applications_weight_files_load_and_outputs_agree(
        arch, alpha, minimalistic, include_top, photos, tmp_path):
    size = 160 if arch in ("v1", "v2") else 224
    shape = (size, size, 3)
    ref = randomize_batchnorm(reference_model(arch, alpha, minimalistic, input_shape=shape,
                                              include_top=include_top))
    legacy = save_legacy_h5(ref, tmp_path / "reference.h5")
    modern = tmp_path / "reference.weights.h5"
    ref.save_weights(modern)
    pixels = resize(photos, size)
    expected = ref(reference_input(arch, pixels), training=False).numpy()
    for path in (legacy, modern):
        model = ours(arch, alpha, minimalistic, input_shape=shape, include_top=include_top,
                     weights=str(path))
        got = model(reference_input(arch, pixels), training=False).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=str(path))
    if include_top:
        assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_our_weights_load_into_keras_applications(photos, tmp_path):
    model = randomize_batchnorm(km.MobileNetV3Small(weights=None, input_shape=(224, 224, 3)))
    model.save_weights(tmp_path / "ours.weights.h5")
    ref = reference_model("v3-small", 1.0, input_shape=(224, 224, 3))
    ref.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(ref(photos, training=False), model(photos, training=False),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["v1", "v2", "v3-small"])
def test_input_tensor_like_keras_applications(arch):
    import keras

    inputs = keras.Input((128, 128, 3))
    resized = keras.layers.Resizing(96, 96)(inputs)
    ref = reference_model(arch, 1.0, input_tensor=resized)
    model = ours(arch, 1.0, False, input_tensor=resized)
    assert model.inputs[0] is inputs  # the graph reaches back to the source input, like keras'
    assert model.count_params() == ref.count_params()
    assert model.output.shape == ref.output.shape
