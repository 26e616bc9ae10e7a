"""Training a segmentation model (LR-ASPP, Mobile DeepLabv3) with the classification recipe's `fit`.

`SegmentationTask` is `recipe.fit`'s task hook for per-pixel logits [B, H, W, C] against integer masks
[B, H, W]: sparse cross-entropy that leaves out the ignore label (255), and the kept "best" epoch is the
one with the highest validation mIoU (Keras' MeanIoU with `ignore_class`, accumulated over the whole
validation split, so it is the split's mIoU, not a mean of batch values). `evaluate_segmenter` gives the
held-out numbers of a run (`train.metrics.ConfusionMatrix`: mIoU, per-class IoU, pixel accuracy).
"""

import numpy as np
import tensorflow as tf

from keras_mobilenets.nets.segmentation import LRASPP, DeepLabV3
from keras_mobilenets.train.metrics import IGNORE_LABEL, ConfusionMatrix, segmentation_miou

MONITOR = "val_miou"
# create_segmenter's heads, in words: LR-ASPP (V3 paper); Mobile DeepLabv3 without ASPP (V2 paper, Table 7)
HEADS = {"lraspp": "LR-ASPP", "deeplabv3": "Mobile DeepLabv3"}


def create_segmenter(arch, num_classes, *, head="lraspp", alpha=1.0, image_size=160, minimalistic=False,
                     weights=None, bn_momentum=None, output_stride=16, filters=None, flavor="keras"):
    """A segmentation model on a MobileNet backbone, [0, 255] pixels in, logits out: `head` "lraspp"
    (LR-ASPP, paper preset: reduced tail; `filters` default 128) or "deeplabv3" (Mobile DeepLabv3: the
    image-pooling and 1x1 branches, no ASPP, features of the second-last layer; `filters` default 256)."""
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not allowed: head must be one of {tuple(HEADS)}")
    if bn_momentum is not None and not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum={bn_momentum!r} is not allowed: bn_momentum must be in [0, 1) or None")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    backbone = f"{arch}-minimalistic" if minimalistic and str(arch).startswith("v3") else arch
    common = dict(backbone=backbone, num_classes=num_classes, input_shape=(*size, 3), alpha=alpha,
                  output_stride=output_stride, weights=weights, bn_momentum=bn_momentum, flavor=flavor)
    if head == "deeplabv3":
        return DeepLabV3(aspp=False, filters=filters or 256, **common)
    return LRASPP(filters=filters or 128, **common)


def is_segmenter(model):
    """Whether `model` maps images to per-pixel scores: a 4-D output as wide and high as its input."""
    output, source = tuple(model.outputs[0].shape), tuple(model.inputs[0].shape)
    return len(output) == 4 and output[1:3] == source[1:3]


def compiled_forward(model):
    """`model`'s inference call as one traced function, reused across batches."""
    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def predict_masks(model, images, forward=None):
    """int32 class maps [N, H, W] of `model` on [0, 255] images [N, H, W, 3]."""
    logits = (forward or compiled_forward(model))(tf.convert_to_tensor(images, tf.float32))
    return np.asarray(tf.argmax(logits, axis=-1, output_type=tf.int32))


def evaluate_segmenter(model, dataset, num_classes, ignore_label=IGNORE_LABEL, keep=8, forward=None):
    """({"miou", "per_class_iou", "pixel_accuracy", "pixels", "images"}, the first `keep` (images uint8,
    true masks, predicted masks)) of `model` on an (images, masks) pipeline."""
    forward = forward or compiled_forward(model)
    matrix = ConfusionMatrix(num_classes, ignore_label)
    shown, count = [[], [], []], 0
    for images, masks in dataset:
        predicted = predict_masks(model, images, forward)
        matrix.update(np.asarray(masks), predicted)
        count += len(predicted)
        if sum(len(part) for part in shown[0]) < keep:
            shown[0].append(np.clip(np.asarray(images), 0, 255).astype(np.uint8))
            shown[1].append(np.asarray(masks))
            shown[2].append(predicted)
    result = dict(matrix.result(), images=count, confusion_matrix=matrix.matrix.tolist())
    return result, tuple(np.concatenate(part)[:keep] if part else np.zeros((0,)) for part in shown)


class SegmentationTask:
    """`recipe.fit`'s task hook for a segmentation model (see the module docstring)."""

    name = "segmentation"
    mode = "max"
    jit_compile = False  # (XLA's compile of the upsampling graph cost more than it saved in a short CPU run)

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        self.num_classes = num_classes
        self.ignore_label = ignore_label

    def check(self, model, data):
        classes = model.outputs[0].shape[-1]
        if not is_segmenter(model):
            raise ValueError(f"model {model.name!r} has output shape {tuple(model.outputs[0].shape)}: a "
                             "segmentation run needs per-pixel logits as wide and high as the input (LRASPP, "
                             "DeepLabV3)")
        if classes != data.num_classes:
            raise ValueError(f"model {model.name!r} scores {classes} classes but the data has {data.num_classes}")
        if data.validation is None:
            raise ValueError("validation_split=0 is not allowed for segmentation: the kept epoch is the one "
                             "with the best validation mIoU; give validation_split > 0")

    def prepare(self, dataset, data, distributed):
        if dataset is None or not distributed:
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def monitor(self, has_validation):
        return MONITOR

    def loss(self, keras, label_smoothing):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=self.ignore_label)

    def metrics(self, keras):
        return [segmentation_miou(self.num_classes, self.ignore_label, keras=keras)]

    def callbacks(self, model, data):
        return []
