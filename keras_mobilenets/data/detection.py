"""Boxed data for detection: readers (COCO folder, Pascal VOC folder, TFDS) into one format, and tf.data.

The one format is a `BoxRecord` per image: its file, size, and boxes as normalized (ymin, xmin, ymax, xmax)
float32 with class indices 0..num_classes-1 (plus an `ignore` flag for COCO crowd regions and VOC
`difficult` objects, which training drops and evaluation neither rewards nor punishes). The readers find
bad images and bad annotations before training, as `pipelines.from_folder` does for classification (the
same file checks): each is skipped with a report naming the file and the reason, or raised as a
`DataError` in strict mode. An image with a bad annotation is skipped whole, because dropping only the box
would teach the model that the object is background. A box that sticks out of the image by more than
`BOX_TOLERANCE` pixels is clipped to the image and reported (it is an error in strict mode); COCO's own
boxes overhang by fractions of a pixel, which is clipped silently.

Pipelines yield `(image float32 [H, W, 3] in [0, 255], {"boxes": [M, 4], "classes": [M]})` with the
ground truth padded to `max_boxes` (class -1 for padding); anchor encoding is left to a `map` by the user.
"""

import json
import math
import os
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_mobilenets.data.pipelines import (
    AUTOTUNE,
    BadFile,
    DataError,
    _check_splits,
    _image_size,
    decode,
    duplicate_groups,
    inspect_image,
    read_data_file,
    split_indices,
)
from keras_mobilenets.extras import require
from keras_mobilenets.fileio import check_label

BOX_TOLERANCE = 1.0  # pixels a box may overhang the image before the clipping is reported
MAX_ANNOTATION_BYTES = 2 * 1024 ** 3  # COCO's instances_train2017.json is 448 MB; images stay at MAX_FILE_BYTES
# COCO 2017's 80 category ids in TFDS coco/2017's label order (the ids skip 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


@dataclass(frozen=True, eq=False)  # arrays inside: records compare by identity
class BoxRecord:
    """One image and its objects: boxes [N, 4] normalized (ymin, xmin, ymax, xmax), classes [N] in
    0..num_classes-1, ignore [N] (crowd / difficult: not trained on, ignored by the COCO metric)."""

    path: str
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray = None
    image_id: int = 0

    def __post_init__(self):
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float32).reshape(-1, 4))
        object.__setattr__(self, "classes", np.asarray(self.classes, np.int32).reshape(-1))
        ignore = np.zeros(len(self.classes), bool) if self.ignore is None else self.ignore
        object.__setattr__(self, "ignore", np.asarray(ignore, bool).reshape(-1))
        if not len(self.boxes) == len(self.classes) == len(self.ignore):
            raise ValueError(f"{self.path}: {len(self.boxes)} boxes, {len(self.classes)} classes and "
                             f"{len(self.ignore)} ignore flags: give one of each per object")


@dataclass
class BoxSet:
    """What a reader found: the usable records, the classes, and what it skipped or changed, and why."""

    records: tuple
    class_names: tuple
    category_ids: tuple = None  # the annotation file's id for each class (COCO), None where there is none
    skipped: tuple = ()  # BadFile(path, reason): images left out, each with the reason
    notes: tuple = ()  # BadFile(path, reason): images kept with a change (a clipped box)
    digests: dict = field(default_factory=dict)  # path -> sha256 of the image bytes

    @property
    def num_classes(self):
        return len(self.class_names)

    def report(self):
        boxes = sum(len(r.classes) for r in self.records)
        lines = [f"{len(self.class_names)} classes; {len(self.records)} images with {boxes} boxes"]
        lines += [f"skipped {bad.path}: {bad.reason}" for bad in self.skipped]
        lines += [f"changed {note.path}: {note.reason}" for note in self.notes]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- checks

class _Problems:
    """Collects what is wrong with images and annotations; in strict mode the first problem raises."""

    def __init__(self, strict, source):
        self.strict, self.source = strict, source
        self.skipped, self.notes = [], []

    def skip(self, path, reason):
        if self.strict:
            raise DataError(f"{path}: {reason} (strict mode: fix it, or pass strict=False to skip such "
                            f"images with a report; annotations from {self.source})")
        self.skipped.append(BadFile(path, reason))

    def note(self, path, reason):
        if self.strict:
            raise DataError(f"{path}: {reason} (strict mode: boxes must lie inside the image, within "
                            f"{BOX_TOLERANCE} pixel; pass strict=False to clip them with a report)")
        self.notes.append(BadFile(path, reason))


