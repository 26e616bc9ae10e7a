"""The center-size box coder (the Object Detection API's `FasterRcnnBoxCoder`), as TF graph ops.

Boxes are normalized (ymin, xmin, ymax, xmax); codes are (ty, tx, th, tw) scaled by `scales`
(10, 10, 5, 5 in both references): ty = 10 (y - y_a) / h_a, th = 5 log(h / h_a).
"""

import tensorflow as tf

EPSILON = 1e-8  # as the Object Detection API, so zero-size boxes encode without NaN


def center_size(boxes):
    """(ycenter, xcenter, height, width) of [..., 4] corner boxes."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (ymin + ymax) / 2.0, (xmin + xmax) / 2.0, ymax - ymin, xmax - xmin


def encode_boxes(boxes, anchors, scales=(10.0, 10.0, 5.0, 5.0)):
    """Corner boxes [..., A, 4] relative to anchors [A, 4] -> codes [..., A, 4]."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    ya, xa, ha, wa = center_size(anchors)
    y, x, h, w = center_size(boxes)
    ha, wa, h, w = ha + EPSILON, wa + EPSILON, h + EPSILON, w + EPSILON
    sy, sx, sh, sw = scales
    return tf.stack([sy * (y - ya) / ha, sx * (x - xa) / wa, sh * tf.math.log(h / ha),
                     sw * tf.math.log(w / wa)], axis=-1)


def decode_boxes(codes, anchors, scales=(10.0, 10.0, 5.0, 5.0)):
    """Codes [..., A, 4] and anchors [A, 4] -> corner boxes [..., A, 4]."""
    codes = tf.convert_to_tensor(codes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    ya, xa, ha, wa = center_size(anchors)
    ty, tx, th, tw = tf.unstack(codes, axis=-1)
    sy, sx, sh, sw = scales
    h = tf.exp(th / sh) * ha
    w = tf.exp(tw / sw) * wa
    y = ty / sy * ha + ya
    x = tx / sx * wa + xa
    return tf.stack([y - h / 2.0, x - w / 2.0, y + h / 2.0, x + w / 2.0], axis=-1)


def anchors_center_size(anchors):
    """[A, 4] corner anchors -> [A, 4] (ycenter, xcenter, height, width): TFLite's post-processing input."""
    return tf.stack(center_size(tf.convert_to_tensor(anchors, tf.float32)), axis=-1)
