"""tf.data input pipelines for fine-tuning: image folders, TFDS datasets and in-memory arrays.

Every pipeline yields `(pixels, label)` batches with float32 RGB pixels in [0, 255] and integer labels.
The models this package trains carry their own preprocessing (a Rescaling layer), so [0, 255] is the
one contract and the pipeline cannot normalize wrongly. Bad files are found by a validation pass before
training (skipped with a report, or an error in strict mode), never in the middle of an epoch.
"""

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_mobilenets.fileio import check_label
from keras_mobilenets.extras import require

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
MAX_HELD_OUT = 0.9  # validation_split + test_split: training keeps at least a tenth of the images
MAX_FILE_BYTES = 64 * 1024 * 1024  # the most bytes read from one data file; a larger one is skipped
AUTOTUNE = tf.data.AUTOTUNE


class DataError(ValueError):
    """A dataset that cannot be trained on: names the folder or file and what was wrong."""


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation. Random-resized-crop (Inception-style area/aspect ranges) and flips.

    Digits and text must not be flipped: pass `flip=False` for such data.
    """

    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    vertical_flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self):
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale={self.crop_scale!r} is not allowed: crop_scale must be "
                             "(min, max) with 0 < min <= max <= 1 (fractions of the image area)")
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise ValueError(f"crop_ratio={self.crop_ratio!r} is not allowed: crop_ratio must be "
                             "(min, max) aspect ratios with 0 < min <= max")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: {name} must be in [0, 1)")



@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


@dataclass
class ImageData:
    """Train / validation / test pipelines plus what went into them."""

    class_names: tuple
    image_size: tuple
    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    counts: dict
    batch_size: int
    files: dict = field(default_factory=dict)
    skipped: tuple = ()
    duplicates: tuple = ()  # groups of files with identical bytes; each group sits in a single split

    @property
    def num_classes(self):
        return len(self.class_names)

    def report(self):
        """A short human-readable summary: sizes per split and skipped files with reasons."""
        lines = [f"{len(self.class_names)} classes; " +
                 ", ".join(f"{split}: {n} images" for split, n in self.counts.items())]
        lines += [f"skipped {bad.path}: {bad.reason}" for bad in self.skipped]
        if self.duplicates:
            extra = sum(len(group) - 1 for group in self.duplicates)
            lines.append(f"{extra} duplicate image(s) (identical bytes under another name) in "
                         f"{len(self.duplicates)} group(s), each group kept in one split:")
            lines += ["  " + " = ".join(group) for group in self.duplicates]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------- files

def scan_folder(directory):
    """(files, labels, class_names) of a class-per-subfolder image folder, sorted for determinism."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataError(f"data directory {directory!r} does not exist or is not a folder")
    class_names = sorted(d for d in os.listdir(directory)
                         if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
    if not class_names:
        raise DataError(f"{directory!r} has no class subfolders: expected {directory}/<class>/<image> "
                        f"with images ending in {IMAGE_EXTENSIONS}")
    for name in class_names:
        try:
            check_label(name, what="class folder name")
        except ValueError as error:
            raise DataError(f"{os.path.join(directory, name)!r}: {error}") from None
    files, labels = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(directory, name)
        images = sorted(f for f in os.listdir(folder)
                        if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
        if not images:
            raise DataError(f"class folder {folder!r} holds no images (extensions {IMAGE_EXTENSIONS}); "
                            "remove it or add images")
        files += [os.path.join(folder, f) for f in images]
        labels += [label] * len(images)
    if len(class_names) < 2:
        raise DataError(f"{directory!r} has a single class ({class_names[0]!r}): a classifier needs at "
                        "least two class subfolders")
    return files, np.asarray(labels, np.int64), tuple(class_names)


_FILE_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _read_regular(path, max_bytes):
    """The bytes of `path` if it is a regular file of at most `max_bytes`, else the reason it is not.

    Opened non-blocking and checked again on the open descriptor, so a pipe or device never blocks
    or streams forever, even one swapped in after the first check.
    """
    def irregular(mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "a special file")
        return f"not a regular file ({kind}); only regular files are read"

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            return irregular(mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return irregular(info.st_mode)
        data = b"" if info.st_size > max_bytes else handle.read(max_bytes + 1)
    if info.st_size > max_bytes or len(data) > max_bytes:
        return f"larger than {max_bytes} bytes, the most read per file (data.MAX_FILE_BYTES)"
    return data


def read_data_file(path, root=None, follow_links=False, max_bytes=None):
    """The bytes of one file of a data folder, or a `BadFile` saying why it is not read.

    Only regular files inside `root` (unless `follow_links=True`) of at most `max_bytes`
    (default `MAX_FILE_BYTES`) are read; an empty file is a `BadFile` too.
    """
    if root is not None and not follow_links:
        real, top = os.path.realpath(path), os.path.realpath(root)
        if os.path.commonpath([real, top]) != top:
            return BadFile(path, f"resolves outside the data folder (to {real}); links out of the folder "
                                 "are skipped unless follow_links=True")
    data = _read_regular(path, MAX_FILE_BYTES if max_bytes is None else max_bytes)
    if isinstance(data, str):
        return BadFile(path, data)
    if not data:
        return BadFile(path, "empty file (0 bytes)")
    return data


def inspect_image(path, root=None, follow_links=False, max_bytes=None):
    """(BadFile or None, sha256 of the bytes or None, (height, width) or None) for one image file,
    decoded once with the pipeline's own decoder. Shared by the classification and detection readers."""
    data = read_data_file(path, root, follow_links, max_bytes)
    if isinstance(data, BadFile):
        return data, None, None
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        message = error.message.splitlines()[0] if error.message else type(error).__name__
        return BadFile(path, f"not a decodable JPEG/PNG/GIF/BMP image ({message})"), None, None
    if image.shape[0] == 0 or image.shape[1] == 0:
        return BadFile(path, f"image has no pixels (shape {tuple(image.shape)})"), None, None
    return None, hashlib.sha256(data).hexdigest(), (int(image.shape[0]), int(image.shape[1]))


def _check_file(path, root=None, follow_links=False, max_bytes=None):
    """(BadFile or None, sha256 of the bytes or None) for one file of a data folder."""
    return inspect_image(path, root, follow_links, max_bytes)[:2]


def check_files(files, strict=False, workers=8, root=None, follow_links=False):
    """(bad files, {path: sha256}) after decoding every file once with the pipeline's own decoder.

    Only regular files are opened, at most `MAX_FILE_BYTES` are read from each, and with `root` given
    a file that resolves outside it (a symlink out of the folder) is skipped unless `follow_links=True`.
    With `strict=True` the first bad file raises a `DataError` naming it instead.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda path: _check_file(path, root, follow_links), files))
    bad = tuple(b for b, _ in results if b is not None)
    if strict and bad:
        raise DataError(f"{bad[0].path}: {bad[0].reason} ({len(bad)} bad file(s) in all; pass "
                        "strict=False to skip them with a report)")
    return bad, {path: digest for path, (_, digest) in zip(files, results) if digest is not None}


def validate_files(files, strict=False, workers=8, root=None, follow_links=False):
    """The `BadFile`s among `files` (see `check_files`); with `strict=True` the first raises a DataError."""
    return check_files(files, strict, workers, root, follow_links)[0]


def duplicate_groups(files, digests):
    """Groups (tuples of 2+ paths) of `files` whose `digests` are equal, in file order."""
    groups = {}
    for path in files:
        groups.setdefault(digests[path], []).append(path)
    return tuple(tuple(group) for group in groups.values() if len(group) > 1)


def split_indices(labels, fractions, seed=0, groups=None):
    """Deterministic stratified split: a list of index arrays, the first the remainder (train).

    `fractions` are the held-out fractions (e.g. (0.1, 0.2) for validation and test). Each class is
    shuffled with `seed` and cut by the same fractions, so every class is represented in proportion and
    no index lands in two splits. `groups` (one key per index, e.g. a content hash) keeps indices with
    the same key in one split, counted in the class of the group's first index; without groups, or with
    all keys distinct, the split is the same as by index.
    """
    labels = np.asarray(labels)
    for fraction in fractions:
        if not 0 <= fraction < 1:
            raise ValueError(f"split fraction {fraction!r} is not allowed: fractions must be in [0, 1)")
    if sum(fractions) >= 1:
        raise ValueError(f"split fractions {tuple(fractions)} are not allowed: they must sum to < 1 so "
                         "that training keeps some images")
    if groups is None:
        groups = np.arange(len(labels))
    if len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} entries for {len(labels)} labels: give one per label")
    keys = {}
    unit_of = np.asarray([keys.setdefault(key, len(keys)) for key in groups], np.int64)  # first-seen order
    unit_members = [[] for _ in keys]
    for index, unit in enumerate(unit_of):
        unit_members[unit].append(index)
    unit_label = np.asarray([labels[members[0]] for members in unit_members])
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        units = np.flatnonzero(unit_label == label)
        if not len(units):
            continue  # all of this class' images are copies of another class' files
        units = units[rng.permutation(len(units))]
        sizes = np.asarray([len(unit_members[u]) for u in units])
        total, start, taken = int(sizes.sum()), 0, 0
        for i, fraction in enumerate(fractions, start=1):
            take = int(round(fraction * total))
            if fraction > 0 and take == 0 and total - taken > 1:
                take = 1
            end, got = start, 0
            while end < len(units) and got < take:
                got += sizes[end]
                end += 1
            parts[i].append(units[start:end])
            start, taken = end, taken + got
        parts[0].append(units[start:])

    def indices(chunks):
        units = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        return np.sort(np.asarray([i for u in units for i in unit_members[u]], np.int64))

    return [indices(chunks) for chunks in parts]


# ------------------------------------------------------------------------------------ transforms

def decode(data):
    """Encoded bytes -> uint8 RGB. JPEG/PNG/GIF (first frame)/BMP by content, not by file extension;
    grayscale, RGBA and palette images become RGB."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def to_rgb(image):
    """uint8/float HxWxC with C in (1, 3, 4) -> RGB (grayscale repeated, alpha dropped)."""
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    return image


def center_crop(image, size, crop_fraction=0.875):
    """Eval transform: resize so the central `crop_fraction` of the short side becomes `size`, then crop."""
    height, width = size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant([height, width], tf.float32) / (crop_fraction * shape))
    resized = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    resized = tf.maximum(resized, tf.constant([height, width]))
    image = tf.image.resize(image, resized, method="bilinear", antialias=True)
    top = (resized[0] - height) // 2
    left = (resized[1] - width) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, height, width)
    return tf.clip_by_value(image, 0.0, 255.0)  # antialiased resizing can overshoot by a little


def random_resized_crop(image, size, augmentation):
    """Train transform: a random crop of random area and aspect ratio, resized to `size`, flipped."""
    begin, crop, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.0, aspect_ratio_range=augmentation.crop_ratio,
        area_range=augmentation.crop_scale, max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    if augmentation.flip:
        image = tf.image.random_flip_left_right(image)
    if augmentation.vertical_flip:
        image = tf.image.random_flip_up_down(image)
    if augmentation.brightness:
        image = tf.image.random_brightness(image, 255.0 * augmentation.brightness)
    if augmentation.contrast:
        image = tf.image.random_contrast(image, 1 - augmentation.contrast, 1 + augmentation.contrast)
    return tf.clip_by_value(image, 0.0, 255.0)


def _pipeline(images, size, batch_size, training, augmentation, crop_fraction, cache, shuffle_seed,
              buffer_size):
    """(uint8 image, label) dataset -> batched float32 [0, 255] pipeline."""
    if training:
        if cache:
            images = images.cache(cache if isinstance(cache, str) else "")
        images = images.shuffle(buffer_size, seed=shuffle_seed, reshuffle_each_iteration=True)
        if augmentation is None:
            transform = lambda x, y: (center_crop(x, size, crop_fraction), y)  # noqa: E731
        else:
            transform = lambda x, y: (random_resized_crop(x, size, augmentation), y)  # noqa: E731
        images = images.map(transform, num_parallel_calls=AUTOTUNE)
    else:
        images = images.map(lambda x, y: (center_crop(x, size, crop_fraction), y),
                            num_parallel_calls=AUTOTUNE)
        if cache:
            images = images.cache(cache if isinstance(cache, str) else "")
    return images.batch(batch_size).prefetch(AUTOTUNE)


def _image_size(image_size):
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(s, int) and s >= 32 for s in image_size)):
        raise ValueError(f"image_size={image_size!r} is not allowed: image_size must be an integer >= 32 "
                         "or a (height, width) pair of them (the model's input size)")
    return tuple(image_size)


