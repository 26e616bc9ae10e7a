"""tf.data pipelines: decoding every format, bad files found up front, stratified leak-free splits,
train/eval transforms, arrays and TFDS sources."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_mobilenets.data import pipelines as kd
from keras_mobilenets.data.datasets import digits


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return digits(tmp_path_factory.mktemp("data") / "digits")


def _photo(photos, index=0, size=48):
    return tf.image.resize(photos[index:index + 1], (size, size)).numpy()[0].round().astype(np.uint8)


def _save(image, path, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture()
def mixed_dir(tmp_path, photos):
    """Two classes of real photos in every format and mode, plus every kind of bad file."""
    root = tmp_path / "mixed"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
    rgb = Image.fromarray(_photo(photos, 0))
    _save(rgb, root / "cat" / "a.jpg", "JPEG", quality=95)
    _save(rgb.convert("L"), root / "cat" / "gray.png", "PNG")
    _save(rgb.convert("RGBA"), root / "cat" / "rgba.png", "PNG")
    _save(rgb.convert("P"), root / "cat" / "palette.png", "PNG")
    _save(rgb, root / "cat" / "lying.jpg", "PNG")  # a PNG named .jpg
    other = Image.fromarray(_photo(photos, 1))
    _save(other, root / "dog" / "b.bmp", "BMP")
    _save(other, root / "dog" / "anim.gif", "GIF", save_all=True,
          append_images=[Image.fromarray(_photo(photos, 2))], duration=100)
    _save(other, root / "dog" / "c.jpeg", "JPEG")
    good = (root / "dog" / "c.jpeg").read_bytes()
    (root / "dog" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "dog" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.jpg").write_text("this is not an image\n")
    return root


BAD = {"truncated.jpg", "empty.jpg", "notes.jpg"}


def test_validation_pass_lists_exactly_the_bad_files(mixed_dir):
    files, _, names = kd.scan_folder(mixed_dir)
    assert names == ("cat", "dog") and len(files) == 11
    bad = kd.validate_files(files)
    assert {os.path.basename(b.path) for b in bad} == BAD
    reasons = {os.path.basename(b.path): b.reason for b in bad}
    assert "empty" in reasons["empty.jpg"] and "decodable" in reasons["notes.jpg"]


def test_bad_files_are_skipped_with_a_report_or_raise_in_strict_mode(mixed_dir):
    data = kd.from_folder(mixed_dir, 32, batch_size=4, validation_split=0.0, test_split=0.0, augmentation=None)
    assert {os.path.basename(b.path) for b in data.skipped} == BAD
    assert data.counts == {"train": 8}
    assert "truncated.jpg" in data.report()
    seen = sum(int(x.shape[0]) for x, _ in data.train)  # a whole epoch, no crash on the bad files
    assert seen == 8
    with pytest.raises(kd.DataError, match=r"(truncated|empty|notes)\.jpg"):
        kd.from_folder(mixed_dir, 32, strict=True)


def test_every_format_and_mode_decodes_to_the_same_rgb_pixels(mixed_dir):
    read = lambda name: kd.decode(tf.io.read_file(str(mixed_dir / name))).numpy()  # noqa: E731
    reference = np.asarray(Image.open(mixed_dir / "cat" / "gray.png").convert("RGB"))
    gray = read("cat/gray.png")
    assert gray.shape == (48, 48, 3) and np.array_equal(gray, reference)
    png = np.asarray(Image.open(mixed_dir / "cat" / "rgba.png").convert("RGB"))
    assert np.array_equal(read("cat/rgba.png"), png)
    assert np.array_equal(read("cat/lying.jpg"), png)  # content decides, not the extension
    palette = np.asarray(Image.open(mixed_dir / "cat" / "palette.png").convert("RGB"))
    assert np.array_equal(read("cat/palette.png"), palette)
    assert np.array_equal(read("dog/b.bmp"), np.asarray(Image.open(mixed_dir / "dog" / "b.bmp")))
    gif = Image.open(mixed_dir / "dog" / "anim.gif")
    first = np.asarray(gif.convert("RGB"))
    decoded = read("dog/anim.gif")
    assert decoded.shape == first.shape
    assert np.abs(decoded.astype(int) - first).mean() < 2  # first frame (GIF palettes differ slightly)
    gif.seek(1)
    assert np.abs(decoded.astype(int) - np.asarray(gif.convert("RGB"))).mean() > 10


def test_folder_errors_name_what_is_wrong(tmp_path, digits_dir):
    with pytest.raises(kd.DataError, match="does not exist"):
        kd.from_folder(tmp_path / "missing", 32)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(kd.DataError, match="no class subfolders"):
        kd.from_folder(tmp_path / "nothing", 32)
    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one / "x.png")
    with pytest.raises(kd.DataError, match="single class"):
        kd.from_folder(tmp_path / "one", 32)
    (tmp_path / "one" / "empty").mkdir()
    with pytest.raises(kd.DataError, match="empty.*holds no images"):
        kd.from_folder(tmp_path / "one", 32)
    allbad = tmp_path / "allbad"
    for name in ("a", "b"):
        (allbad / name).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(allbad / "a" / "x.png")
    (allbad / "b" / "y.jpg").write_bytes(b"")
    with pytest.raises(kd.DataError, match="no decodable images left"):
        kd.from_folder(allbad, 32)
    for kwargs, name in (({"image_size": 16}, "image_size"), ({"image_size": 32, "batch_size": 0}, "batch_size"),
                         ({"image_size": 32, "crop_fraction": 1.5}, "crop_fraction"),
                         ({"image_size": 32, "validation_split": 0.6, "test_split": 0.5}, "sum")):
        with pytest.raises(ValueError, match=name):
            kd.from_folder(digits_dir, **kwargs)
    with pytest.raises(ValueError, match="crop_scale"):
        kd.Augmentation(crop_scale=(0.5, 1.5))


def test_split_is_stratified_deterministic_and_leak_free(digits_dir):
    a = kd.from_folder(digits_dir, 32, validation_split=0.1, test_split=0.2, seed=3)
    b = kd.from_folder(digits_dir, 32, validation_split=0.1, test_split=0.2, seed=3)
    c = kd.from_folder(digits_dir, 32, validation_split=0.1, test_split=0.2, seed=4)
    train, val, test = (set(a.files[k]) for k in ("train", "validation", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 1797
    assert a.files == b.files and a.files["test"] != c.files["test"]
    assert a.counts == {"train": 1259, "validation": 179, "test": 359}
    for name in map(str, range(10)):
        in_class = [f for f in test if os.sep + name + os.sep in f]
        total = len(os.listdir(os.path.join(digits_dir, name)))
        assert abs(len(in_class) - 0.2 * total) <= 1
    # what the pipelines yield is exactly those files: labels per split match the folders
    labels = np.concatenate([y.numpy() for _, y in a.test])
    expected = sorted(int(os.path.basename(os.path.dirname(f))) for f in a.files["test"])
    assert sorted(labels.tolist()) == expected


def test_eval_pipeline_is_a_deterministic_center_crop_at_the_model_size(tmp_path, photos):
    root = tmp_path / "photos"
    for i, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        Image.fromarray(photos[i].round().astype(np.uint8)).save(root / name / "x.png")
    data = kd.from_folder(root, (96, 64), batch_size=2, validation_split=0.0, augmentation=None,
                          crop_fraction=0.875)
    (first, labels), = [(x.numpy(), y.numpy()) for x, y in data.train]
    second = np.concatenate([x.numpy() for x, _ in data.train])
    assert first.shape == (2, 96, 64, 3) and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 255
    np.testing.assert_array_equal(np.sort(first, axis=0), np.sort(second, axis=0))
    # 224x224 -> 96x64: the short output side covers 87.5% of the photo, centred
    expected = kd.center_crop(tf.constant(photos[0]), (96, 64), 0.875).numpy()
    np.testing.assert_allclose(first[labels == 0][0], expected, atol=1.0)


def test_train_pipeline_augments_randomly_within_range(digits_dir):
    aug = kd.Augmentation(crop_scale=(0.3, 0.6), flip=True, brightness=0.1, contrast=0.2)
    data = kd.from_folder(digits_dir, 40, batch_size=64, validation_split=0.1, augmentation=aug,
                          cache=True)
    x1, _ = next(iter(data.train))
    x2, _ = next(iter(data.train))
    assert x1.shape == (64, 40, 40, 3) and x1.dtype == tf.float32
    assert float(tf.reduce_min(x1)) >= 0 and float(tf.reduce_max(x1)) <= 255
    assert not np.array_equal(x1.numpy(), x2.numpy())  # reshuffled and re-augmented each epoch
    xv = np.concatenate([x.numpy() for x, _ in data.validation])
    xv2 = np.concatenate([x.numpy() for x, _ in data.validation])
    np.testing.assert_array_equal(xv, xv2)


def test_from_arrays_accepts_gray_rgb_rgba(photos):
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.round(d.images * 255 / 16).astype(np.uint8)
    data = kd.from_arrays(pixels, d.target, 32, validation_split=0.2, test_split=0.0, augmentation=None,
                          crop_fraction=1.0)
    assert data.counts == {"train": 1438, "validation": 359}  # 20% of each class, rounded
    x, y = next(iter(data.validation))
    assert x.shape == (32, 32, 32, 3)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    rgba = np.concatenate([photos[:2], np.full((2, 224, 224, 1), 255.0)], axis=-1)
    data = kd.from_arrays(rgba, np.array([0, 1]), 64, validation_split=0.0, augmentation=None)
    x, _ = next(iter(data.train))
    assert x.shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="images with shape"):
        kd.from_arrays(np.zeros((2, 8, 8, 2)), np.array([0, 1]), 32)
    with pytest.raises(ValueError, match="labels"):
        kd.from_arrays(pixels[:4], np.array([0.5, 1, 0, 1]), 32)


TFDS_BUILDER = '''
import numpy as np, tensorflow_datasets as tfds
from sklearn.datasets import load_digits

class DigitsScans(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    def _info(self):
        return tfds.core.DatasetInfo(builder=self, supervised_keys=("image", "label"),
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(names=[str(i) for i in range(10)])}))
    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 1500), "test": self._generate_examples(1500, 1797)}
    def _generate_examples(self, start, stop):
        d = load_digits()
        for i in range(start, stop):
            yield i, {"image": np.round(d.images[i] * 255 / 16).astype(np.uint8)[..., None],
                      "label": int(d.target[i])}

DigitsScans(data_dir=DATA_DIR).download_and_prepare()
'''


def test_from_tfds_reads_a_prepared_dataset_offline(tmp_path):
    data_dir = str(tmp_path / "tfds")
    # prepare a real TFDS dataset from the digits in another process; this one only knows the folder
    subprocess.run([sys.executable, "-c", TFDS_BUILDER.replace("DATA_DIR", repr(data_dir))], check=True,
                   capture_output=True, timeout=300)
    data = kd.from_tfds("digits_scans", data_dir, 32, splits=("train", None, "test"), augmentation=None,
                        crop_fraction=1.0)
    assert data.class_names == tuple(str(i) for i in range(10))
    assert data.counts == {"train": 1500, "test": 297}
    labels = np.concatenate([y.numpy() for _, y in data.test])
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(np.sort(labels), np.sort(load_digits().target[1500:]))
    with pytest.raises(kd.DataError, match="not prepared"):
        kd.from_tfds("mnist", data_dir, 32)
    with pytest.raises(kd.DataError, match="needs data_dir"):
        kd.from_tfds("mnist", None, 32)
    with pytest.raises(kd.DataError, match="split 'validation' is not in"):
        kd.from_tfds("digits_scans", data_dir, 32)


def test_from_folder_and_from_arrays_split_like_the_train_command(tmp_path):
    """The Python defaults agree with `keras-mobilenets train` (70/10/20), so data.test exists."""
    import inspect

    from keras_mobilenets.app.cli import build_parser
    from keras_mobilenets.app.runs import RunConfig

    args = build_parser().parse_args(["train", "--out", "x"])
    for function in (kd.from_folder, kd.from_arrays):
        defaults = inspect.signature(function).parameters
        assert (defaults["validation_split"].default, defaults["test_split"].default) == \
            (args.validation_split, args.test_split) == (RunConfig.validation_split, RunConfig.test_split)
    from photo_folders import photo_folder

    data = kd.from_folder(photo_folder(tmp_path / "photos", ("china", "flower"), 40, 20), 32)
    assert data.counts == {"train": 28, "validation": 4, "test": 8} and data.test is not None


def test_from_arrays_refuses_nan_and_infinite_images(digit_arrays):
    images, labels = digit_arrays
    for bad in (np.nan, np.inf, -np.inf):
        pixels = images[:40].astype("float32")
        pixels[7, 3, 4] = bad
        with pytest.raises(ValueError, match=r"images holds NaN or infinite values \(1 image\(s\), the first "
                                             r"at index 7\)"):
            kd.from_arrays(pixels, labels[:40], 32)
    with pytest.raises(ValueError, match="images of dtype <U1 is not allowed"):
        kd.from_arrays(np.full((40, 8, 8), "x"), labels[:40], 32)


def test_splits_that_leave_no_training_images_are_refused(tmp_path, digit_arrays):
    images, labels = digit_arrays
    for validation, test in ((0.5, 0.45), (0.9, 0.05), (0.0, 0.95)):
        with pytest.raises(ValueError, match=r"validation_split=.* \+ test_split=.* leaves .* their sum must "
                                             r"be at most 0\.9"):
            kd.from_arrays(images[:100], labels[:100], 32, validation_split=validation, test_split=test)
    with pytest.raises(ValueError, match=r"validation_split=-0\.1 is not allowed: .* \[0, 1\)"):
        kd.from_arrays(images[:100], labels[:100], 32, validation_split=-0.1)
    # a class of two images: 0.45 + 0.45 keeps 10% overall but leaves that class nothing to train on
    few = np.concatenate([np.flatnonzero(labels == 0)[:20], np.flatnonzero(labels == 1)[:2]])
    with pytest.raises(ValueError, match=r"validation_split=0\.45 and test_split=0\.45 leave class '1' "
                                         r"\(2 images\) without a training image"):
        kd.from_arrays(images[few], labels[few], 32, validation_split=0.45, test_split=0.45)
    root = tmp_path / "folder"
    for digit in ("0", "1"):
        (root / digit).mkdir(parents=True)
        for i in np.flatnonzero(labels == int(digit))[:(20 if digit == "0" else 2)]:
            Image.fromarray(images[i]).save(root / digit / f"{i}.png")
    with pytest.raises(ValueError, match=r"leave class '1' \(2 images\) without a training image"):
        kd.from_folder(root, 32, validation_split=0.45, test_split=0.45)
    with pytest.raises(ValueError, match=r"validation_split=0\.6 \+ test_split=0\.35"):
        kd.from_folder(root, 32, validation_split=0.6, test_split=0.35)
