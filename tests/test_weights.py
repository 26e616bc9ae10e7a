"""weights="imagenet" resolves keras.applications' files through the Keras cache; bad files are named."""

import os

import numpy as np
import pytest
from conftest import randomize_batchnorm, reference_input, reference_model, resize, save_legacy_h5

import keras_mobilenets as km
from keras_mobilenets.nets.weights import imagenet_file


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "models")
    return tmp_path / "models"


def test_official_file_names_and_hashes():
    from keras.src.applications import mobilenet_v3

    assert imagenet_file("v1", 0.25, 128, True).name == "mobilenet_2_5_128_tf.h5"
    assert imagenet_file("v1", 1.0, 224, False).name == "mobilenet_1_0_224_tf_no_top.h5"
    assert imagenet_file("v2", 0.35, 96, True).name == \
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"
    assert imagenet_file("v2", 1, 224, False).name == \
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    for family, key_type in (("v3_large", "large"), ("v3_small", "small")):
        for alpha, minimal in ((0.75, False), (1.0, False), (1.0, True)):
            key = f"{key_type}{'_minimalistic' if minimal else ''}_224_{alpha}_float"
            top = imagenet_file(family, alpha, 224, True, minimal)
            no_top = imagenet_file(family, alpha, 224, False, minimal)
            assert top.name == f"weights_mobilenet_v3_{key}.h5" and top.published
            assert no_top.name == f"weights_mobilenet_v3_{key}_no_top_v2.h5"
            assert (top.md5, no_top.md5) == mobilenet_v3.WEIGHTS_HASHES[key]
            assert top.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")


