"""The COCO detection metric by pycocotools, on our records and normalized boxes, without its printing.

`coco_evaluate(records, detections, class_names)` builds the ground-truth COCO object in memory from
`BoxRecord`s (pixel boxes from the normalized ones and each image's size; `ignore` objects become crowd
regions, which COCOeval neither rewards nor punishes) and scores the detections with `COCOeval`.
"""

import contextlib
import io

import numpy as np

from keras_mobilenets.extras import require

# COCOeval.stats, in the order `summarize()` fills it
STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "ar_1", "ar_10", "ar_100", "ar_small", "ar_medium", "ar_large")


def _field(item, name):
    """item["boxes"] or item["detection_boxes"] (the Object Detection API's / our serving outputs' names)."""
    if name in item:
        return item[name]
    if "detection_" + name in item:
        return item["detection_" + name]
    raise KeyError(f"detections need {name!r} (or 'detection_{name}'); got keys {sorted(item)}")


def split_detections(batch):
    """Per-image detection dicts from one batched output: {"boxes" or "detection_boxes": [B, K, 4],
    scores, classes, optional num_detections [B]} -> B dicts of numpy arrays, padding cut."""
    boxes, scores, classes = (np.asarray(_field(batch, name)) for name in ("boxes", "scores", "classes"))
    counts = batch.get("num_detections")
    counts = np.full(len(boxes), boxes.shape[1]) if counts is None else np.asarray(counts).reshape(-1)
    return [{"boxes": b[:n], "scores": s[:n], "classes": c[:n].astype(np.int64)}
            for b, s, c, n in zip(boxes, scores, classes, counts.astype(int))]


def _detections_of(item, index):
    """(boxes [K, 4], scores [K], classes [K]) of one image's detections: a dict with "boxes", "scores",
    "classes" (or "detection_boxes", ...; optionally "num_detections", the padded NMS output) or a triple."""
    if isinstance(item, dict):
        boxes, scores, classes = (_field(item, name) for name in ("boxes", "scores", "classes"))
        count = item.get("num_detections")
    else:
        boxes, scores, classes = item
        count = None
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if count is not None:
        count = int(np.asarray(count).reshape(-1)[0])
        boxes, scores, classes = boxes[:count], scores[:count], classes[:count]
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"detections[{index}] has {len(boxes)} boxes, {len(scores)} scores and "
                         f"{len(classes)} classes: give one of each per detection")
    return boxes, scores, classes.astype(np.int64)


def _pixel_boxes(boxes, width, height):
    """Normalized (ymin, xmin, ymax, xmax) -> COCO (x, y, width, height) in pixels."""
    ymin, xmin, ymax, xmax = (boxes * [height, width, height, width]).T
    return np.stack([xmin, ymin, xmax - xmin, ymax - ymin], 1)


def coco_objects(records, detections, class_names):
    """(ground-truth COCO, detections COCO or None) built in memory, category id = class index + 1."""
    COCO = require("pycocotools.coco", "train").COCO

    records, detections = list(records), list(detections)
    if len(records) != len(detections):
        raise ValueError(f"detections has {len(detections)} entries for {len(records)} records: give one "
                         "(possibly empty) set of detections per image, in the records' order")
    images, annotations, results = [], [], []
    for number, (record, item) in enumerate(zip(records, detections), 1):
        images.append({"id": number, "width": record.width, "height": record.height})
        for box, label, ignore in zip(_pixel_boxes(record.boxes.astype(np.float64), record.width,
                                                   record.height), record.classes, record.ignore):
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": int(label) + 1,
                                "bbox": box.tolist(), "area": float(box[2] * box[3]),
                                "iscrowd": int(ignore)})
        boxes, scores, classes = _detections_of(item, number - 1)
        wrong = classes[(classes < 0) | (classes >= len(class_names))]
        if len(wrong):
            raise ValueError(f"detections[{number - 1}] has class {int(wrong[0])}; classes must be indices in "
                             f"[0, {len(class_names)}) of class_names")
        for box, score, label in zip(_pixel_boxes(boxes, record.width, record.height), scores, classes):
            results.append({"image_id": number, "category_id": int(label) + 1, "bbox": box.tolist(),
                            "score": float(score)})
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations,
                     "categories": [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        found = truth.loadRes(results) if results else None
    return truth, found


def coco_evaluate(records, detections, class_names, pr_curve=False):
    """COCO box metrics: {"map" (mAP@[.5:.95]), "map_50", "map_75", "map_small", "map_medium",
    "map_large", "ar_1", "ar_10", "ar_100", "ar_small", ..., "per_class_ap" {name: mAP@[.5:.95]},
    "per_class_ap_50" {name: AP@.5}, "num_images", "num_boxes"}.

    `detections` has one entry per record, in order: a dict with normalized "boxes" [K, 4], "scores"
    [K] and class-index "classes" [K] (an optional "num_detections" cuts padded NMS output; the
    "detection_" names work too, and `split_detections` cuts a batched NMS output into such dicts). A metric
    with no ground truth to score (an area range or a class without boxes) is None, as COCOeval's -1.
    `pr_curve=True` adds "recall" (101 points) and "precision_50" {name: precision at each recall, at
    IoU .5, all areas, 100 detections} for `plot_precision_recall`.
    """
    COCOeval = require("pycocotools.cocoeval", "train").COCOeval

    class_names = tuple(class_names)
    truth, found = coco_objects(records, detections, class_names)
    num_boxes = sum(int((~r.ignore).sum()) for r in records)
    result = {"num_images": len(truth.dataset["images"]), "num_boxes": num_boxes}
    if found is None:  # COCOeval cannot load an empty result list: nothing detected scores 0
        empty = 0.0 if num_boxes else None
        result.update({name: empty for name in STAT_NAMES})
        present = {int(c) for r in records for c, i in zip(r.classes, r.ignore) if not i}
        per_class = {name: (0.0 if k in present else None) for k, name in enumerate(class_names)}
        result.update(per_class_ap=per_class, per_class_ap_50=dict(per_class))
        if pr_curve:
            result.update(recall=np.linspace(0, 1, 101).tolist(),
                          precision_50={name: [0.0] * 101 for name in class_names})
        return result
    evaluation = COCOeval(truth, found, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    result.update({name: (None if value < 0 else float(value))
                   for name, value in zip(STAT_NAMES, evaluation.stats)})
    precision = evaluation.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]

    def mean_valid(values):
        values = values[values > -1]
        return float(values.mean()) if values.size else None

    result["per_class_ap"] = {name: mean_valid(precision[:, :, k, 0, -1]) for k, name in enumerate(class_names)}
    result["per_class_ap_50"] = {name: mean_valid(precision[0, :, k, 0, -1]) for k, name in enumerate(class_names)}
    if pr_curve:
        result["recall"] = evaluation.params.recThrs.tolist()
        result["precision_50"] = {name: np.maximum(precision[0, :, k, 0, -1], 0).tolist()
                                  for k, name in enumerate(class_names)}
    return result
