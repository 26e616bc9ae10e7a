"""Training targets: IoU matching of ground truth to anchors and box encoding, as TF ops for tf.data.

Matching follows the Object Detection API's ArgMaxMatcher as the SSD configs set it (matched and unmatched
threshold 0.5, negatives below, `force_match_for_each_row`): each anchor takes its highest-IoU box when that
IoU >= 0.5, and each box also claims its own best anchor, so no box goes unmatched.
"""

import tensorflow as tf

from keras_mobilenets.nets.detection.box_coder import encode_boxes


def iou(boxes_a, boxes_b):
    """Pairwise IoU [N, M] of corner boxes [N, 4] and [M, 4]."""
    a = tf.expand_dims(tf.convert_to_tensor(boxes_a, tf.float32), 1)
    b = tf.expand_dims(tf.convert_to_tensor(boxes_b, tf.float32), 0)
    height = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    width = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = height * width
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    return tf.where(union > 0.0, intersection / tf.maximum(union, 1e-12), 0.0)


def match(gt_boxes, valid, anchors, threshold=0.5, force_match_for_each_row=True):
    """Index of the matched ground-truth row for every anchor [A], -1 where the anchor is background.

    `valid` [N] marks real rows (padding rows never match).
    """
    similarity = iou(gt_boxes, anchors)  # [N, A]
    similarity = tf.where(valid[:, None], similarity, -1.0)
    best_row = tf.argmax(similarity, axis=0, output_type=tf.int32)
    best_iou = tf.reduce_max(similarity, axis=0)
    matches = tf.where(best_iou >= threshold, best_row, -1)
    if force_match_for_each_row:
        num_anchors = tf.shape(anchors)[0]
        best_column = tf.argmax(similarity, axis=1, output_type=tf.int32)  # [N]
        forced = tf.one_hot(best_column, num_anchors) * tf.cast(valid, tf.float32)[:, None]  # [N, A]
        forced_row = tf.argmax(forced, axis=0, output_type=tf.int32)
        matches = tf.where(tf.reduce_max(forced, axis=0) > 0.0, forced_row, matches)
    # no valid row at all: everything is background (argmax over -1s would pick row 0)
    return tf.where(tf.reduce_any(valid), matches, -tf.ones_like(matches))


def encode_targets(gt_boxes, gt_classes, anchors, threshold=0.5, box_scales=(10.0, 10.0, 5.0, 5.0)):
    """Targets for one image, usable inside `tf.data.Dataset.map`.

    Args:
        gt_boxes: [N, 4] normalized (ymin, xmin, ymax, xmax), padded.
        gt_classes: [N] int32 object classes 0..num_classes-1, -1 on padding rows.
        anchors: [A, 4] from `ssd_anchors`.
    Returns:
        {"box_encodings": [A, 5] (ty, tx, th, tw, label), "class_logits": [A] int32 label}, keyed by the
        model's output names: label 0 is background, k + 1 is class k. Box codes are zero on background.
    """
    # one padding row more, so an image without boxes still gathers from a non-empty tensor
    gt_boxes = tf.concat([tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4]), [[0.0, 0.0, 1.0, 1.0]]], 0)
    gt_classes = tf.concat([tf.reshape(tf.cast(gt_classes, tf.int32), [-1]), [-1]], 0)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    matches = match(gt_boxes, gt_classes >= 0, anchors, threshold)
    positive = matches >= 0
    index = tf.maximum(matches, 0)
    labels = tf.where(positive, tf.gather(gt_classes, index) + 1, 0)
    codes = tf.where(positive[:, None], encode_boxes(tf.gather(gt_boxes, index), anchors, box_scales), 0.0)
    box_targets = tf.concat([codes, tf.cast(labels, tf.float32)[:, None]], axis=-1)
    return {"box_encodings": box_targets, "class_logits": labels}