@pytest.mark.parametrize("include_top", [True, False])
def test_imagenet_loads_from_the_keras_cache(keras_home, photos, include_top):
    ref = randomize_batchnorm(reference_model("v2", 0.5, input_shape=(160, 160, 3),
                                              include_top=include_top))
    save_legacy_h5(ref, keras_home / imagenet_file("v2", 0.5, 160, include_top).name)
    model = km.MobileNetV2(alpha=0.5, input_shape=(160, 160, 3), include_top=include_top,
                           weights="imagenet")
    pixels = reference_input("v2", resize(photos, 160))
    np.testing.assert_allclose(model(pixels, training=False).numpy(),
                               ref(pixels, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_integer_alpha_means_one(keras_home):
    ref = randomize_batchnorm(reference_model("v1", 1.0, input_shape=(128, 128, 3), include_top=False))
    save_legacy_h5(ref, keras_home / "mobilenet_1_0_128_tf_no_top.h5")
    model = km.MobileNetV1(alpha=1, input_shape=(128, 128, 3), include_top=False, weights="imagenet")
    np.testing.assert_array_equal(model.get_weights()[1], ref.get_weights()[1])


def test_nonstandard_resolution_uses_nearest_file_with_one_warning(keras_home, recwarn):
    ref = randomize_batchnorm(reference_model("v2", 0.35, input_shape=(160, 160, 3), include_top=False))
    save_legacy_h5(ref, keras_home / imagenet_file("v2", 0.35, 160, False).name)
    model = km.MobileNetV2(alpha=0.35, input_shape=(150, 150, 3), include_top=False, weights="imagenet")
    ours = [w for w in recwarn if "160x160" in str(w.message)]
    assert len(ours) == 1 and "input size 150x150" in str(ours[0].message)
    np.testing.assert_array_equal(model.get_weights()[0], ref.get_weights()[0])


def test_offline_missing_file_names_file_and_folder(keras_home):
    with pytest.raises(km.WeightsUnavailableError) as error:
        km.MobileNetV3Small(weights="imagenet", include_top=False)
    message = str(error.value)
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message
    assert str(keras_home) in message


def test_cached_file_with_wrong_hash_is_not_used(keras_home):
    model = km.MobileNetV3Large(weights=None)
    model.save_weights(keras_home / "x.weights.h5")
    os.rename(keras_home / "x.weights.h5", keras_home / "weights_mobilenet_v3_large_224_1.0_float.h5")
    with pytest.raises(km.WeightsUnavailableError, match="md5"):
        km.MobileNetV3Large(weights="imagenet")


def test_unpublished_combination_is_one_clear_error(keras_home):
    with pytest.raises(ValueError) as error:
        km.MobileNetV2(alpha=0.6, weights="imagenet", include_top=False, input_shape=(224, 224, 3))
    message = str(error.value)
    assert "No ImageNet weights are published" in message
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.6_224_no_top.h5" in message
    assert str(keras_home) in message


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_file_that_does_not_fit_names_the_first_mismatching_layer(tmp_path, suffix):
    wide = km.MobileNetV2(alpha=1.0, weights=None, input_shape=(96, 96, 3))
    path = tmp_path / f"wide{suffix}"
    save_legacy_h5(wide, path) if suffix == ".h5" else wide.save_weights(path)
    with pytest.raises(ValueError, match="'Conv1'|conv2d.*Conv1|Conv1.*conv2d") as error:
        km.MobileNetV2(alpha=0.75, weights=str(path), input_shape=(96, 96, 3))
    assert "does not fit" in str(error.value)


def test_file_of_another_version_is_rejected(tmp_path):
    large = km.MobileNetV3Large(weights=None, include_top=False)
    path = save_legacy_h5(large, tmp_path / "large.h5")
    with pytest.raises(ValueError, match="first mismatching layer is 'expanded_conv_squeeze_excite_conv'"):
        km.MobileNetV3Small(weights=str(path), include_top=False)


def _tf_keras_model(arch, alpha, minimalistic, size):
    """A keras.applications model of tf_keras (the official files' writer) with random kernels, biases
    and BatchNorm statistics, and its backbone (include_top=False is the same graph without the top)."""
    import tf_keras

    builders = {"v1": tf_keras.applications.MobileNet, "v2": tf_keras.applications.MobileNetV2,
                "v3-large": tf_keras.applications.MobileNetV3Large,
                "v3-small": tf_keras.applications.MobileNetV3Small}
    kwargs = {"minimalistic": minimalistic} if arch.startswith("v3") else {}
    model = builders[arch](input_shape=(size, size, 3), alpha=alpha, weights=None,
                           classifier_activation=None, **kwargs)
    rng = np.random.default_rng(7)
    model.set_weights([w + rng.normal(0, 0.05, w.shape) for w in model.get_weights()])
    model = randomize_batchnorm(model, seed=3)
    pool = [layer for layer in model.layers if type(layer).__name__ == "GlobalAveragePooling2D"][-1]
    return model, tf_keras.Model(model.input, pool.input)


@pytest.mark.parametrize("arch, alpha, minimalistic", [
    ("v3-large", 1.0, False), ("v3-large", 1.0, True), ("v3-small", 0.75, False), ("v3-small", 1.0, True),
    ("v1", 0.25, False), ("v2", 0.35, False),
])
def test_files_written_by_tf_keras_load_like_the_official_ones(tmp_path, photos, arch, alpha, minimalistic):
    """tf.keras 2.x wrote the official files with its own layer names (`Conv`, `Conv/BatchNorm`,
    `expanded_conv/depthwise`); Keras loads them by order, so check_fit must too. With and without top."""
    size = 64
    pixels = reference_input(arch, resize(photos, size))
    for include_top, reference in zip((True, False), _tf_keras_model(arch, alpha, minimalistic, size)):
        path = tmp_path / f"{arch}_{include_top}.h5"
        reference.save_weights(str(path))
        model = km.create_model(arch, alpha=alpha, minimalistic=minimalistic, include_top=include_top,
                                weights=str(path), input_shape=(size, size, 3), classifier_activation=None)
        expected = reference(pixels, training=False).numpy()
        assert np.abs(expected).max() > 1e-2  # not two near-zero outputs
        np.testing.assert_allclose(model(pixels, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_tf_keras_file_of_another_alpha_names_the_first_layer_that_differs(tmp_path):
    path = tmp_path / "small_0.75.h5"
    _tf_keras_model("v3-small", 0.75, False, 64)[0].save_weights(str(path))
    with pytest.raises(ValueError, match=r"first mismatching layer is 'expanded_conv_3_project'"
                                         r".*the file has 'expanded_conv_3/project'") as error:
        km.MobileNetV3Small(alpha=1.0, weights=str(path), input_shape=(64, 64, 3))
    assert str(path) in str(error.value)


@pytest.mark.parametrize("content", ["text", "truncated"])
def test_unreadable_weights_file_names_the_path(tmp_path, content):
    path = tmp_path / "weights.h5"
    if content == "text":
        path.write_text("these are not weights\n")
    else:
        save_legacy_h5(km.MobileNetV2(alpha=0.35, weights=None, input_shape=(64, 64, 3)), path)
        path.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(ValueError, match="cannot be read as a Keras weights file") as error:
        km.MobileNetV2(alpha=0.35, weights=str(path), input_shape=(64, 64, 3))
    assert str(path) in str(error.value)
