"""Segmentation metrics from one streaming confusion matrix: mIoU, per-class IoU, pixel accuracy.

Pixels whose true label is `ignore_label` (255, VOC's object borders) count nowhere. A class that
appears neither in the truth nor in the predictions has no IoU (NaN) and is left out of the mean, as in
keras.metrics.MeanIoU and DeepLab's evaluation.
"""

import numpy as np

IGNORE_LABEL = 255


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: truth, columns: prediction) over batches.

    `update(y_true, y_pred)` takes integer masks [..., H, W] and either class ids of the same shape or
    scores / logits with one more axis (argmax taken).
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r} is not allowed: num_classes must be an integer >= 2")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, y_true, y_pred):
        y_true = np.asarray(y_true)
        y_pred = np.asarray(y_pred)
        if y_pred.ndim == y_true.ndim + 1:
            y_pred = y_pred.argmax(-1)
        if y_pred.shape != y_true.shape:
            raise ValueError(f"y_pred with shape {y_pred.shape} is not allowed for y_true of shape "
                             f"{y_true.shape}: give class ids of the same shape or scores with a class axis")
        y_true = y_true.astype(np.int64).ravel()
        y_pred = y_pred.astype(np.int64).ravel()
        valid = y_true != self.ignore_label
        y_true, y_pred = y_true[valid], y_pred[valid]
        bad = (y_true < 0) | (y_true >= self.num_classes)
        if bad.any():
            raise ValueError(f"y_true holds class id {int(y_true[bad][0])}: ids must be in "
                             f"[0, {self.num_classes}) or the ignore label {self.ignore_label}")
        self.matrix += np.bincount(y_true * self.num_classes + np.clip(y_pred, 0, self.num_classes - 1),
                                   minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)
        return self

    def reset(self):
        self.matrix[:] = 0

    def per_class_iou(self):
        """IoU per class; NaN for a class absent from both truth and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def result(self):
        """{"miou", "per_class_iou" (list, None where undefined), "pixel_accuracy", "pixels"}."""
        iou = self.per_class_iou()
        total = int(self.matrix.sum())
        return {
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
            "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
            "pixels": total,
        }


def segmentation_miou(num_classes, ignore_label=IGNORE_LABEL, name="miou", keras=None):
    """A Keras MeanIoU for logits [B, H, W, C] against integer masks [B, H, W] with `ignore_label`
    pixels left out (keras.metrics.MeanIoU's ignore_class), for `model.compile(metrics=...)`; `keras`:
    the model's flavor's module (default Keras 3)."""
    if keras is None:
        import keras

    return keras.metrics.MeanIoU(num_classes=num_classes, ignore_class=ignore_label, sparse_y_true=True,
                                 sparse_y_pred=False, name=name)