def _check_box(x1, y1, x2, y2, width, height, what):
    """(normalized ymin, xmin, ymax, xmax, clip note or None) for a pixel box, or a ValueError saying
    what is wrong with it (`what` names the annotation)."""
    values = (x1, y1, x2, y2)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"{what} has a coordinate that is not a finite number ({values}); boxes are "
                         "pixel coordinates")
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{what}: x2 < x1 or y2 < y1 ({values} as x1, y1, x2, y2); a box needs "
                         "x1 <= x2 and y1 <= y2")
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
        where = "zero area" if x2 - x1 <= 0 or y2 - y1 <= 0 else f"no area inside the {width}x{height} image"
        raise ValueError(f"{what} has {where} ({values} as x1, y1, x2, y2); boxes need a positive width "
                         "and height inside the image")
    overhang = max(-x1, -y1, x2 - width, y2 - height)
    note = None
    if overhang > BOX_TOLERANCE:
        note = (f"{what} ({values} as x1, y1, x2, y2) sticks out of the {width}x{height} image by "
                f"{overhang:g} pixels; clipped to the image")
    return (cy1 / height, cx1 / width, cy2 / height, cx2 / width), note


def _inspect_all(paths, root, follow_links, workers):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: inspect_image(p, root, follow_links), paths))


def _read_annotation_file(path, follow_links=True, root=None):
    data = read_data_file(path, root, follow_links, MAX_ANNOTATION_BYTES)
    if isinstance(data, BadFile):
        raise DataError(f"annotation file {path}: {data.reason}")
    return data


# ------------------------------------------------------------------------------------- COCO

def find_coco_annotations(directory):
    """The annotation file of a COCO folder: `instances.json`, else the one `annotations/instances_*.json`."""
    directory = os.fspath(directory)
    if not os.path.lexists(directory):
        raise DataError(f"data path {directory!r} does not exist")
    if not os.path.isdir(directory):
        return directory  # the annotation file itself (read_data_file refuses pipes and devices)
    top = os.path.join(directory, "instances.json")
    if os.path.lexists(top):
        return top
    folder = os.path.join(directory, "annotations")
    found = sorted(f for f in os.listdir(folder) if f.startswith("instances_") and f.endswith(".json")) \
        if os.path.isdir(folder) else []
    if len(found) == 1:
        return os.path.join(folder, found[0])
    if found:
        raise DataError(f"{folder!r} holds {len(found)} annotation files ({', '.join(found)}): pass the one "
                        "to read as the path")
    raise DataError(f"{directory!r} is not a COCO folder: expected {top} or annotations/instances_*.json")


def _coco_image_dir(annotation_file, image_dir):
    if image_dir is not None:
        return os.fspath(image_dir)
    folder = os.path.dirname(os.path.abspath(annotation_file))
    name = os.path.splitext(os.path.basename(annotation_file))[0]
    if os.path.basename(folder) == "annotations":  # COCO's own layout: annotations/instances_val2017.json
        folder = os.path.dirname(folder)           # with the images in val2017/
        candidates = [os.path.join(folder, name.partition("_")[2]), os.path.join(folder, "images"), folder]
    else:
        candidates = [os.path.join(folder, "images"), folder]
    return next((c for c in candidates if os.path.isdir(c)), candidates[-1])


def _require_list(payload, key, path, what):
    value = payload.get(key)
    if not isinstance(value, list):
        raise DataError(f"annotation file {path} has no {key!r} list ({what}); a COCO annotation file is a "
                        "JSON object with 'images', 'annotations' and 'categories' lists")
    return value