def _check_common(batch_size, crop_fraction, augmentation):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: batch_size must be a positive integer")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction={crop_fraction!r} is not allowed: crop_fraction must be in (0, 1]")
    if augmentation is not None and not isinstance(augmentation, Augmentation):
        raise ValueError(f"augmentation={augmentation!r} is not allowed: augmentation must be an "
                         "Augmentation(...) or None")


def _check_splits(validation_split, test_split, labels=None, class_names=None, parts=None):
    """Refuse split fractions that leave (almost) no training images; with `parts`, refuse a class
    left without any training image."""
    for name, value in (("validation_split", validation_split), ("test_split", test_split)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name}={value!r} is not allowed: {name} must be a fraction in [0, 1)")
    if validation_split + test_split > MAX_HELD_OUT:
        raise ValueError(f"validation_split={validation_split!r} + test_split={test_split!r} = "
                         f"{validation_split + test_split:.2f} leaves {1 - validation_split - test_split:.0%} "
                         f"of the images for training: their sum must be at most "
                         f"{MAX_HELD_OUT}")
    if parts is not None:
        empty = [class_names[c] for c in np.unique(labels) if not (labels[parts[0]] == c).any()]
        if empty:
            raise ValueError(f"validation_split={validation_split!r} and test_split={test_split!r} leave "
                             f"class {empty[0]!r} ({(labels == class_names.index(empty[0])).sum()} images) "
                             "without a training image: lower them, or add images to that class")


