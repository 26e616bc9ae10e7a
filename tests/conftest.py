import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_MOBILENETS_OFFLINE", "1")  # tests never download

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf


# the small network every CLI test trains: V2 0.35 at 32 px, digit-friendly crops, small batches
TINY = ["--arch", "v2", "--alpha", "0.35", "--image-size", "32", "--no-flip", "--min-crop", "0.6",
        "--crop-fraction", "1.0", "--batch-size", "16"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, digit_arrays):
    """Three classes of twelve real digit scans, saved as 32x32 PNG files the way a user brings them."""
    from PIL import Image

    images, labels = digit_arrays
    root = tmp_path_factory.mktemp("tiny")
    for label in range(3):
        (root / str(label)).mkdir()
        for index in np.flatnonzero(labels == label)[:12]:
            Image.fromarray(images[index]).resize((32, 32)).save(root / str(label) / f"{index}.png")
    return str(root)


@pytest.fixture(scope="session")
def photos():
    """The real photos scikit-learn and scikit-image ship, resized to 224x224, float32 in [0, 255]."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    images = list(load_sample_images().images) + [data.astronaut(), data.coffee(), data.chelsea()]
    return np.stack([tf.image.resize(image, (224, 224)).numpy() for image in images]).astype("float32")


@pytest.fixture(scope="session")
def digit_arrays():
    """scikit-learn's 1,797 digit scans as uint8 [0, 255] 8x8 images, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * 255 / 16).astype(np.uint8), digits.target


def resize(photos, size):
    return tf.image.resize(photos, (size, size)).numpy()


def randomize_batchnorm(model, seed=0):
    """Give every BatchNorm non-trivial statistics, so loading the wrong values shows in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    return model


def save_legacy_h5(model, path):
    """Write weights in the legacy Keras .h5 layout of the official keras.applications files."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


REFERENCE = {
    "v1": keras.applications.MobileNet,
    "v2": keras.applications.MobileNetV2,
    "v3-large": keras.applications.MobileNetV3Large,
    "v3-small": keras.applications.MobileNetV3Small,
}


def reference_model(arch, alpha, minimalistic=False, **kwargs):
    """The keras.applications model the package must match, with random weights."""
    if minimalistic:
        kwargs["minimalistic"] = True
    return REFERENCE[arch](alpha=alpha, weights=None, **kwargs)


def reference_input(arch, pixels):
    """keras.applications' own preprocessing: [-1, 1] for V1/V2, [0, 255] for V3."""
    return pixels if arch.startswith("v3") else pixels / 127.5 - 1.0