def read_coco(path, image_dir=None, strict=False, follow_links=False, workers=8):
    """Records from a COCO-format folder or annotation file (bbox as x, y, width, height in pixels).

    `path` is a folder holding `instances.json` (or one `annotations/instances_*.json`) or the annotation
    file itself; images are looked up under `image_dir`, else `images/` beside it, else (COCO's layout)
    `val2017/` for `annotations/instances_val2017.json`, else the folder itself. Classes follow the
    categories sorted by id; `category_ids` keeps the ids. Images without annotations are kept (pure
    background); crowd annotations get `ignore=True`. See the module docstring for the checks.
    """
    json_path = find_coco_annotations(path)
    image_dir = _coco_image_dir(json_path, image_dir)
    try:
        payload = json.loads(_read_annotation_file(json_path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"annotation file {json_path} is not JSON ({error}); a COCO annotation file is a "
                        "JSON object with 'images', 'annotations' and 'categories' lists") from None
    if not isinstance(payload, dict):
        raise DataError(f"annotation file {json_path} holds a JSON {type(payload).__name__}; a COCO "
                        "annotation file is a JSON object with 'images', 'annotations' and 'categories'")
    images = _require_list(payload, "images", json_path, "one entry per image: id, file_name, width, height")
    annotations = _require_list(payload, "annotations", json_path,
                                "one entry per box: id, image_id, category_id, bbox [x, y, width, height]")
    categories = _require_list(payload, "categories", json_path, "one entry per class: id, name")
    names = {}
    for category in categories:
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or "name" not in category:
            raise DataError(f"annotation file {json_path}: category {category!r} needs an integer 'id' and "
                            "a 'name'")
        if category["id"] in names:
            raise DataError(f"annotation file {json_path}: category id {category['id']} appears twice; "
                            "category ids must be unique")
        try:
            names[category["id"]] = check_label(category["name"], what="category name")
        except ValueError as error:
            raise DataError(f"annotation file {json_path}: {error}") from None
    if not names:
        raise DataError(f"annotation file {json_path} has an empty 'categories' list; a detector needs at "
                        "least one class")
    category_ids = tuple(sorted(names))
    class_of = {cid: index for index, cid in enumerate(category_ids)}
    problems = _Problems(strict, json_path)

    entries = {}
    for image in images:
        ok = (isinstance(image, dict) and isinstance(image.get("id"), int)
              and isinstance(image.get("file_name"), str) and image["file_name"])
        if not ok:
            problems.skip(json_path, f"image entry {str(image)[:100]} needs an integer 'id' and a 'file_name'")
            continue
        file = os.path.join(image_dir, image["file_name"])
        if image["id"] in entries:
            problems.skip(file, f"image id {image['id']} appears twice in {json_path}; image ids must be unique")
            continue
        entries[image["id"]] = (file, image)
    objects = {image_id: [] for image_id in entries}
    for annotation in annotations:
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in objects:
            problems.skip(json_path, f"annotation {str(annotation)[:100]} refers to image_id {image_id!r}, "
                                     "which is not in 'images'")
            continue
        objects[image_id].append(annotation)

    ids = sorted(entries)
    checked = _inspect_all([entries[i][0] for i in ids], image_dir, follow_links, workers)
    records, digests = [], {}
    for image_id, (bad, digest, shape) in zip(ids, checked):
        file, image = entries[image_id]
        if bad is not None:
            problems.skip(file, bad.reason)
            continue
        height, width = shape
        stated = (image.get("width"), image.get("height"))
        if stated != (None, None) and stated != (width, height):  # absent: the file's own size is used
            problems.skip(file, f"{json_path} gives it width {image.get('width')!r} and height "
                                f"{image.get('height')!r} but the file is {width}x{height}; the boxes "
                                "would not fit it")
            continue
        try:
            boxes, classes, ignore = [], [], []
            for annotation in objects[image_id]:
                what = f"annotation id {annotation.get('id')!r} in {os.path.basename(json_path)}"
                if annotation.get("category_id") not in class_of:
                    raise ValueError(f"{what} has category_id {annotation.get('category_id')!r}, which is not "
                                     f"in 'categories' (ids {list(category_ids)[:20]})")
                bbox = annotation.get("bbox")
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise ValueError(f"{what} has bbox {bbox!r}; a COCO bbox is [x, y, width, height]")
                if not all(_number(v) for v in bbox):
                    raise ValueError(f"{what} has bbox {bbox!r} with a value that is not a finite number; "
                                     "a COCO bbox is [x, y, width, height] in pixels")
                x, y, w, h = bbox
                if w <= 0 or h <= 0:
                    raise ValueError(f"{what} has zero area (bbox {bbox} as x, y, width, height); boxes "
                                     "need a positive width and height")
                box, note = _check_box(x, y, x + w, y + h, width, height, what)
                if note:
                    problems.note(file, note)
                boxes.append(box)
                classes.append(class_of[annotation["category_id"]])
                ignore.append(bool(annotation.get("iscrowd", 0)))
        except ValueError as error:
            problems.skip(file, str(error))
            continue
        records.append(BoxRecord(file, width, height, np.asarray(boxes, np.float32).reshape(-1, 4),
                                 classes, ignore, image_id))
        digests[file] = digest
    return BoxSet(tuple(records), tuple(names[c] for c in category_ids), category_ids,
                  tuple(problems.skipped), tuple(problems.notes), digests)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -------------------------------------------------------------------------------------- VOC

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def _voc_objects(root):
    """(file_name, (width, height) or None, [(name, x1, y1, x2, y2, difficult)]) of one VOC XML file."""
    def text(node, tag):
        child = node.find(tag)
        if child is None or child.text is None:
            raise ValueError(f"has no <{tag}>")
        return child.text.strip()

    def number(node, tag):
        try:
            return float(text(node, tag))
        except ValueError:
            raise ValueError(f"<{tag}> {text(node, tag)!r} is not a number") from None

    file_name = text(root, "filename")
    size = root.find("size")
    dims = (int(number(size, "width")), int(number(size, "height"))) if size is not None else None
    objects = []
    for index, node in enumerate(root.findall("object")):
        box = node.find("bndbox")
        if box is None:
            raise ValueError(f"object {index + 1} has no <bndbox>")
        difficult = node.find("difficult")
        # VOC pixels are 1-based and inclusive: (xmin - 1, ymin - 1, xmax, ymax) in 0-based continuous
        # coordinates, the conversion TFDS's voc builder makes
        objects.append((text(node, "name"), number(box, "xmin") - 1, number(box, "ymin") - 1,
                        number(box, "xmax"), number(box, "ymax"),
                        difficult is not None and (difficult.text or "0").strip() == "1"))
    return file_name, dims, objects


def read_voc(directory, class_names=None, strict=False, follow_links=False, workers=8):
    """Records from a Pascal VOC folder: `Annotations/*.xml` with the images in `JPEGImages/`.

    `class_names` fixes the classes (e.g. `VOC_CLASSES`); an object of another name is then a bad
    annotation. Without it, the classes are the sorted names found. `difficult` objects are kept with
    `ignore=True`, as the VOC metric ignores them.
    """
    directory = os.fspath(directory)
    folder = os.path.join(directory, "Annotations")
    if not os.path.isdir(folder):
        raise DataError(f"{directory!r} is not a Pascal VOC folder: expected {folder} holding *.xml files "
                        "and JPEGImages/ holding the images")
    xml_files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.endswith(".xml") and not f.startswith("."))
    if not xml_files:
        raise DataError(f"{folder!r} holds no .xml annotation files")
    image_dir = os.path.join(directory, "JPEGImages")
    problems = _Problems(strict, folder)
    parsed = []
    for xml_path in xml_files:
        data = read_data_file(xml_path, directory, follow_links)
        if isinstance(data, BadFile):
            problems.skip(xml_path, data.reason)
            continue
        try:
            file_name, dims, objects = _voc_objects(ElementTree.fromstring(data))
        except ElementTree.ParseError as error:
            problems.skip(xml_path, f"not well-formed XML ({error}); a VOC annotation is an <annotation> "
                                    "element with <filename>, <size> and <object>s")
            continue
        except ValueError as error:
            problems.skip(xml_path, f"{error}; a VOC <object> needs <name> and <bndbox> with numeric "
                                    "<xmin>, <ymin>, <xmax>, <ymax>")
            continue
        parsed.append((xml_path, os.path.join(image_dir, file_name), dims, objects))
    if class_names is None:
        class_names = tuple(sorted({name for *_, objects in parsed for name, *_ in objects}))
    class_names = tuple(check_label(n, what="class name") for n in class_names)
    if not class_names:
        raise DataError(f"{folder!r}: no <object> in any annotation, so there are no classes")
    class_of = {name: index for index, name in enumerate(class_names)}
    checked = _inspect_all([p[1] for p in parsed], directory, follow_links, workers)
    records, digests = [], {}
    for index, ((xml_path, file, dims, objects), (bad, digest, shape)) in enumerate(zip(parsed, checked)):
        if bad is not None:
            problems.skip(file, f"{bad.reason} (named by {os.path.basename(xml_path)})")
            continue
        height, width = shape
        if dims is not None and 0 not in dims and dims != (width, height):  # <size> 0 x 0: not stated
            problems.skip(file, f"{xml_path} gives size {dims[0]}x{dims[1]} but the file is {width}x{height}; "
                                "the boxes would not fit it")
            continue
        try:
            boxes, classes, ignore = [], [], []
            for number, (name, x1, y1, x2, y2, difficult) in enumerate(objects, 1):
                what = f"object {number} ({name!r}) in {os.path.basename(xml_path)}"
                if name not in class_of:
                    raise ValueError(f"{what} has a class not in class_names ({', '.join(class_names)})")
                box, note = _check_box(x1, y1, x2, y2, width, height, what)
                if note:
                    problems.note(file, note)
                boxes.append(box)
                classes.append(class_of[name])
                ignore.append(difficult)
        except ValueError as error:
            problems.skip(file, str(error))
            continue
        records.append(BoxRecord(file, width, height, np.asarray(boxes, np.float32).reshape(-1, 4),
                                 classes, ignore, index + 1))
        digests[file] = digest
    return BoxSet(tuple(records), class_names, None, tuple(problems.skipped), tuple(problems.notes), digests)


