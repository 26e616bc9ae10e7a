"""Bundled real data for demos and tests: scikit-learn's handwritten digits as an image folder.

1,797 real 8x8 scans written as grayscale PNGs in one subfolder per class, so the class-per-folder path of
the data pipeline is the one that gets exercised.
"""

import os
import shutil
import uuid

import numpy as np

from keras_mobilenets.extras import require

DIGITS_CLASSES = tuple(str(d) for d in range(10))


def _expected_counts():
    load_digits = require("sklearn.datasets", "train").load_digits

    targets = load_digits().target
    return {str(d): int((targets == d).sum()) for d in range(10)}


def _is_complete(path, counts):
    return all(
        os.path.isdir(os.path.join(path, name))
        and len([f for f in os.listdir(os.path.join(path, name)) if f.endswith(".png")]) == count
        for name, count in counts.items()
    )


def default_digits_dir():
    """Where the CLI keeps the digits folder: $KERAS_HOME/datasets/keras_mobilenets_digits."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", "keras_mobilenets_digits")


def digits(path=None, overwrite=False):
    """Write scikit-learn's digits to `path/<digit>/<index>.png` (8x8 grayscale, 0-16 scaled to 0-255).

    `path=None` uses `default_digits_dir()`.
    A complete folder from an earlier call is reused as is. Anything else already at `path` is kept
    unless `overwrite=True`. Writing happens in a temporary sibling folder renamed into place at the end.
    """
    Image = require("PIL.Image", "train")
    load_digits = require("sklearn.datasets", "train").load_digits

    path = os.fspath(path) if path is not None else default_digits_dir()
    counts = _expected_counts()
    if os.path.exists(path):
        if _is_complete(path, counts):
            return path
        if not overwrite:
            raise ValueError(f"path={path!r} exists and is not a complete digits folder; pass "
                             "overwrite=True to replace it, or choose another path")
    data = load_digits()
    pixels = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    staging = f"{path.rstrip(os.sep)}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for name in DIGITS_CLASSES:
            os.makedirs(os.path.join(staging, name))
        for index, (image, target) in enumerate(zip(pixels, data.target)):
            Image.fromarray(image, mode="L").save(os.path.join(staging, str(target), f"{index:04d}.png"))
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path
