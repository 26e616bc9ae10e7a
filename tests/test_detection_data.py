"""Boxed data: the bundled shapes set, the COCO / VOC / TFDS readers, box-keeping augmentation, the COCO metric."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_mobilenets.data import detection as det
from keras_mobilenets.data.datasets import shapes
from keras_mobilenets.data.detection_metrics import coco_evaluate, split_detections
from keras_mobilenets.data.pipelines import DataError
from keras_mobilenets.data.shapes import SHAPES_CLASSES


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    return shapes(tmp_path_factory.mktemp("shapes") / "shapes", count=24, image_size=96, seed=3)


def _png(path, width, height, colour=(40, 40, 40)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(path)


def _coco(root, images, annotations, categories=({"id": 3, "name": "cat"}, {"id": 7, "name": "dog"})):
    """A COCO folder: images/<name>.png of the given sizes and instances.json."""
    for image in images:
        _png(os.path.join(root, "images", image["file_name"]), image["width"], image["height"])
    payload = {"images": list(images), "annotations": list(annotations), "categories": list(categories)}
    with open(os.path.join(root, "instances.json"), "w") as handle:
        json.dump(payload, handle)
    return str(root)


IMAGES = [{"id": 1, "file_name": "a.png", "width": 200, "height": 100},
          {"id": 2, "file_name": "b.png", "width": 50, "height": 80}]


def _box(annotation_id, image_id, category_id, bbox, **extra):
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


# ------------------------------------------------------------------------------------ shapes

def test_shapes_boxes_and_masks_are_exact_and_the_folder_is_written_once(shapes_dir, tmp_path):
    from pycocotools import mask as mask_utils

    with open(os.path.join(shapes_dir, "instances.json")) as handle:
        payload = json.load(handle)
    assert [c["name"] for c in payload["categories"]] == list(SHAPES_CLASSES)
    assert len(payload["images"]) == 24 and len(payload["annotations"]) >= 24
    per_image = {}
    for annotation in payload["annotations"]:
        per_image.setdefault(annotation["image_id"], []).append(annotation)
    assert {len(v) for v in per_image.values()} <= {1, 2, 3, 4}
    for image in payload["images"]:
        pixels = np.asarray(Image.open(os.path.join(shapes_dir, "images", image["file_name"])))
        class_map = np.asarray(Image.open(os.path.join(shapes_dir, "masks", image["file_name"])))
        covered = np.zeros(class_map.shape, bool)
        for annotation in per_image[image["id"]]:
            mask = mask_utils.decode(mask_utils.frPyObjects(annotation["segmentation"], 96, 96)).astype(bool)
            ys, xs = np.nonzero(mask)
            x, y, w, h = annotation["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # the tight box
            assert annotation["area"] == mask.sum() and not (covered & mask).any()
            assert (class_map[mask] == annotation["category_id"]).all()  # class ids 1, 2, 3 = class index + 1
            assert len(np.unique(pixels[mask], axis=0)) == 1  # one flat colour: the object is exactly its mask
            covered |= mask
        assert (class_map[~covered] == 0).all()
    marker = os.path.join(shapes_dir, "images", "000000.png")
    mtime = os.stat(marker).st_mtime_ns
    assert shapes(shapes_dir, count=24, image_size=96, seed=3) == shapes_dir and os.stat(marker).st_mtime_ns == mtime
    with pytest.raises(ValueError, match="overwrite=True"):
        shapes(shapes_dir, count=25, image_size=96, seed=3)
    again = shapes(tmp_path / "again", count=24, image_size=96, seed=3)
    with open(os.path.join(again, "instances.json")) as handle:
        assert json.load(handle) == payload  # seeded: the same scenes
    assert [p for p in os.listdir(tmp_path) if ".tmp-" in p] == []


def test_shapes_read_back_as_coco_with_nothing_skipped(shapes_dir):
    boxes = det.read_coco(shapes_dir)
    assert boxes.class_names == SHAPES_CLASSES and boxes.category_ids == (1, 2, 3)
    assert len(boxes.records) == 24 and not boxes.skipped and not boxes.notes
    record = boxes.records[0]
    with open(os.path.join(shapes_dir, "instances.json")) as handle:
        first = [a for a in json.load(handle)["annotations"] if a["image_id"] == 1]
    x, y, w, h = first[0]["bbox"]
    np.testing.assert_allclose(record.boxes[0], [y / 96, x / 96, (y + h) / 96, (x + w) / 96], rtol=1e-6)


# ------------------------------------------------------------------------------------ readers

def test_coco_reader_converts_pixel_xywh_and_maps_category_ids(tmp_path):
    root = _coco(tmp_path, IMAGES, [_box(1, 1, 7, [20, 10, 100, 40]), _box(2, 1, 3, [0, 0, 200, 100], iscrowd=1),
                                    _box(3, 2, 3, [5, 8, 10, 16])])
    boxes = det.read_coco(root)
    assert boxes.class_names == ("cat", "dog") and boxes.category_ids == (3, 7)
    a, b = boxes.records
    np.testing.assert_allclose(a.boxes, [[0.1, 0.1, 0.5, 0.6], [0, 0, 1, 1]], rtol=1e-6)
    assert a.classes.tolist() == [1, 0] and a.ignore.tolist() == [False, True] and (a.width, a.height) == (200, 100)
    np.testing.assert_allclose(b.boxes, [[0.1, 0.1, 0.3, 0.3]], rtol=1e-6)


def test_coco_layout_with_annotations_folder_finds_the_image_folder(tmp_path):
    _png(tmp_path / "val2017" / "a.png", 200, 100)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": IMAGES[:1], "annotations": [_box(1, 1, 3, [0, 0, 10, 10])],
         "categories": [{"id": 3, "name": "cat"}]}))
    boxes = det.read_coco(tmp_path)
    assert boxes.records[0].path == str(tmp_path / "val2017" / "a.png") and not boxes.skipped


def test_annotation_file_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "instances.json").write_text("{'images': [")
    with pytest.raises(DataError, match=r"instances.json is not JSON .*'images', 'annotations'"):
        det.read_coco(tmp_path)


@pytest.mark.parametrize("missing", ["images", "annotations"])
def test_annotation_file_without_images_or_annotations_is_refused(tmp_path, missing):
    payload = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    del payload[missing]
    (tmp_path / "instances.json").write_text(json.dumps(payload))
    with pytest.raises(DataError, match=f"instances.json has no '{missing}' list"):
        det.read_coco(tmp_path)


def test_hostile_annotation_and_image_paths_are_refused_without_reading_them(tmp_path):
    os.mkfifo(tmp_path / "instances.json")  # a pipe would block a plain open() forever
    with pytest.raises(DataError, match="instances.json: not a regular file"):
        det.read_coco(tmp_path)
    os.remove(tmp_path / "instances.json")
    _png(tmp_path / "outside.png", 10, 10)
    root = _coco(tmp_path / "set", [{"id": 1, "file_name": "../../outside.png", "width": 10, "height": 10}],
                 [_box(1, 1, 3, [0, 0, 5, 5])])
    boxes = det.read_coco(root)
    assert not boxes.records and "resolves outside the data folder" in boxes.skipped[0].reason


def test_unknown_category_id_skips_the_image_with_a_report_or_raises_in_strict_mode(tmp_path):
    root = _coco(tmp_path, IMAGES, [_box(1, 1, 99, [20, 10, 100, 40]), _box(2, 2, 3, [5, 8, 10, 16])])
    boxes = det.read_coco(root)
    assert [r.path for r in boxes.records] == [os.path.join(root, "images", "b.png")]
    (bad,) = boxes.skipped
    assert bad.path.endswith("a.png") and "category_id 99, which is not in 'categories' (ids [3, 7])" in bad.reason
    assert "a.png" in boxes.report() and "category_id 99" in boxes.report()
    with pytest.raises(DataError, match=r"a.png: annotation id 1 .*category_id 99.*strict"):
        det.read_coco(root, strict=True)


def test_missing_image_file_is_skipped_or_raises_in_strict_mode(tmp_path):
    root = _coco(tmp_path, IMAGES, [_box(1, 1, 3, [20, 10, 100, 40])])
    os.remove(os.path.join(root, "images", "b.png"))
    boxes = det.read_coco(root)
    assert len(boxes.records) == 1 and boxes.skipped[0].path.endswith("b.png")
    assert "unreadable" in boxes.skipped[0].reason
    with pytest.raises(DataError, match="b.png: unreadable"):
        det.read_coco(root, strict=True)


@pytest.mark.parametrize("bbox, reason", [
    ([20, 10, 0, 40], "zero area"),
    ([300, 10, 20, 20], "no area inside the 200x100 image"),
    ([20, 10, float("nan"), 40], "not a finite number"),
    ([20, 10, 30], "a COCO bbox is \\[x, y, width, height\\]"),
])
def test_bad_boxes_skip_their_image(tmp_path, bbox, reason):
    root = _coco(tmp_path, IMAGES, [_box(1, 1, 3, bbox), _box(2, 2, 3, [5, 8, 10, 16])])  # NaN: json's NaN
    boxes = det.read_coco(root)
    assert len(boxes.records) == 1 and boxes.skipped[0].path.endswith("a.png")
    assert re.search(reason, boxes.skipped[0].reason), boxes.skipped[0].reason


def test_box_overhanging_the_image_is_clipped_with_a_note_and_raises_in_strict_mode(tmp_path):
    root = _coco(tmp_path, IMAGES, [_box(1, 1, 3, [150, 50, 100, 100]), _box(2, 2, 3, [-0.4, 0, 50.6, 80.5])])
    boxes = det.read_coco(root)
    np.testing.assert_allclose(boxes.records[0].boxes, [[0.5, 0.75, 1.0, 1.0]])
    np.testing.assert_allclose(boxes.records[1].boxes, [[0, 0, 1, 1]])  # COCO's sub-pixel overhang: silent
    (note,) = boxes.notes
    assert note.path.endswith("a.png") and "sticks out of the 200x100 image by 50 pixels; clipped" in note.reason
    with pytest.raises(DataError, match="a.png: .*sticks out"):
        det.read_coco(root, strict=True)


def test_image_whose_size_disagrees_with_the_annotation_is_skipped(tmp_path):
    root = _coco(tmp_path, IMAGES, [_box(1, 1, 3, [20, 10, 100, 40])])
    _png(os.path.join(root, "images", "a.png"), 100, 100)
    boxes = det.read_coco(root)
    assert boxes.skipped[0].path.endswith("a.png") and "the file is 100x100" in boxes.skipped[0].reason


def _voc(root, name, size, objects, image_size=None):
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    _png(os.path.join(root, "JPEGImages", name), *(image_size or size))
    body = "".join(f"<object><name>{label}</name><difficult>{int(hard)}</difficult><bndbox><xmin>{x1}</xmin>"
                   f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                   for label, (x1, y1, x2, y2), hard in objects)
    xml = (f"<annotation><filename>{name}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
           f"<depth>3</depth></size>{body}</annotation>")
    (root / "Annotations" / (os.path.splitext(name)[0] + ".xml")).write_text(xml)


def test_voc_reader_converts_one_based_inclusive_boxes_and_keeps_difficult_as_ignore(tmp_path):
    _voc(tmp_path, "1.png", (200, 100), [("dog", (21, 11, 120, 50), False), ("cat", (1, 1, 200, 100), True)])
    boxes = det.read_voc(tmp_path)
    assert boxes.class_names == ("cat", "dog") and not boxes.skipped
    (record,) = boxes.records
    np.testing.assert_allclose(record.boxes, [[0.1, 0.1, 0.5, 0.6], [0, 0, 1, 1]], rtol=1e-6)
    assert record.classes.tolist() == [1, 0] and record.ignore.tolist() == [False, True]
    assert det.read_boxes(tmp_path).records[0].path == record.path  # read_boxes sees the VOC layout
    fixed = det.read_voc(tmp_path, class_names=det.VOC_CLASSES)
    assert fixed.records[0].classes.tolist() == [det.VOC_CLASSES.index("dog"), det.VOC_CLASSES.index("cat")]


def test_voc_box_with_x2_below_x1_is_skipped_or_raises_in_strict_mode(tmp_path):
    _voc(tmp_path, "1.png", (200, 100), [("dog", (120, 11, 21, 50), False)])
    _voc(tmp_path, "2.png", (200, 100), [("dog", (21, 11, 120, 50), False)])
    boxes = det.read_voc(tmp_path)
    assert len(boxes.records) == 1 and boxes.skipped[0].path.endswith("1.png")
    assert "x2 < x1" in boxes.skipped[0].reason and "1.xml" in boxes.skipped[0].reason
    with pytest.raises(DataError, match=r"1.png: x2 < x1|1.png: object 1 .*x2 < x1"):
        det.read_voc(tmp_path, strict=True)


def test_voc_xml_that_is_not_xml_is_skipped(tmp_path):
    _voc(tmp_path, "1.png", (200, 100), [("dog", (21, 11, 120, 50), False)])
    (tmp_path / "Annotations" / "2.xml").write_text("<annotation><filename>")
    boxes = det.read_voc(tmp_path)
    assert len(boxes.records) == 1 and "not well-formed XML" in boxes.skipped[0].reason


# ------------------------------------------------------------------------------- augmentation

def test_flip_maps_xmin_to_one_minus_xmax():
    boxes = np.array([[0.1, 0.2, 0.5, 0.7], [0.0, 0.0, 1.0, 0.25]], np.float32)
    np.testing.assert_allclose(det.flip_boxes(boxes), [[0.1, 0.3, 0.5, 0.8], [0.0, 0.75, 1.0, 1.0]], atol=1e-7)


def test_crop_moves_boxes_by_the_offset_clips_them_and_drops_those_whose_centre_leaves():
    boxes = np.array([[0.3, 0.3, 0.5, 0.5],     # inside the crop: moved
                      [0.2, 0.6, 0.6, 0.95],    # centre inside (0.4, 0.775), sticks out on the right: clipped
                      [0.0, 0.0, 0.2, 0.2]], np.float32)  # centre outside: dropped
    classes = np.array([0, 1, 2], np.int32)
    out, kept = det.crop_boxes(boxes, classes, [0.2, 0.2, 0.7, 0.8])  # 0.5 high, 0.6 wide
    assert kept.numpy().tolist() == [0, 1]
    np.testing.assert_allclose(out, [[0.2, 1 / 6, 0.6, 0.5], [0.0, 4 / 6, 0.8, 1.0]], atol=1e-6)


def _scene():
    """A 120x160 gray image with a red box at rows 30-60, columns 40-100, and its normalized box."""
    image = np.full((120, 160, 3), 90, np.uint8)
    image[30:60, 40:100] = (255, 0, 0)
    return image, np.array([[30 / 120, 40 / 160, 60 / 120, 100 / 160]], np.float32)


def _red(image):
    image = np.asarray(image)
    return (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)


def test_pixel_crop_keeps_the_drawn_box_exactly_inside_its_moved_box():
    image, boxes = _scene()
    cropped, out, _ = det.crop_image_and_boxes(tf.constant(image), boxes, np.array([0]), [20, 50, 60, 80])
    ys, xs = np.nonzero(_red(cropped))
    np.testing.assert_allclose(out.numpy()[0] * [60, 80, 60, 80], [10, 0, 40, 50], atol=1e-4)
    assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (10, 0, 40, 50)


def test_random_augmentation_keeps_drawn_pixels_inside_the_box():
    """SSD crop + flip + resize, 40 draws: every red pixel lies in the transformed box (1 pixel of
    resampling slack). Photometric jitter (tested below) is off so that red stays recognisably red."""
    tf.random.set_seed(0)
    image, boxes = _scene()
    augmentation = det.BoxAugmentation(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    flipped = cropped = 0
    for _ in range(40):
        out, new_boxes, _classes = det.augment(tf.constant(image), boxes, np.array([0]), augmentation)
        resized = tf.image.resize(out, (96, 96)).numpy()
        ys, xs = np.nonzero(_red(resized))
        if len(new_boxes) == 0:
            assert len(ys) < 0.2 * 96 * 96  # the box left the crop; at most an edge of red remains
            continue
        ymin, xmin, ymax, xmax = new_boxes.numpy()[0] * 96
        assert ys.min() >= ymin - 1 and ys.max() + 1 <= ymax + 1 and xs.min() >= xmin - 1 and xs.max() + 1 <= xmax + 1
        flipped += abs((xmin + xmax) / 2 / 96 - 0.4375) > abs((xmin + xmax) / 2 / 96 - 0.5625) + 0.01
        cropped += out.shape[:2] != (120, 160)
    assert flipped > 5 and cropped > 5  # both transforms really happened


def test_photometric_jitter_changes_pixels_not_boxes_and_stays_in_range():
    tf.random.set_seed(2)
    image, boxes = _scene()
    geometry_off = det.BoxAugmentation(min_ious=(None,), flip=False)
    out, new_boxes, _ = det.augment(tf.constant(image), boxes, np.array([0]), geometry_off)
    np.testing.assert_array_equal(new_boxes, boxes)
    assert out.shape == image.shape and 0 <= out.numpy().min() and out.numpy().max() <= 255
    assert np.abs(out.numpy() - image).mean() > 1


def test_min_iou_sampler_reaches_its_threshold():
    tf.random.set_seed(1)
    boxes = np.array([[0.2, 0.2, 0.6, 0.5], [0.6, 0.6, 0.9, 0.95]], np.float32)
    augmentation = det.BoxAugmentation(min_ious=(0.7,))
    for _ in range(20):
        top, left, height, width = det.sample_crop(tf.constant([200, 300, 3]), boxes, augmentation).numpy()
        window = np.array([[top / 200, left / 300, (top + height) / 200, (left + width) / 300]], np.float32)
        whole = (top, left, height, width) == (0, 0, 200, 300)
        iou = det.box_iou(window, boxes).numpy()[0]
        assert whole or iou.max() >= 0.7
        assert 0.1 * 200 * 300 * 0.99 <= height * width or whole
    none = det.sample_crop(tf.constant([200, 300, 3]), boxes, det.BoxAugmentation(min_ious=(None,))).numpy()
    assert none.tolist() == [0, 0, 200, 300]


# ---------------------------------------------------------------------------------- pipelines

def test_pipeline_batches_padded_targets_in_record_order_and_splits_without_shared_images(shapes_dir, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(shapes_dir, root)
    payload = json.loads((root / "instances.json").read_text())
    shutil.copy(root / "images" / "000000.png", root / "images" / "twin.png")  # identical bytes, another name
    first = payload["images"][0]
    payload["images"].append({**first, "id": 999, "file_name": "twin.png"})
    payload["annotations"] += [{**a, "id": 10_000 + a["id"], "image_id": 999}
                               for a in payload["annotations"] if a["image_id"] == first["id"]]
    (root / "instances.json").write_text(json.dumps(payload))
    data = det.from_detection_folder(root, 64, batch_size=5, validation_split=0.2, test_split=0.2, seed=1,
                                     max_boxes=6)
    paths = {name: {r.path for r in records} for name, records in data.records.items()}
    assert sum(len(p) for p in paths.values()) == 25 and not (paths["train"] & paths["test"])
    twins = {str(root / "images" / "000000.png"), str(root / "images" / "twin.png")}
    assert any(twins <= p for p in paths.values()) and len(data.duplicates) == 1
    images, targets = next(iter(data.train))
    assert images.shape == (5, 64, 64, 3) and images.dtype == tf.float32
    assert targets["boxes"].shape == (5, 6, 4) and targets["classes"].shape == (5, 6)
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    batches = list(data.test)
    classes = np.concatenate([t["classes"].numpy() for _, t in batches])
    boxes = np.concatenate([t["boxes"].numpy() for _, t in batches])
    for record, row, row_boxes in zip(data.records["test"], classes, boxes):  # evaluation keeps the order
        n = len(record.classes)
        assert row[:n].tolist() == record.classes.tolist() and (row[n:] == -1).all()
        np.testing.assert_allclose(row_boxes[:n], record.boxes)
    assert "train: " in data.report()


def test_tfds_boxes_through_tfds_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        for name, split in (("voc/2007", "test"), ("coco/2017", "validation")):
            examples, class_names, category_ids = det.tfds_examples(name, split)
            assert len(class_names) == (20 if name.startswith("voc") else 80)
            assert category_ids == (None if name.startswith("voc") else det.COCO_CATEGORY_IDS)
            records = det.examples_to_records(examples)
            assert len(records) == 4
            for record in records:
                assert ((record.boxes[:, 2] > record.boxes[:, 0]) & (record.boxes[:, 3] > record.boxes[:, 1])).all()
            pipeline = det.detection_pipeline(examples, 64, batch_size=2, training=True, max_boxes=8)
            images, targets = next(iter(pipeline))
            assert images.shape == (2, 64, 64, 3) and targets["classes"].shape == (2, 8)
    assert len(det.COCO_CATEGORY_IDS) == 80 and det.COCO_CATEGORY_IDS[-1] == 90
    with pytest.raises(DataError, match="'voc/2007' is not prepared in data_dir=.*download=True"):
        det.tfds_examples("voc/2007", "test", data_dir=str(tmp_path))  # no download without asking


# --------------------------------------------------------------------------------- the metric

RECORDS = [det.BoxRecord("a", 200, 100, [[0.1, 0.1, 0.6, 0.6]], [0]),
           det.BoxRecord("b", 200, 100, [[0.2, 0.5, 0.9, 0.9], [0.0, 0.0, 0.5, 0.4]], [1, 0])]
NAMES = ("square", "round", "absent")


def _perfect(records):
    return [{"boxes": r.boxes, "scores": np.ones(len(r.classes)), "classes": r.classes} for r in records]


def test_perfect_detections_score_one_and_an_absent_class_is_none():
    metrics = coco_evaluate(RECORDS, _perfect(RECORDS), NAMES)
    assert metrics["map"] == pytest.approx(1.0) and metrics["map_50"] == pytest.approx(1.0)
    assert metrics["per_class_ap"] == {"square": pytest.approx(1.0), "round": pytest.approx(1.0), "absent": None}
    assert metrics["map_small"] is None and metrics["num_boxes"] == 3


def test_shifted_detections_match_at_iou_thresholds_up_to_their_iou():
    """Each box moved right by a sixth of its width: IoU = (5/6) / (7/6) = 0.714, so it matches at the
    thresholds 0.50, 0.55, ..., 0.70 (5 of 10): mAP = 0.5, mAP@.5 = 1, mAP@.75 = 0."""
    detections = []
    for record in RECORDS:
        shift = (record.boxes[:, 3] - record.boxes[:, 1]) / 6
        moved = record.boxes + np.stack([0 * shift, shift, 0 * shift, shift], 1)
        detections.append({"boxes": moved, "scores": np.full(len(moved), 0.9), "classes": record.classes})
    metrics = coco_evaluate(RECORDS, detections, NAMES)
    assert metrics["map_50"] == pytest.approx(1.0) and metrics["map_75"] == pytest.approx(0.0)
    assert metrics["map"] == pytest.approx(0.5)


def test_missed_class_scores_zero_and_padded_outputs_are_cut():
    detections = [{"boxes": np.zeros((3, 4)), "scores": np.zeros(3), "classes": np.zeros(3), "num_detections": 0},
                  {"boxes": np.concatenate([RECORDS[1].boxes[1:], np.zeros((2, 4))]), "scores": [0.8, 0.1, 0.1],
                   "classes": [0, 1, 1], "num_detections": 1}]
    metrics = coco_evaluate(RECORDS, detections, NAMES)
    assert metrics["per_class_ap"]["round"] == 0.0 and metrics["per_class_ap"]["absent"] is None
    assert metrics["per_class_ap_50"]["square"] == pytest.approx(0.5, abs=0.01)  # 1 of 2 squares found first
    batched = {"detection_boxes": np.stack([d["boxes"] for d in detections]), "num_detections": [0, 1],
               "detection_scores": np.stack([d["scores"] for d in detections]).astype(np.float32),
               "detection_classes": np.stack([d["classes"] for d in detections]).astype(np.float32)}
    split = split_detections(batched)
    assert [len(d["boxes"]) for d in split] == [0, 1] and split[1]["classes"].tolist() == [0]
    assert coco_evaluate(RECORDS, split, NAMES)["per_class_ap_50"] == metrics["per_class_ap_50"]
    nothing = coco_evaluate(RECORDS, [{"boxes": [], "scores": [], "classes": []}] * 2, NAMES)
    assert nothing["map"] == 0.0 and nothing["per_class_ap"] == {"square": 0.0, "round": 0.0, "absent": None}
    with pytest.raises(ValueError, match="detections has 1 entries for 2 records"):
        coco_evaluate(RECORDS, detections[:1], NAMES)


def test_pictures_of_boxes_and_the_precision_recall_curve(tmp_path):
    from keras_mobilenets.train.detection_reports import plot_detections, plot_precision_recall

    image, boxes = _scene()
    found = [{"boxes": boxes, "classes": [0], "scores": [0.9]}]
    path = plot_detections([image], found, NAMES, tmp_path / "boxes.png", truths=[{"boxes": boxes, "classes": [0]}],
                           columns=1)
    assert Image.open(path).size == (300, 300)
    metrics = coco_evaluate(RECORDS, _perfect(RECORDS), NAMES, pr_curve=True)
    assert len(metrics["recall"]) == 101 and metrics["precision_50"]["square"][-1] == pytest.approx(1.0)
    assert Image.open(plot_precision_recall(metrics, tmp_path / "pr.png")).size == (500, 400)
    with pytest.raises(ValueError, match="pr_curve=True"):
        plot_precision_recall(coco_evaluate(RECORDS, _perfect(RECORDS), NAMES), tmp_path / "x.png")