def read_boxes(path, strict=False, follow_links=False, class_names=None):
    """A COCO folder or annotation file, or a VOC folder (`Annotations/`), whichever `path` is."""
    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, "Annotations")):
        return read_voc(path, class_names, strict, follow_links)
    return read_coco(path, strict=strict, follow_links=follow_links)


# ------------------------------------------------------------------------------- augmentation

@dataclass(frozen=True)
class BoxAugmentation:
    """SSD's train-time augmentation (Liu et al. 2016, Sec. 2.2 and its code): a random crop whose
    IoU with some object is at least a threshold drawn from `min_ious` (None: the whole image), of
    `crop_area` of the image and `crop_aspect` width/height; a horizontal flip; photometric jitter
    (brightness delta in 0-1 units, contrast and saturation factors in 1 +- x, hue delta in turns)."""

    min_ious: tuple = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
    crop_area: tuple = (0.1, 1.0)
    crop_aspect: tuple = (0.5, 2.0)
    attempts: int = 50
    flip: bool = True
    brightness: float = 32 / 255
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 18 / 360

    def __post_init__(self):
        if not self.min_ious or any(v is not None and not 0 <= v <= 1 for v in self.min_ious):
            raise ValueError(f"min_ious={self.min_ious!r} is not allowed: give IoU thresholds in [0, 1] "
                             "or None (keep the whole image)")
        if not 0 < self.crop_area[0] <= self.crop_area[1] <= 1:
            raise ValueError(f"crop_area={self.crop_area!r} is not allowed: (min, max) with 0 < min <= max <= 1")
        if not 0 < self.crop_aspect[0] <= self.crop_aspect[1]:
            raise ValueError(f"crop_aspect={self.crop_aspect!r} is not allowed: (min, max) with 0 < min <= max")
        for name, top in (("brightness", 1), ("contrast", 1), ("saturation", 1), ("hue", 0.5)):
            if not 0 <= getattr(self, name) < top:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: {name} must be in [0, {top})")


