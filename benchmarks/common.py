"""What the benchmark scripts share: the real sample photos, the digits split and a median timer."""

import statistics
import time


def photos():
    """The RGB photos scikit-learn and scikit-image ship (uint8 arrays of different sizes)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images) + [data.astronaut(), data.coffee(), data.chelsea()]


def digits(augmentation=None):
    """scikit-learn's digit scans at 32x32 split 70/10/20 (batches of 64), and the test split as arrays:
    (ImageData, test images, test labels)."""
    import numpy as np
    from sklearn.datasets import load_digits

    from keras_mobilenets.data import pipelines as kd

    scans = load_digits()
    pixels = np.round(scans.images * 255 / 16).astype(np.uint8)
    data = kd.from_arrays(pixels, scans.target, 32, batch_size=64, validation_split=0.1, test_split=0.2,
                          augmentation=augmentation, crop_fraction=1.0)
    images, labels = (np.concatenate(p) for p in zip(*[(x.numpy(), y.numpy()) for x, y in data.test]))
    return data, images, labels


def timed(function, repeats, warmup=1):
    """Median seconds of `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