def _file_dataset(files, labels):
    paths = tf.data.Dataset.from_tensor_slices((np.asarray(files, dtype=object).astype(str), labels))
    return paths.map(lambda path, y: (decode(tf.io.read_file(path)), y), num_parallel_calls=AUTOTUNE)


def _make(sources, class_names, size, batch_size, augmentation, crop_fraction, cache, seed, files=None,
          skipped=()):
    names = ("train", "validation", "test")
    datasets, counts = {}, {}
    for name, (source, count) in zip(names, sources):
        if source is None or count == 0:
            datasets[name] = None
            continue
        datasets[name] = _pipeline(source, size, batch_size, name == "train", augmentation,
                                   crop_fraction, cache, seed, buffer_size=min(count, 10_000))
        counts[name] = count
    return ImageData(tuple(class_names), size, datasets["train"], datasets["validation"],
                     datasets["test"], counts, batch_size, files or {}, tuple(skipped))


def from_folder(directory, image_size, batch_size=32, validation_split=0.1, test_split=0.2, seed=0,
                augmentation=Augmentation(), crop_fraction=0.875, strict=False, cache=False,
                follow_links=False):
    """Pipelines from `directory/<class>/<image>`: stratified seeded split, bad files found up front.

    The default splits (70/10/20) are `keras-mobilenets train`'s. `cache=True` caches decoded images in
    memory (a string: in that file) before random augmentation.
    Files with identical bytes stay in one split (listed in `duplicates`); files that resolve outside
    `directory` (symlinks) are skipped with a reason unless `follow_links=True`.
    """
    size = _image_size(image_size)
    _check_common(batch_size, crop_fraction, augmentation)
    _check_splits(validation_split, test_split)
    files, labels, class_names = scan_folder(directory)
    skipped, digests = check_files(files, strict=strict, root=directory, follow_links=follow_links)
    if skipped:
        bad = {b.path for b in skipped}
        keep = [i for i, f in enumerate(files) if f not in bad]
        files, labels = [files[i] for i in keep], labels[keep]
        for label, name in enumerate(class_names):
            if not (labels == label).any():
                folder = os.path.join(os.fspath(directory), name)
                reason = next(b.reason for b in skipped if os.path.dirname(b.path) == folder)
                raise DataError(f"class folder {folder!r} has no decodable images left after skipping bad "
                                f"files (e.g. {reason})")
    groups = [digests[f] for f in files]
    parts = split_indices(labels, (validation_split, test_split), seed, groups=groups)
    _check_splits(validation_split, test_split, labels, class_names, parts)
    split_files = {name: [files[i] for i in part] for name, part in zip(("train", "validation", "test"), parts)}
    sources = [(_file_dataset(split_files[n], labels[p]), len(p))
               for n, p in zip(("train", "validation", "test"), parts)]
    data = _make(sources, class_names, size, batch_size, augmentation, crop_fraction, cache, seed,
                 files=split_files, skipped=skipped)
    data.duplicates = duplicate_groups(files, digests)
    return data