def box_iou(a, b):
    """IoU matrix [A, B] of normalized (ymin, xmin, ymax, xmax) boxes."""
    a, b = a[:, None, :], b[None, :, :]
    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / tf.maximum(area(a) + area(b) - inter, 1e-12)


def crop_boxes(boxes, classes, window):
    """Boxes in the coordinates of the crop `window` (normalized ymin, xmin, ymax, xmax of the image):
    boxes whose centre is outside the window are dropped (SSD), the others clipped to it."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    window = tf.convert_to_tensor(window, tf.float32)
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2
    keep = ((centre_y > window[0]) & (centre_y < window[2]) & (centre_x > window[1]) & (centre_x < window[3]))
    boxes, classes = tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)
    low, high = tf.tile(window[:2], [2]), tf.tile(window[2:], [2])
    boxes = (tf.clip_by_value(boxes, low, high) - low) / tf.tile(window[2:] - window[:2], [2])
    return boxes, classes


def flip_boxes(boxes):
    """Boxes of the left-right mirrored image: xmin -> 1 - xmax, xmax -> 1 - xmin."""
    ymin, xmin, ymax, xmax = tf.unstack(tf.convert_to_tensor(boxes, tf.float32), axis=-1)
    return tf.stack([ymin, 1 - xmax, ymax, 1 - xmin], axis=-1)


def sample_crop(shape, boxes, augmentation):
    """(top, left, height, width) in pixels of SSD's min-IoU crop for an image of `shape` (H, W, ...).

    `augmentation.attempts` candidates are drawn at once (area and width/height aspect in the ranges,
    placed uniformly); the first that lies in the image, keeps some box centre and reaches the drawn IoU
    threshold with one of those boxes is taken; none (or the threshold None) keeps the whole image.
    `tf.image.sample_distorted_bounding_box` is not used: its `min_object_covered` is the covered
    fraction of a box (the Object Detection API's sampler), not the paper's IoU.
    """
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    thresholds = tf.constant([-1.0 if v is None else float(v) for v in augmentation.min_ious])
    min_iou = thresholds[tf.random.uniform([], 0, len(augmentation.min_ious), tf.int32)]
    count = augmentation.attempts
    area = tf.random.uniform([count], *augmentation.crop_area)
    aspect = tf.exp(tf.random.uniform([count], math.log(augmentation.crop_aspect[0]),
                                      math.log(augmentation.crop_aspect[1])))
    crop_w = tf.round(tf.sqrt(area * aspect * height * width))  # pixels: crop_w / crop_h = aspect
    crop_h = tf.round(tf.sqrt(area / aspect * height * width))
    inside = (crop_w >= 1) & (crop_h >= 1) & (crop_w <= width) & (crop_h <= height)
    top = tf.floor(tf.random.uniform([count]) * (tf.maximum(height - crop_h, 0) + 1))
    left = tf.floor(tf.random.uniform([count]) * (tf.maximum(width - crop_w, 0) + 1))
    windows = tf.stack([top / height, left / width, (top + crop_h) / height, (left + crop_w) / width], 1)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    centre_y, centre_x = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    centred = ((centre_y[None] > windows[:, 0:1]) & (centre_y[None] < windows[:, 2:3])
               & (centre_x[None] > windows[:, 1:2]) & (centre_x[None] < windows[:, 3:4]))
    iou = tf.where(centred, box_iou(windows, boxes), -1.0)
    good = inside & tf.reduce_any(centred, 1) & (tf.reduce_max(tf.concat([iou, -tf.ones([count, 1])], 1), 1)
                                                  >= min_iou)
    found = tf.reduce_any(good) & (min_iou >= 0)
    pick = tf.argmax(tf.cast(good, tf.int32), output_type=tf.int32)
    whole = tf.stack([0, 0, tf.cast(shape[0], tf.int32), tf.cast(shape[1], tf.int32)])
    chosen = tf.cast(tf.stack([top[pick], left[pick], crop_h[pick], crop_w[pick]]), tf.int32)
    return tf.where(found, chosen, whole)


def crop_image_and_boxes(image, boxes, classes, crop):
    """Cut `crop` (top, left, height, width in pixels) out of `image` and move the boxes with it."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    crop_f = tf.cast(crop, tf.float32)
    window = tf.stack([crop_f[0] / shape[0], crop_f[1] / shape[1],
                       (crop_f[0] + crop_f[2]) / shape[0], (crop_f[1] + crop_f[3]) / shape[1]])
    image = tf.image.crop_to_bounding_box(image, crop[0], crop[1], crop[2], crop[3])
    boxes, classes = crop_boxes(boxes, classes, window)
    return image, boxes, classes


def photometric(image, augmentation):
    """Brightness, contrast, saturation and hue jitter of a float [0, 255] RGB image, clipped back."""
    image = image / 255.0
    if augmentation.brightness:
        image = tf.image.random_brightness(image, augmentation.brightness)
    if augmentation.contrast:
        image = tf.image.random_contrast(image, 1 - augmentation.contrast, 1 + augmentation.contrast)
    image = tf.clip_by_value(image, 0.0, 1.0)
    if augmentation.saturation:
        image = tf.image.random_saturation(image, 1 - augmentation.saturation, 1 + augmentation.saturation)
    if augmentation.hue:
        image = tf.image.random_hue(image, augmentation.hue)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def augment(image, boxes, classes, augmentation):
    """SSD augmentation of one image (uint8 or float [0, 255]) with its normalized boxes."""
    image = tf.cast(image, tf.float32)
    crop = sample_crop(tf.shape(image), boxes, augmentation)
    image, boxes, classes = crop_image_and_boxes(image, boxes, classes, crop)
    if augmentation.flip:
        flip = tf.random.uniform([]) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        boxes = tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes)
    return photometric(image, augmentation), boxes, classes


