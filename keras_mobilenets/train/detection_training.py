"""Training an SSDLite detector with the classification recipe's `fit`: the detection task hook.

`DetectionTask` tells `recipe.fit` how a detector differs from a classifier: targets come from
`encode_targets` mapped over the padded ground truth in tf.data, the loss is the SSD pair (Huber on boxes,
focal or hard-negative-mined cross-entropy on classes), and the kept "best" epoch is the one with the
highest validation mAP@.5, computed by pycocotools at each epoch's end (`MapCallback`) and added to the
logs before the checkpoint and CSVLogger read them. Validation loss is not used to pick the epoch: with
focal loss and hard-negative mining it keeps falling while the boxes stop improving, and mAP@.5 is the
number the run is judged by.
"""

import numpy as np
import tensorflow as tf

from keras_mobilenets.data.detection_metrics import coco_evaluate, split_detections
from keras_mobilenets.nets.detection import SSDLite, decode_detections, detector_config, encode_targets, ssd_anchors
from keras_mobilenets.nets.flavors import flavor_of
from keras_mobilenets.train.detection_loss import SSDBoxLoss, SSDClassLoss

MONITOR = "val_map_50"


def default_classification(arch):
    """The class loss the papers' configs use: focal for MobileNetV3 (the Object Detection API's SSDLite
    V3 configs), sigmoid cross-entropy with hard-negative mining for V1/V2 (the V2 paper's SSDLite)."""
    return "focal" if str(arch).startswith("v3") else "sigmoid_hard_negative"


def create_detector(arch, num_classes, *, alpha=1.0, image_size=320, minimalistic=False, weights=None,
                    bn_momentum=None, reduced_tail=False, flavor="keras"):
    """SSDLite (paper preset) on a MobileNet backbone, taking [0, 255] pixels, ready for `fit`.

    `bn_momentum` overrides every BatchNorm's momentum (0.9 suits a short run from scratch).
    """
    if bn_momentum is not None and not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum={bn_momentum!r} is not allowed: bn_momentum must be in [0, 1) or None")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    model = SSDLite(backbone=arch, alpha=alpha, num_classes=num_classes, input_shape=(*size, 3),
                    reduced_tail=reduced_tail, weights=weights, flavor=flavor, minimalistic=minimalistic)
    if bn_momentum is not None:
        for layer in model.layers:
            if type(layer).__name__ == "BatchNormalization":
                layer.momentum = bn_momentum
    return model


def detect(model, images, config=None, max_detections=100, score_threshold=0.01, forward=None):
    """Per-image detections ({"boxes", "scores", "classes"} numpy) of `model` on a batch of [0, 255] images."""
    config = config or detector_config(model)
    outputs = (forward or model)(images, training=False)
    boxes, logits = (outputs["box_encodings"], outputs["class_logits"]) if isinstance(outputs, dict) else outputs
    found = decode_detections(boxes, logits, ssd_anchors(config), max_detections=max_detections,
                              score_threshold=score_threshold, score_converter=config.score_converter,
                              box_scales=config.box_scales)
    return split_detections({k: v.numpy() for k, v in found.items()})


def compiled_forward(model):
    """`model`'s inference call as one traced function (reused across calls: no retracing per epoch)."""
    return tf.function(lambda x, training=False: model(x, training=training), reduce_retracing=True)


def predict_dataset(model, dataset, config=None, max_detections=100, score_threshold=0.01, forward=None):
    """(detections per image, images uint8) of `model` on a (images, ground truth) pipeline, in order."""
    config = config or detector_config(model)
    forward = forward or compiled_forward(model)
    detections, images = [], []
    for batch, _ in dataset:
        detections += detect(model, batch, config, max_detections, score_threshold, forward)
        images.append(np.clip(np.asarray(batch), 0, 255).astype(np.uint8))
    return detections, (np.concatenate(images) if images else np.zeros((0, 1, 1, 3), np.uint8))


def evaluate_detector(model, dataset, records, class_names, pr_curve=False, config=None, forward=None):
    """COCO metrics (`coco_evaluate`) of `model` on an ordered pipeline and its `BoxRecord`s; also
    returns the detections and the images for pictures: (metrics, detections, images)."""
    detections, images = predict_dataset(model, dataset, config, forward=forward)
    if len(detections) != len(records):
        raise ValueError(f"the pipeline gave {len(detections)} images for {len(records)} records: pass the "
                         "split's unshuffled pipeline (data.validation / data.test) with its records")
    return coco_evaluate(records, detections, class_names, pr_curve=pr_curve), detections, images


class DetectionTask:
    """`recipe.fit`'s task hook for an SSDLite detector (see the module docstring)."""

    name = "detection"
    mode = "max"
    # XLA compiled this graph in over two minutes on 2 CPU cores, longer than it saved in a 15-minute run
    jit_compile = False

    def __init__(self, config, classification="focal", negatives_per_positive=3,
                 outputs=("box_encodings", "class_logits")):
        self.config = config
        self.classification = classification
        self.negatives_per_positive = negatives_per_positive
        self.anchors = tf.constant(ssd_anchors(config))
        # the model's output names the targets and losses are keyed by (tfmot's QAT model: "quant_...")
        self.outputs = tuple(outputs)

    def check(self, model, data):
        if detector_config(model).num_classes != data.num_classes:
            raise ValueError(f"model {model.name!r} detects {detector_config(model).num_classes} classes but "
                             f"the data has {data.num_classes} {tuple(data.class_names[:10])}")
        if data.validation is None:
            raise ValueError("validation_split=0 is not allowed for a detector: the kept epoch is the one "
                             "with the best validation mAP@.5; give validation_split > 0")

    def prepare(self, dataset, data, distributed):
        if dataset is None:
            return None
        anchors, (boxes, classes) = self.anchors, self.outputs

        def encode(images, truth):
            targets = tf.map_fn(lambda t: encode_targets(t[0], t[1], anchors),
                                (truth["boxes"], truth["classes"]),
                                fn_output_signature={"box_encodings": tf.float32, "class_logits": tf.int32})
            return images, {boxes: targets["box_encodings"], classes: targets["class_logits"]}

        dataset = dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        if distributed:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
        return dataset

    def monitor(self, has_validation):
        return MONITOR

    def loss(self, keras, label_smoothing):
        """The SSD losses keyed by output (Keras 3 losses; a tf_keras model's compile takes them as functions)."""
        boxes, classes = self.outputs
        return {boxes: SSDBoxLoss(),
                classes: SSDClassLoss(self.classification, negatives_per_positive=self.negatives_per_positive)}

    def metrics(self, keras):
        return None

    def callbacks(self, model, data):
        return [map_callback(model, data.validation, data.records["validation"], data.class_names, self.config)]


def map_callback(model, dataset, records, class_names, config):
    """A callback adding `val_map_50` and `val_map` (COCO, on `dataset`) to each epoch's logs (a callback
    of `model`'s own flavor: Keras 3, or tf_keras for a QAT model)."""
    forward = compiled_forward(model)

    class MapCallback(flavor_of(model).keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            metrics, _, _ = evaluate_detector(model, dataset, records, class_names, config=config,
                                              forward=forward)
            logs["val_map_50"] = float(metrics["map_50"] or 0.0)
            logs["val_map"] = float(metrics["map"] or 0.0)

    return MapCallback()