def from_files(files, labels, class_names, image_size, batch_size=32, crop_fraction=0.875):
    """An evaluation pipeline (center crop, no shuffling) over listed files, e.g. a run's test split."""
    size = _image_size(image_size)
    _check_common(batch_size, crop_fraction, None)
    labels = np.asarray(labels, np.int64)
    source = _file_dataset(list(files), labels)
    return _pipeline(source, size, batch_size, False, None, crop_fraction, False, 0, 1)


def from_arrays(images, labels, image_size, class_names=None, batch_size=32, validation_split=0.1,
                test_split=0.2, seed=0, augmentation=Augmentation(), crop_fraction=0.875, cache=False):
    """Pipelines from in-memory images (N, H, W, C) with C in (1, 3, 4) and finite [0, 255] values."""
    size = _image_size(image_size)
    _check_common(batch_size, crop_fraction, augmentation)
    _check_splits(validation_split, test_split)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images with shape {images.shape} is not allowed: images must be (N, H, W, C) "
                         "with C 1 (grayscale), 3 (RGB) or 4 (RGBA)")
    if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
        raise ValueError(f"images of dtype {images.dtype} is not allowed: images must be real numbers "
                         "(uint8 or float pixels in [0, 255])")
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"images holds NaN or infinite values ({int((~finite).sum())} image(s), the first at "
                         f"index {int(np.argmin(finite))}): images must be finite pixels in [0, 255]")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels with shape {labels.shape} and dtype {labels.dtype} is not allowed: "
                         f"labels must be {len(images)} integer class ids")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    class_names = tuple(class_names or (str(i) for i in range(num_classes)))
    if len(class_names) < 2 or labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"labels must be ids in [0, {len(class_names)}) for at least two classes; "
                         f"received ids {sorted(set(labels.tolist()))[:10]}")
    parts = split_indices(labels, (validation_split, test_split), seed)
    _check_splits(validation_split, test_split, labels, class_names, parts)
    sources = []
    for part in parts:
        x = tf.data.Dataset.from_tensor_slices((images[part], labels[part].astype(np.int64)))
        sources.append((x.map(lambda a, y: (to_rgb(a), y)), len(part)))
    return _make(sources, class_names, size, batch_size, augmentation, crop_fraction, cache, seed)