def pad_boxes(boxes, classes, max_boxes):
    """Ground truth of fixed size: the first `max_boxes` boxes, then zeros with class -1."""
    boxes, classes = boxes[:max_boxes], tf.cast(classes[:max_boxes], tf.int32)
    missing = max_boxes - tf.shape(boxes)[0]
    boxes = tf.pad(boxes, [[0, missing], [0, 0]])
    classes = tf.pad(classes, [[0, missing]], constant_values=-1)
    return tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(classes, [max_boxes])


def _prepare(example, size, max_boxes, augmentation):
    """{image, boxes, classes, ignore} -> (float image [size], {"boxes", "classes"}) padded."""
    keep = tf.logical_not(example["ignore"])
    boxes, classes = tf.boolean_mask(example["boxes"], keep), tf.boolean_mask(example["classes"], keep)
    image = tf.cast(example["image"], tf.float32)
    if augmentation is not None:
        image, boxes, classes = augment(image, boxes, classes, augmentation)
    image = tf.clip_by_value(tf.image.resize(image, size, method="bilinear", antialias=True), 0.0, 255.0)
    boxes, classes = pad_boxes(boxes, classes, max_boxes)
    return image, {"boxes": boxes, "classes": classes}


def record_dataset(records):
    """tf.data of {"image": uint8 [H, W, 3], "boxes", "classes", "ignore"} read from the records' files."""
    records = list(records)
    rows = [len(r.classes) for r in records]
    boxes = tf.RaggedTensor.from_row_lengths(
        np.concatenate([r.boxes for r in records] + [np.zeros((0, 4), np.float32)]), rows)
    classes = tf.RaggedTensor.from_row_lengths(
        np.concatenate([r.classes for r in records] + [np.zeros(0, np.int32)]), rows)
    ignore = tf.RaggedTensor.from_row_lengths(np.concatenate([r.ignore for r in records] + [np.zeros(0, bool)]),
                                              rows)
    paths = np.asarray([r.path for r in records], dtype=object).astype(str)
    source = tf.data.Dataset.from_tensor_slices((paths, boxes, classes, ignore))
    return source.map(lambda path, b, c, i: {"image": decode(tf.io.read_file(path)), "boxes": b,
                                             "classes": c, "ignore": i}, num_parallel_calls=AUTOTUNE)


