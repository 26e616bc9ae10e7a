"""Bundled real data for demos and tests: scikit-learn's handwritten digits as an image folder, and the
`shapes` detection set (circles, rectangles, triangles on sample photos) as a COCO folder.

1,797 real 8x8 scans written as grayscale PNGs in one subfolder per class, so the class-per-folder path of
the data pipeline is the one that gets exercised.
"""

import contextlib
import os
import shutil
import uuid

import numpy as np

from keras_mobilenets.extras import require

DIGITS_CLASSES = tuple(str(d) for d in range(10))


@contextlib.contextmanager
def _staged_folder(path):
    """Yield a temporary sibling folder of `path`; when the block ends, it replaces `path` (renamed into
    place, so a half-written folder is never seen there); when the block fails, it is removed."""
    staging = f"{path.rstrip(os.sep)}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        os.makedirs(staging)
        yield staging
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
    with _staged_folder(path) as staging:
        for name in DIGITS_CLASSES:
            os.makedirs(os.path.join(staging, name))
        for index, (image, target) in enumerate(zip(pixels, data.target)):
            Image.fromarray(image, mode="L").save(os.path.join(staging, str(target), f"{index:04d}.png"))
    return path


# ------------------------------------------------------------------------------------- shapes

SHAPES_VERSION = 1  # bump when the scenes change, so an old cached folder is not reused


def default_shapes_dir():
    """Where the CLI keeps the shapes folder: $KERAS_HOME/datasets/keras_mobilenets_shapes."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", "keras_mobilenets_shapes")


def _shapes_info(count, image_size, seed):
    return {"description": "keras_mobilenets shapes: circles, rectangles and triangles on photo crops",
            "version": SHAPES_VERSION, "count": count, "image_size": image_size, "seed": seed}


def _shapes_complete(path, info):
    import json

    try:
        with open(os.path.join(path, "instances.json"), encoding="utf-8") as handle:
            written = json.load(handle)
    except (OSError, ValueError):
        return False
    if not isinstance(written, dict) or written.get("info") != info:
        return False
    names = [image.get("file_name") for image in written.get("images", [])]
    return len(names) == info["count"] and all(
        os.path.isfile(os.path.join(path, folder, name)) for name in names for folder in ("images", "masks"))


def shapes(path=None, overwrite=False, count=500, image_size=160, seed=0):
    """Write the bundled detection set: `count` seeded scenes of 1-4 circles, rectangles and triangles.

    The folder is COCO-format: `instances.json` (boxes as x, y, width, height in pixels; each object's
    exact mask as uncompressed RLE in `segmentation`) and `images/<id>.png`, with `masks/<id>.png`
    beside them: the same scenes as class maps (0 background, 1 + class index for each pixel of an
    object) for segmentation. `path=None` uses `default_shapes_dir()`. A complete folder written with
    the same `count`, `image_size` and `seed` is reused as is; anything else at `path` is kept unless
    `overwrite=True`. Writing happens in a temporary sibling folder renamed into place at the end.
    """
    import json

    from keras_mobilenets.data import shapes as scenes

    Image = require("PIL.Image", "train")
    for name, value, low in (("count", count, 1), ("image_size", image_size, 64)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= {low}")
    path = os.fspath(path) if path is not None else default_shapes_dir()
    info = _shapes_info(count, image_size, seed)
    if os.path.exists(path):
        if _shapes_complete(path, info):
            return path
        if not overwrite:
            raise ValueError(f"path={path!r} exists and is not a complete shapes folder with count={count}, "
                             f"image_size={image_size}, seed={seed}; pass overwrite=True to replace it, or "
                             "choose another path")
    rng = np.random.default_rng(seed)
    photos = scenes.background_photos()
    images, annotations = [], []
    with _staged_folder(path) as staging:
        os.makedirs(os.path.join(staging, "images"))
        os.makedirs(os.path.join(staging, "masks"))
        for index in range(count):
            image, labels, boxes, masks = scenes.render_scene(rng, photos, image_size)
            name = f"{index:06d}.png"
            Image.fromarray(image).save(os.path.join(staging, "images", name))
            class_map = np.zeros((image_size, image_size), np.uint8)
            for label, mask in zip(labels, masks):
                class_map[mask] = label + 1
            Image.fromarray(class_map, mode="L").save(os.path.join(staging, "masks", name))
            images.append({"id": index + 1, "file_name": name, "width": image_size, "height": image_size})
            for label, box, mask in zip(labels, boxes, masks):
                annotations.append({
                    "id": len(annotations) + 1, "image_id": index + 1,
                    "category_id": scenes.SHAPES_CATEGORY_IDS[label], "bbox": [int(v) for v in box],
                    "area": int(mask.sum()), "iscrowd": 0,
                    "segmentation": {"size": [image_size, image_size], "counts": scenes.rle_counts(mask)}})
        categories = [{"id": i, "name": n, "supercategory": "shape"}
                      for i, n in zip(scenes.SHAPES_CATEGORY_IDS, scenes.SHAPES_CLASSES)]
        with open(os.path.join(staging, "instances.json"), "w", encoding="utf-8") as handle:
            json.dump({"info": info, "images": images, "annotations": annotations, "categories": categories},
                      handle)
    return path
