"""The bundled digits image folder: real scans, one folder per class, written once, never clobbered."""

import os

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from keras_mobilenets.data.datasets import DIGITS_CLASSES, digits


def test_digits_folder_holds_every_scan(tmp_path):
    root = digits(tmp_path / "digits")
    data = load_digits()
    assert sorted(os.listdir(root)) == list(DIGITS_CLASSES)
    for name in DIGITS_CLASSES:
        assert len(os.listdir(os.path.join(root, name))) == int((data.target == int(name)).sum())
    for index in (0, 1, 1796):
        image = np.asarray(Image.open(os.path.join(root, str(data.target[index]), f"{index:04d}.png")))
        assert image.shape == (8, 8) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, np.round(data.images[index] * 255 / 16).astype(np.uint8))


def test_complete_folder_is_reused_and_others_are_kept(tmp_path):
    root = digits(tmp_path / "digits")
    marker = os.path.join(root, "0", "0000.png")
    mtime = os.stat(marker).st_mtime_ns
    assert digits(root) == root and os.stat(marker).st_mtime_ns == mtime
    other = tmp_path / "photos"
    other.mkdir()
    (other / "mine.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="overwrite=True"):
        digits(other)
    assert (other / "mine.jpg").read_bytes() == b"precious"
    digits(other, overwrite=True)
    assert not (other / "mine.jpg").exists() and sorted(os.listdir(other)) == list(DIGITS_CLASSES)
    assert [p for p in os.listdir(tmp_path) if ".tmp-" in p] == []