def detection_pipeline(examples, image_size, batch_size=32, training=False, augmentation=BoxAugmentation(),
                       max_boxes=100, shuffle_seed=None, buffer_size=1000, cache=False):
    """Batches of (float32 images [B, H, W, 3] in [0, 255], {"boxes": [B, max_boxes, 4], "classes":
    [B, max_boxes]}) from a dataset of {"image", "boxes", "classes", "ignore"} examples.

    Training shuffles and augments (`augmentation=None`: resize only); evaluation keeps the order, so
    the n-th image is the n-th record. Ignored (crowd / difficult) boxes are left out of the targets.
    """
    size = _image_size(image_size)
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
        raise ValueError(f"max_boxes={max_boxes!r} is not allowed: max_boxes must be a positive integer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: batch_size must be a positive integer")
    if augmentation is not None and not isinstance(augmentation, BoxAugmentation):
        raise ValueError(f"augmentation={augmentation!r} is not allowed: a BoxAugmentation(...) or None")
    if cache:
        examples = examples.cache(cache if isinstance(cache, str) else "")
    if training:
        examples = examples.shuffle(buffer_size, seed=shuffle_seed, reshuffle_each_iteration=True)
    aug = augmentation if training else None
    examples = examples.map(lambda e: _prepare(e, size, max_boxes, aug), num_parallel_calls=AUTOTUNE)
    return examples.batch(batch_size, drop_remainder=False).prefetch(AUTOTUNE)


# ---------------------------------------------------------------------------------- data sets

@dataclass
class DetectionData:
    """Train / validation / test pipelines, the records of each split (for `coco_evaluate`), and the report."""

    class_names: tuple
    category_ids: tuple
    image_size: tuple
    max_boxes: int
    batch_size: int
    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    records: dict
    skipped: tuple = ()
    notes: tuple = ()
    duplicates: tuple = ()

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def counts(self):
        return {name: len(records) for name, records in self.records.items() if records}

    def report(self):
        lines = [f"{self.num_classes} classes; " + ", ".join(
            f"{name}: {n} images, {sum(len(r.classes) for r in self.records[name])} boxes"
            for name, n in self.counts.items())]
        lines += [f"skipped {bad.path}: {bad.reason}" for bad in self.skipped]
        lines += [f"changed {note.path}: {note.reason}" for note in self.notes]
        crowded = sum(len(r.classes) > self.max_boxes for rs in self.records.values() for r in rs)
        if crowded:
            lines.append(f"{crowded} image(s) have more than max_boxes={self.max_boxes} boxes; the first "
                         f"{self.max_boxes} are kept")
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} group(s) of identical images, each kept in one split")
        return "\n".join(lines)


