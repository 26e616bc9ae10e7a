"""SSD losses on the targets of `encode_targets`: Huber (smooth L1) on matched boxes, and a classification
loss that is either sigmoid focal (RetinaNet's form, as the Object Detection API's SSDLite MobileNetV3
configs use focal loss) or cross-entropy with hard-negative mining at 3 negatives per positive (the
MobileNetV2 paper's SSD; torchvision's softmax).

Both losses are normalized by the number of matched anchors in the batch (`normalize_loss_by_num_matches`),
the box loss also by the code size (`normalize_loc_loss_by_codesize`: the Huber mean over 4 coordinates).
"""

import keras
import tensorflow as tf

CLASSIFICATION = ("focal", "sigmoid_hard_negative", "softmax_hard_negative")


def _normalizer(labels):
    return tf.maximum(tf.reduce_sum(tf.cast(labels > 0, tf.float32)), 1.0)


def box_loss(box_targets, box_encodings, delta=1.0):
    """Per-image Huber loss of positive anchors [B], divided by the batch's positive count."""
    box_targets = tf.convert_to_tensor(box_targets, tf.float32)
    labels = tf.cast(box_targets[..., 4], tf.int32)
    per_anchor = keras.losses.huber(box_targets[..., :4], tf.cast(box_encodings, tf.float32), delta=delta)
    per_image = tf.reduce_sum(per_anchor * tf.cast(labels > 0, tf.float32), axis=-1)
    return per_image / _normalizer(labels)


def hard_negatives(per_anchor, labels, negatives_per_positive=3, min_negatives=3):
    """[B, A] mask of the positives and of each image's top negatives by loss (at most
    `negatives_per_positive` per positive and at least `min_negatives`), as SSD's hard-negative mining."""
    positive = labels > 0
    negative = tf.equal(labels, 0)
    count = tf.reduce_sum(tf.cast(positive, tf.int32), axis=-1, keepdims=True)
    keep = tf.maximum(negatives_per_positive * count, min_negatives)
    ranked = tf.where(negative, per_anchor, -float("inf"))
    order = tf.argsort(ranked, axis=-1, direction="DESCENDING")
    rank = tf.argsort(order, axis=-1)
    return positive | (negative & (rank < keep))


def class_loss(labels, class_logits, classification="focal", alpha=0.25, gamma=2.0,
               negatives_per_positive=3, min_negatives=3):
    """Per-image classification loss [B], divided by the batch's positive count.

    labels [B, A] int (0 background, k + 1 for class k, -1 ignored); class_logits [B, A, classes + 1].
    "focal": sigmoid focal loss over the object slots (RetinaNet: alpha 0.25, gamma 2); a background
    anchor's target is all zeros, and the background slot, whose score every decoder drops, is not
    trained. Training that slot as well (target 1 on every background anchor) made it most of the loss
    and learned about half as fast on `shapes` (BENCHMARKS.md, "Training a detector").
    "sigmoid_hard_negative": sigmoid cross-entropy (ODAPI's SSDLite V2 config) on the
    positives and the hardest negatives; "softmax_hard_negative": softmax cross-entropy the same way
    (torchvision's SSD).
    """
    if classification not in CLASSIFICATION:
        raise ValueError(f"classification={classification!r} is not allowed: classification must be one of "
                         f"{CLASSIFICATION}.")
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(class_logits, tf.float32)
    slots = tf.shape(logits)[-1]
    counted = tf.cast(labels >= 0, tf.float32)
    one_hot = tf.one_hot(tf.maximum(labels, 0), slots)
    size = tf.cast(slots, tf.float32)
    if classification == "focal":
        objects = tf.one_hot(labels - 1, slots - 1)  # background (0) and ignored (-1) anchors: all zeros
        per_anchor = keras.losses.binary_focal_crossentropy(
            objects, logits[..., 1:], apply_class_balancing=True, alpha=alpha, gamma=gamma,
            from_logits=True) * (size - 1.0)
        per_anchor *= counted
    else:
        if classification == "softmax_hard_negative":
            per_anchor = keras.losses.sparse_categorical_crossentropy(tf.maximum(labels, 0), logits,
                                                                      from_logits=True)
        else:
            per_anchor = keras.losses.binary_crossentropy(one_hot[..., None], logits[..., None],
                                                          from_logits=True)
            per_anchor = tf.reduce_sum(per_anchor, axis=-1)
        per_anchor *= counted
        per_anchor *= tf.cast(hard_negatives(tf.stop_gradient(per_anchor), labels, negatives_per_positive,
                                             min_negatives), tf.float32)
    return tf.reduce_sum(per_anchor, axis=-1) / _normalizer(labels)


class SSDBoxLoss(keras.losses.Loss):
    """Keras loss for the `box_encodings` output; y_true is `encode_targets(...)["box_encodings"]`."""

    def __init__(self, delta=1.0, name="ssd_box_loss", **kwargs):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.delta = delta

    def call(self, y_true, y_pred):
        return box_loss(y_true, y_pred, self.delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class SSDClassLoss(keras.losses.Loss):
    """Keras loss for the `class_logits` output; y_true is `encode_targets(...)["class_logits"]`."""

    def __init__(self, classification="focal", alpha=0.25, gamma=2.0, negatives_per_positive=3,
                 min_negatives=3, name="ssd_class_loss", **kwargs):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        if classification not in CLASSIFICATION:
            raise ValueError(f"classification={classification!r} is not allowed: classification must be "
                             f"one of {CLASSIFICATION}.")
        self.classification, self.alpha, self.gamma = classification, alpha, gamma
        self.negatives_per_positive, self.min_negatives = negatives_per_positive, min_negatives

    def call(self, y_true, y_pred):
        return class_loss(y_true, y_pred, self.classification, self.alpha, self.gamma,
                          self.negatives_per_positive, self.min_negatives)

    def get_config(self):
        return {**super().get_config(), "classification": self.classification, "alpha": self.alpha,
                "gamma": self.gamma, "negatives_per_positive": self.negatives_per_positive,
                "min_negatives": self.min_negatives}
