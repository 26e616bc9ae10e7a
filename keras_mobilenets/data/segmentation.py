"""Image + mask pairs for segmentation: VOC-layout folders, images/ + masks/ folders, TFDS.

Pipelines yield (float32 RGB [0, 255] images [B, H, W, 3], int32 masks [B, H, W]) where a mask pixel
is a class id in [0, num_classes) or the ignore label (255). Bad pairs are found by one validation pass
before training (the classification pipeline's file checks, plus the mask's own): skipped with a report
naming the file and the reason, or an error in strict mode.
"""

import io
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_mobilenets.data.pipelines import (
    AUTOTUNE,
    IMAGE_EXTENSIONS,
    MAX_FILE_BYTES,
    BadFile,
    DataError,
    _check_file,
    _read_regular,
    decode,
    split_indices,
)
from keras_mobilenets.extras import require

IGNORE_LABEL = 255
MASK_EXTENSIONS = (".png",)


@dataclass(frozen=True)
class SegmentationAugmentation:
    """Random scale (image bilinear, mask nearest), pad to the crop size (image 0, mask ignore label),
    random crop of the same window from both, and a left-right flip of both."""

    scale: tuple = (0.5, 2.0)
    flip: bool = True

    def __post_init__(self):
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"scale={self.scale!r} is not allowed: scale must be (min, max) with "
                             "0 < min <= max")


@dataclass
class SegmentationData:
    """Train / validation / test pipelines of (image, mask) batches, and the files that went in."""

    num_classes: int
    image_size: tuple
    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    counts: dict
    files: dict = field(default_factory=dict)
    skipped: tuple = ()
    ignore_label: int = IGNORE_LABEL
    batch_size: int = 8
    class_names: tuple = ()

    def __post_init__(self):
        self.class_names = tuple(self.class_names) or tuple(f"class_{i}" for i in range(self.num_classes))

    def report(self):
        lines = [f"{self.num_classes} classes; " + ", ".join(f"{k}: {v} pairs" for k, v in self.counts.items())]
        return "\n".join(lines + [f"skipped {bad.path}: {bad.reason}" for bad in self.skipped])


# ------------------------------------------------------------------------------------------ scanning

def _stems(folder, extensions):
    found = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in extensions and not name.startswith("."):
            found.setdefault(stem, os.path.join(folder, name))
    return found


def scan_pairs(directory):
    """(image, mask or None) pairs of `directory`: a VOC layout (JPEGImages/, SegmentationClass/) or a
    plain images/ + masks/ folder; masks matched to images by file name stem; sorted."""
    directory = os.fspath(directory)
    layouts = (("JPEGImages", "SegmentationClass"), ("images", "masks"))
    for images_dir, masks_dir in layouts:
        images_path, masks_path = os.path.join(directory, images_dir), os.path.join(directory, masks_dir)
        if os.path.isdir(images_path) and os.path.isdir(masks_path):
            images = _stems(images_path, IMAGE_EXTENSIONS)
            masks = _stems(masks_path, MASK_EXTENSIONS)
            if images_dir == "JPEGImages":  # VOC keeps unlabelled images next to the labelled ones
                images = {stem: path for stem, path in images.items() if stem in masks} or images
            if not images:
                raise DataError(f"{images_path!r} holds no images (extensions {IMAGE_EXTENSIONS})")
            return [(path, masks.get(stem)) for stem, path in sorted(images.items())]
    raise DataError(f"{directory!r} is not a segmentation folder: expected JPEGImages/ and "
                    "SegmentationClass/ (VOC layout) or images/ and masks/ side by side")


LABELS_FILE = "labels.txt"


def folder_class_names(directory):
    """The class names of a segmentation folder, index = mask value, or None when it does not say:
    `labels.txt` (one name per line), else a COCO `instances.json` beside the masks (value 0 is
    "background", value k the category with id k, as `datasets.shapes` writes its masks)."""
    import json

    labels = os.path.join(directory, LABELS_FILE)
    if os.path.isfile(labels):
        with open(labels, encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip()]
        if len(names) < 2:
            raise DataError(f"{labels}: {len(names)} class name(s); a segmentation folder needs at least 2 "
                            "(background counts as a class)")
        return tuple(names)
    instances = os.path.join(directory, "instances.json")
    if os.path.isfile(instances):
        with open(instances, encoding="utf-8") as handle:
            try:
                categories = {int(c["id"]): str(c["name"]) for c in json.load(handle).get("categories", [])}
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise DataError(f"{instances}: unreadable categories ({error})") from None
        if categories and min(categories) > 0:
            return ("background",) + tuple(categories.get(i, f"class_{i}") for i in range(1, max(categories) + 1))
    return None


def largest_class_id(pairs, ignore_label=IGNORE_LABEL):
    """The largest class id (ignore label left out) in the readable masks of `pairs`, or 0."""
    largest = 0
    for _, mask in pairs:
        try:
            values = np.unique(read_mask(mask)) if mask is not None else ()
        except ValueError:
            continue  # reported by check_pairs
        values = [int(v) for v in values if v != ignore_label]
        largest = max([largest] + values)
    return largest