def from_tfds(name, data_dir, image_size, splits=("train", "validation", "test"), batch_size=32,
              seed=0, augmentation=Augmentation(), crop_fraction=0.875, cache=False, download=False):
    """Pipelines from a TFDS dataset already prepared under `data_dir` (no download unless asked).

    `splits` names the TFDS splits (or slices like "train[:90%]") used for train, validation and test;
    use None for a split you do not want.
    """
    tfds = require("tensorflow_datasets", "train")

    size = _image_size(image_size)
    _check_common(batch_size, crop_fraction, augmentation)
    if data_dir is None and not download:
        raise DataError(f"from_tfds({name!r}) needs data_dir, the folder where the dataset was prepared "
                        "(tfds.builder(name, data_dir=...).download_and_prepare()); pass download=True "
                        "to let TFDS download it")
    if not download and not os.path.isdir(os.path.join(os.fspath(data_dir), name.split("/")[0].split(":")[0])):
        raise DataError(f"TFDS dataset {name!r} is not prepared in data_dir={os.fspath(data_dir)!r} "
                        f"(no folder {name.split(':')[0]!r} there); prepare it on a machine with network "
                        "access or pass download=True")
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise DataError(f"TFDS dataset {name!r} has no (image, label) supervised keys")
    label_feature = features[keys[1]]
    class_names = tuple(label_feature.names)
    sources = []
    for split in splits:
        if split is None:
            sources.append((None, 0))
            continue
        available = builder.info.splits
        base = split.split("[")[0]
        if base not in available:
            raise DataError(f"split {split!r} is not in TFDS dataset {name!r}; it has {sorted(available)}")
        count = available[split].num_examples
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        sources.append((ds.map(lambda x, y: (to_rgb(x), tf.cast(y, tf.int64)),
                               num_parallel_calls=AUTOTUNE), count))
    return _make(sources, class_names, size, batch_size, augmentation, crop_fraction, cache, seed)

