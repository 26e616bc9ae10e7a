"""TFLite files for SSD detectors whose post-processing is TFLite's built-in `TFLite_Detection_PostProcess`.

As the Object Detection API's `export_tflite_graph_lib_tf2.py`: the serving function converts logits to
scores (background column kept), and calls an empty `tf.function` annotated with
`experimental_implements="TFLite_Detection_PostProcess"` on (box encodings, scores, center-size anchors);
the converter (allow_custom_ops) turns that call into the op, which decodes and runs NMS on the phone.
The file's signature returns `detection_boxes` [1, K, 4] (ymin, xmin, ymax, xmax), `detection_classes`
(0-based, float), `detection_scores` and `num_detections`.
"""

import tempfile

import numpy as np

from keras_mobilenets.extras import require
from keras_mobilenets.nets.detection.anchors import ssd_anchors
from keras_mobilenets.nets.detection.box_coder import anchors_center_size
from keras_mobilenets.nets.detection.config import detector_config

OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


def postprocess_signature(config, max_detections=10, score_threshold=1e-8, iou_threshold=0.6,
                          use_regular_nms=False):
    """The `experimental_implements` text the converter legalizes to TFLite_Detection_PostProcess."""
    y, x, h, w = config.box_scales
    attrs = [("max_detections", "i", int(max_detections)), ("max_classes_per_detection", "i", 1),
             ("use_regular_nms", "b", str(bool(use_regular_nms)).lower()),
             ("nms_score_threshold", "f", float(score_threshold)),
             ("nms_iou_threshold", "f", float(iou_threshold)), ("y_scale", "f", y), ("x_scale", "f", x),
             ("h_scale", "f", h), ("w_scale", "f", w), ("num_classes", "i", config.num_classes)]
    text = ['name: "TFLite_Detection_PostProcess"']
    for key, kind, value in attrs:
        value = f"{value:f}" if kind == "f" else value
        text.append(f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}')
    return " ".join(text)


def convert_detector(model, max_detections=10, score_threshold=1e-8, iou_threshold=0.6,
                     use_regular_nms=False, config=None):
    """Float32 TFLite bytes of a Keras 3 detector built by `SSDLite`, ending in TFLite_Detection_PostProcess."""
    import keras
    import tensorflow as tf

    config = config or detector_config(model)
    anchors = tf.constant(anchors_center_size(ssd_anchors(config)).numpy())
    height, width, channels = config.input_shape

    @tf.function(experimental_implements=postprocess_signature(
        config, max_detections, score_threshold, iou_threshold, use_regular_nms))
    def postprocess(box_encodings, class_predictions, anchors):  # noqa: ARG001  (the op replaces the body)
        zero = tf.constant(0.0, tf.float32)
        return zero, zero, zero, zero

    def serve(images):
        box_encodings, logits = model(images, training=False)
        scores = tf.sigmoid(logits) if config.score_converter == "sigmoid" else tf.nn.softmax(logits)
        boxes, classes, scores, count = postprocess(box_encodings, scores, anchors)
        return dict(zip(OUTPUTS, (boxes, classes, scores, count)))

    with tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve, input_signature=[
            tf.TensorSpec([1, height, width, channels], tf.float32, name="images")])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serving_default"])
        converter.allow_custom_ops = True
        return converter.convert()


def run_detector_tflite(content, images, num_threads=2):
    """Detections of a `convert_detector` file on [0, 255] images (one at a time), run with LiteRT."""
    Interpreter = require("ai_edge_litert.interpreter", "deploy").Interpreter
    kwargs = {"model_content": content} if isinstance(content, bytes) else {"model_path": content}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    runner = interpreter.get_signature_runner("serving_default")
    results = [runner(images=np.asarray(image, np.float32)[None]) for image in images]
    return {name: np.concatenate([r[name] for r in results]) for name in OUTPUTS}