def read_mask(path, max_bytes=MAX_FILE_BYTES):
    """A mask file as a uint8 [H, W] array of class ids: a palette PNG's indices (VOC), or a grayscale
    PNG's values. Raises ValueError with the reason when the file is not such a mask."""
    Image = require("PIL.Image", "train")
    data = _read_regular(path, max_bytes)
    if isinstance(data, str):
        raise ValueError(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("P", "L", "I;16", "I"):
                raise ValueError(f"a {image.mode} image is not a mask: masks must be palette (P) or "
                                 "grayscale (L) PNGs of class ids")
            array = np.asarray(image)
    except ValueError:
        raise
    except Exception as error:  # PIL raises many kinds for broken files
        raise ValueError(f"not a readable PNG mask ({type(error).__name__}: {error})") from None
    if array.max(initial=0) > 255:
        raise ValueError(f"class id {int(array.max())} does not fit a uint8 mask")
    return array.astype(np.uint8)


def _image_size(path):
    Image = require("PIL.Image", "train")
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def check_pair(image, mask, num_classes, ignore_label=IGNORE_LABEL, root=None, follow_links=False):
    """A BadFile naming the file and the reason, or None when the pair can be trained on."""
    if mask is None:
        return BadFile(image, "no mask: expected a PNG with the same name stem in the masks folder")
    bad, _ = _check_file(image, root, follow_links)
    if bad is not None:
        return bad
    if root is not None and not follow_links:
        real, top = os.path.realpath(mask), os.path.realpath(root)
        if os.path.commonpath([real, top]) != top:
            return BadFile(mask, f"resolves outside the data folder (to {real}); links out of the folder "
                                 "are skipped unless follow_links=True")
    try:
        array = read_mask(mask)
    except ValueError as error:
        return BadFile(mask, str(error))
    image_size = _image_size(image)
    if array.shape != image_size:
        return BadFile(mask, f"mask size {array.shape[0]}x{array.shape[1]} differs from its image "
                             f"{os.path.basename(image)} ({image_size[0]}x{image_size[1]})")
    values = np.unique(array)
    wrong = values[(values >= num_classes) & (values != ignore_label)]
    if wrong.size:
        return BadFile(mask, f"class id {int(wrong[0])} is not allowed: ids must be in [0, {num_classes}) "
                             f"(num_classes={num_classes}) or the ignore label {ignore_label}")
    return None


def check_pairs(pairs, num_classes, ignore_label=IGNORE_LABEL, strict=False, root=None, follow_links=False):
    """(good pairs, bad files): every pair decoded once; strict=True raises a DataError on the first."""
    good, bad = [], []
    for image, mask in pairs:
        problem = check_pair(image, mask, num_classes, ignore_label, root, follow_links)
        (bad if problem else good).append(problem or (image, mask))
    if strict and bad:
        raise DataError(f"{bad[0].path}: {bad[0].reason} ({len(bad)} bad pair(s) in all; pass strict=False "
                        "to skip them with a report)")
    return good, tuple(bad)


# ----------------------------------------------------------------------------------------- transforms

def augment(image, mask, size, augmentation, ignore_label=IGNORE_LABEL, seed=None):
    """Train transform on one pair: uint8/float image [H, W, 3], integer mask [H, W] -> float32 image
    and int32 mask of `size`, with the same random scale, crop and flip applied to both."""
    height, width = size
    image = tf.cast(image, tf.float32)
    mask = tf.cast(mask, tf.int32)[..., None]
    scale = tf.random.uniform([], *augmentation.scale, seed=seed)
    shape = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
    shape = tf.maximum(shape, 1)
    image = tf.image.resize(image, shape, method="bilinear")
    mask = tf.image.resize(mask, shape, method="nearest")
    pad_h = tf.maximum(height - shape[0], 0)
    pad_w = tf.maximum(width - shape[1], 0)
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    mask = tf.pad(mask - ignore_label, [[0, pad_h], [0, pad_w], [0, 0]]) + ignore_label
    both = tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    both = tf.image.random_crop(both, [height, width, 4], seed=seed)
    if augmentation.flip:
        both = tf.image.random_flip_left_right(both, seed=seed)
    return tf.clip_by_value(both[..., :3], 0.0, 255.0), tf.cast(tf.round(both[..., 3]), tf.int32)


def resize_pair(image, mask, size):
    """Eval transform: image bilinear, mask nearest, to `size`."""
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    mask = tf.image.resize(tf.cast(mask, tf.int32)[..., None], size, method="nearest")[..., 0]
    return tf.clip_by_value(image, 0.0, 255.0), mask


def _load_mask(path):
    return read_mask(path.decode() if isinstance(path, bytes) else str(path))


def _file_pairs(pairs):
    images = np.asarray([p[0] for p in pairs], dtype=object).astype(str)
    masks = np.asarray([p[1] for p in pairs], dtype=object).astype(str)

    def load(image_path, mask_path):
        mask = tf.numpy_function(_load_mask, [mask_path], tf.uint8)
        mask.set_shape([None, None])
        return decode(tf.io.read_file(image_path)), mask

    return tf.data.Dataset.from_tensor_slices((images, masks)).map(load, num_parallel_calls=AUTOTUNE)


def pipeline(pairs, size, batch_size, training, augmentation, ignore_label=IGNORE_LABEL, seed=0,
             buffer_size=1000):
    """(image, mask) dataset -> batched (float32 [B, H, W, 3], int32 [B, H, W]) pipeline."""
    if training:
        pairs = pairs.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    if training and augmentation is not None:
        pairs = pairs.map(lambda x, y: augment(x, y, size, augmentation, ignore_label),
                          num_parallel_calls=AUTOTUNE)
    else:
        pairs = pairs.map(lambda x, y: resize_pair(x, y, size), num_parallel_calls=AUTOTUNE)
    return pairs.batch(batch_size).prefetch(AUTOTUNE)


def _size(image_size):
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or \
            not all(isinstance(s, int) and s >= 32 for s in image_size):
        raise ValueError(f"image_size={image_size!r} is not allowed: image_size must be an integer >= 32 or "
                         "a (height, width) pair of them")
    return tuple(image_size)


def from_segmentation_folder(directory, image_size, num_classes=None, batch_size=8, validation_split=0.1,
                             test_split=0.2, seed=0, augmentation=SegmentationAugmentation(),
                             ignore_label=IGNORE_LABEL, strict=False, follow_links=False, cache=False):
    """Pipelines from a VOC-layout or images/ + masks/ folder: bad pairs found up front, seeded split.

    `num_classes=None`: the folder's class names (`folder_class_names`), else the largest mask value + 1.
    `cache=True` keeps the decoded pairs in memory after the first epoch.
    """
    size = _size(image_size)
    pairs = scan_pairs(directory)
    class_names = folder_class_names(directory)
    if num_classes is None:
        num_classes = len(class_names) if class_names else max(2, largest_class_id(pairs, ignore_label) + 1)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed: num_classes must be an integer >= 2")
    if class_names is not None and len(class_names) != num_classes:
        class_names = None
    pairs, skipped = check_pairs(pairs, num_classes, ignore_label, strict, root=directory,
                                 follow_links=follow_links)
    if not pairs:
        raise DataError(f"{os.fspath(directory)!r} has no usable image + mask pair "
                        f"({len(skipped)} skipped, e.g. {skipped[0].path}: {skipped[0].reason})"
                        if skipped else f"{os.fspath(directory)!r} has no image + mask pairs")
    parts = split_indices(np.zeros(len(pairs), np.int64), (validation_split, test_split), seed)
    names = ("train", "validation", "test")
    datasets, counts, files = {}, {}, {}
    for name, part in zip(names, parts):
        chosen = [pairs[i] for i in part]
        files[name] = chosen
        if not chosen:
            datasets[name] = None
            continue
        counts[name] = len(chosen)
        loaded = _file_pairs(chosen).cache() if cache else _file_pairs(chosen)
        datasets[name] = pipeline(loaded, size, batch_size, name == "train", augmentation,
                                  ignore_label, seed, buffer_size=len(chosen))
    return SegmentationData(num_classes, size, datasets["train"], datasets["validation"], datasets["test"],
                            counts, files, skipped, ignore_label, batch_size, class_names or ())


def from_tfds_segmentation(name, data_dir, image_size, num_classes, splits=("train", None, "test"),
                           image_key="image", mask_key="segmentation_mask", mask_offset=0, batch_size=8,
                           seed=0, augmentation=SegmentationAugmentation(), ignore_label=IGNORE_LABEL):
    """Pipelines from a prepared TFDS dataset with an image and a mask feature (no download).

    `mask_offset` is added to every mask value (oxford_iiit_pet's trimap is 1..3: use -1). Values that
    are then outside [0, num_classes) become the ignore label: a TFDS set has no file to skip.
    """
    tfds = require("tensorflow_datasets", "train")
    size = _size(image_size)
    builder = tfds.builder(name, data_dir=data_dir)
    datasets, counts = {}, {}
    for role, split in zip(("train", "validation", "test"), splits):
        if split is None:
            datasets[role] = None
            continue
        ds = builder.as_dataset(split=split, shuffle_files=False)

        def pair(example):
            image = example[image_key]
            image = tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image[..., :3]
            mask = tf.cast(example[mask_key], tf.int32)
            mask = (mask[..., 0] if mask.shape.rank == 3 else mask) + mask_offset
            valid = (mask >= 0) & (mask < num_classes)
            return image, tf.where(valid, mask, ignore_label)

        try:
            counts[role] = builder.info.splits[split].num_examples
        except KeyError:  # split metadata absent (e.g. under tfds.testing.mock_data)
            counts[role] = None
        datasets[role] = pipeline(ds.map(pair, num_parallel_calls=AUTOTUNE), size, batch_size,
                                  role == "train", augmentation, ignore_label, seed)
    return SegmentationData(num_classes, size, datasets["train"], datasets["validation"], datasets["test"],
                            counts, {}, (), ignore_label, batch_size)
