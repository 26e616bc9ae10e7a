"""The segmentation side of a TFLite conversion: how far the file's masks are from the Keras model's.

`deploy.tflite.export_tflite` converts a segmentation model like any other (its top-1 agreement is then
the share of pixels whose class agrees); `segmentation_parity` adds what a person judges a segmentation
file by: mIoU against the true masks for both, and the mIoU of the file's masks taken against the Keras
model's masks.
"""

import numpy as np

from keras_mobilenets.deploy.tflite import run_tflite
from keras_mobilenets.train.metrics import IGNORE_LABEL, ConfusionMatrix
from keras_mobilenets.train.segmentation_training import predict_masks


def _pairs(dataset, limit):
    images, masks, count = [], [], 0
    for batch_images, batch_masks in dataset:
        images.append(np.asarray(batch_images, np.float32))
        masks.append(np.asarray(batch_masks))
        count += len(images[-1])
        if limit is not None and count >= limit:
            break
    return np.concatenate(images)[:limit], np.concatenate(masks)[:limit]


def segmentation_parity(model, tflite, dataset, ignore_label=IGNORE_LABEL, limit=64, num_threads=2):
    """{"images", "pixel_agreement", "keras_miou", "tflite_miou", "tflite_vs_keras_miou"} of a TFLite
    file (path or bytes) and its Keras `model` on up to `limit` (image, mask) pairs of `dataset` (None:
    all of them)."""
    images, truths = _pairs(dataset, limit)
    classes = int(model.outputs[0].shape[-1])
    keras_masks = predict_masks(model, images)
    outputs, _ = run_tflite(tflite, images, num_threads)
    tflite_masks = outputs.argmax(-1)

    def miou(truth, predicted):
        return ConfusionMatrix(classes, ignore_label).update(truth, predicted).result()["miou"]

    return {"images": int(len(images)), "pixel_agreement": float((tflite_masks == keras_masks).mean()),
            "keras_miou": miou(truths, keras_masks), "tflite_miou": miou(truths, tflite_masks),
            "tflite_vs_keras_miou": miou(keras_masks, tflite_masks)}
