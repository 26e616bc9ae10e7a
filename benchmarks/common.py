"""What the benchmark scripts share: the real sample photos and a median timer."""

import statistics
import time


def photos():
    """The RGB photos scikit-learn and scikit-image ship (uint8 arrays of different sizes)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images) + [data.astronaut(), data.coffee(), data.chelsea()]


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