def from_boxes(boxes, image_size, batch_size=32, validation_split=0.1, test_split=0.2, seed=0,
               augmentation=BoxAugmentation(), max_boxes=100, cache=False):
    """Seeded train / validation / test pipelines from a `BoxSet` (as `read_coco` / `read_voc` give).

    Images with identical bytes stay in one split, so no image is in two splits.
    """
    _check_splits(validation_split, test_split)
    records = list(boxes.records)
    if not records:
        raise DataError("no usable images: " + (boxes.report() if boxes.skipped else "the data set is empty"))
    digests = boxes.digests or {}
    groups = [digests.get(r.path, r.path) for r in records]
    parts = split_indices(np.zeros(len(records), np.int64), (validation_split, test_split), seed, groups=groups)
    split_records = {name: tuple(records[i] for i in part)
                     for name, part in zip(("train", "validation", "test"), parts)}
    if not split_records["train"]:
        raise DataError(f"{len(records)} usable image(s) leave none for training with validation_split="
                        f"{validation_split} and test_split={test_split}")
    pipelines = {}
    for name, subset in split_records.items():
        if not subset:
            pipelines[name] = None
            continue
        pipelines[name] = detection_pipeline(record_dataset(subset), image_size, batch_size, name == "train",
                                             augmentation, max_boxes, seed, min(len(subset), 10_000), cache)
    files = [r.path for r in records]
    duplicates = duplicate_groups(files, {f: digests.get(f, f) for f in files})
    return DetectionData(tuple(boxes.class_names), boxes.category_ids, _image_size(image_size), max_boxes,
                         batch_size, pipelines["train"], pipelines["validation"], pipelines["test"],
                         split_records, tuple(boxes.skipped), tuple(boxes.notes), duplicates)


def from_detection_folder(path, image_size, batch_size=32, validation_split=0.1, test_split=0.2, seed=0,
                          augmentation=BoxAugmentation(), max_boxes=100, strict=False, follow_links=False,
                          class_names=None, cache=False):
    """`read_boxes(path)` (COCO or VOC folder) then `from_boxes`: the one call for a folder of boxed photos."""
    boxes = read_boxes(path, strict=strict, follow_links=follow_links, class_names=class_names)
    return from_boxes(boxes, image_size, batch_size, validation_split, test_split, seed, augmentation,
                      max_boxes, cache)


# ------------------------------------------------------------------------------------- TFDS

def tfds_examples(name, split, data_dir=None, download=False):
    """(dataset of {"image", "boxes", "classes", "ignore"}, class_names, category_ids) from TFDS
    `coco/2017` (crowd regions ignored, category ids COCO's) or `voc/2007` (difficult objects ignored).

    TFDS boxes are already normalized (ymin, xmin, ymax, xmax). Boxes with no area are dropped; sequence
    features of unequal length (only TFDS mock data has them) are cut to the shortest.
    """
    tfds = require("tensorflow_datasets", "train")

    family = name.split("/")[0]
    if family not in ("coco", "voc"):
        raise ValueError(f"name={name!r} is not allowed: tfds_examples reads 'coco/<config>' and 'voc/<config>'")
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    class_names = tuple(builder.info.features["objects"]["label"].names)
    flag = "is_crowd" if family == "coco" else "is_difficult"
    category_ids = COCO_CATEGORY_IDS if family == "coco" and len(class_names) == 80 else None

    def convert(example):
        objects = example["objects"]
        count = tf.reduce_min([tf.shape(objects["bbox"])[0], tf.shape(objects["label"])[0],
                               tf.shape(objects[flag])[0]])
        boxes = tf.clip_by_value(objects["bbox"][:count], 0.0, 1.0)
        classes = tf.cast(objects["label"][:count], tf.int32)
        ignore = objects[flag][:count]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        image = example["image"]
        image.set_shape([None, None, 3])
        return {"image": image, "boxes": tf.boolean_mask(boxes, valid),
                "classes": tf.boolean_mask(classes, valid), "ignore": tf.boolean_mask(ignore, valid)}

    try:
        examples = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError as error:  # TFDS's way of saying the data is not there
        raise DataError(f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} ({error}); prepare "
                        "it on a machine with network access (tfds.builder(name, data_dir=...)"
                        ".download_and_prepare()) or pass download=True") from None
    return examples.map(convert, num_parallel_calls=AUTOTUNE), class_names, category_ids


def examples_to_records(examples, limit=None):
    """BoxRecords (path = "", width and height from the image) of a TFDS example dataset, e.g. for
    `coco_evaluate` on a TFDS split; in the dataset's order."""
    records = []
    for index, example in enumerate(examples.take(limit) if limit else examples):
        height, width = example["image"].shape[:2]
        records.append(BoxRecord("", int(width), int(height), example["boxes"].numpy(),
                                 example["classes"].numpy(), example["ignore"].numpy(), index + 1))
    return tuple(records)
