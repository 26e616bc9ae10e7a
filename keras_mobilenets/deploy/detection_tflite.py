"""TFLite files for SSD detectors whose post-processing is TFLite's built-in `TFLite_Detection_PostProcess`.

As the Object Detection API's `export_tflite_graph_lib_tf2.py`: the serving function converts logits to
scores (background column kept), and calls an empty `tf.function` annotated with
`experimental_implements="TFLite_Detection_PostProcess"` on (box encodings, scores, center-size anchors);
the converter (allow_custom_ops) turns that call into the op, which decodes and runs NMS on the phone.
The file's signature returns `detection_boxes` [1, K, 4] (ymin, xmin, ymax, xmax), `detection_classes`
(0-based, float), `detection_scores` and `num_detections`.
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from keras_mobilenets.deploy.tflite import (INT8_MODES, ParityError, _images, non_int8_ops, per_tensor,
                                            plain_interpreter, quantize_input)
from keras_mobilenets.extras import require
from keras_mobilenets.fileio import write_atomic
from keras_mobilenets.nets.detection.anchors import ssd_anchors
from keras_mobilenets.nets.detection.box_coder import anchors_center_size
from keras_mobilenets.nets.detection.config import detector_config

DETECTOR_MODES = ("float32", "int8", "qat-int8")  # float16 / dynamic: not offered for detectors
OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


def check_detector_arguments(mode="float32", output_type="float32"):
    """Raise ValueError for a `mode` or `output_type` a detector's file cannot have (what
    `convert_detector` and `export_detector_tflite` check first; callers that train before converting,
    like QAT, call it before they start)."""
    if mode not in DETECTOR_MODES:
        raise ValueError(f"mode={mode!r} is not allowed for a detector: mode must be one of {DETECTOR_MODES}")
    if output_type != "float32":
        raise ValueError(f"output_type={output_type!r} is not allowed for a detector: output_type must be "
                         "'float32' (TFLite_Detection_PostProcess returns float32 boxes, classes and scores)")


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


def convert_detector(model, mode="float32", representative=None, input_type="float32", per_channel=True,
                     max_detections=10, score_threshold=1e-8, iou_threshold=0.6, use_regular_nms=False,
                     config=None, output_type="float32"):
    """TFLite bytes of a detector built by `SSDLite`, ending in TFLite_Detection_PostProcess.

    `mode`, `representative`, `input_type` and `per_channel` mean what they mean for a classifier
    (`deploy.tflite.convert`): "float32", "int8" (PTQ calibrated on `representative` [0, 255] images) or
    "qat-int8" (a `quantize_model` detector). In the int8 files every conv, the logistic / softmax and the
    concatenations run in int8; the box encodings and scores are dequantized into the post-processing op,
    whose outputs (boxes, classes, scores, count) are float32 in every mode (`output_type` may only be
    "float32"; it is there so that a classifier's call fails with a clear error).

    `use_regular_nms=False` (the Object Detection API's default): the op's fast NMS, one class per box and
    one NMS over all classes. `True`: its regular NMS, per class (up to 100 boxes per class, as the op's
    `detections_per_class` default), what the Keras model's `decode_detections` and the SavedModel run;
    up to K times the NMS work for K classes, but the file's boxes and mAP then compare with Keras's.
    """
    import tensorflow as tf

    from keras_mobilenets.deploy.tflite import convert

    check_detector_arguments(mode, output_type)
    if use_regular_nms not in (True, False):
        raise ValueError(f"use_regular_nms={use_regular_nms!r} is not allowed: pass True or False")
    config = config or detector_config(model)
    anchors = anchors_center_size(ssd_anchors(config)).numpy()

    @tf.function(experimental_implements=postprocess_signature(
        config, max_detections, score_threshold, iou_threshold, use_regular_nms))
    def postprocess(box_encodings, class_predictions, anchors):  # noqa: ARG001  (the op replaces the body)
        zero = tf.constant(0.0, tf.float32)
        return zero, zero, zero, zero

    def endpoint(network):
        def serve(images):
            box_encodings, logits = network(images, training=False)
            scores = tf.sigmoid(logits) if config.score_converter == "sigmoid" else tf.nn.softmax(logits)
            return dict(zip(OUTPUTS, postprocess(box_encodings, scores, tf.constant(anchors))))

        return serve

    return convert(model, mode, representative, input_type, "float32", per_channel=per_channel,
                   endpoint=endpoint, custom_ops=True)


def postprocess_options(content):
    """The attributes of the TFLite_Detection_PostProcess op in a detector file (bytes or a path), as the
    converter wrote them (a dict: max_detections, use_regular_nms, nms_iou_threshold, ...)."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    if not isinstance(content, bytes):
        with open(content, "rb") as handle:
            content = handle.read()
    model = schema.Model.GetRootAsModel(content, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    graph = model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = codes[op.OpcodeIndex()].CustomCode()
        if code is not None and code.decode() == "TFLite_Detection_PostProcess":
            return flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
    raise ValueError("the file has no TFLite_Detection_PostProcess op: pass a file convert_detector wrote")


def safe_threads(content, num_threads):
    """The LiteRT thread count to run a detector file with: 1 for a file with regular NMS.

    LiteRT's multi-threaded regular NMS (ai-edge-litert 2.3.0, `NonMaxSuppressionWorkerTask`) starts its
    shared next-class counter at the thread count and pre-increments it, so with 1 < threads < classes the
    class whose index equals the thread count is never searched (measured: 2 threads, 3 classes, class 2
    missing from every image). One thread takes the single-threaded loop, which searches every class."""
    if num_threads <= 1:
        return num_threads
    try:
        regular = postprocess_options(content).get("use_regular_nms")
    except ValueError:  # a file without the op (not ours): nothing to work around
        return num_threads
    return 1 if regular else num_threads


def run_detector_tflite(content, images, num_threads=2):
    """Detections of a `convert_detector` file on [0, 255] images (one at a time), run with LiteRT; an
    int8 / uint8 input is quantized with the file's own scale; a regular-NMS file runs on one thread
    (`safe_threads`)."""
    Interpreter = require("ai_edge_litert.interpreter", "deploy").Interpreter
    num_threads = safe_threads(content, num_threads)
    kwargs = {"model_content": content} if isinstance(content, bytes) else {"model_path": content}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    runner = interpreter.get_signature_runner("serving_default")
    detail = runner.get_input_details()["images"]
    results = [runner(images=quantize_input(np.asarray(image, np.float32)[None], detail)) for image in images]
    return {name: np.concatenate([r[name] for r in results]) for name in OUTPUTS}


@dataclass
class DetectionParityReport:
    """A detector's TFLite file against its Keras model: each of the file's best `top` detections per image
    (scoring >= `min_score`) is matched to the Keras detection of the same class that overlaps it most."""

    path: str
    mode: str
    size_bytes: int
    samples: int
    compared: int  # TFLite detections compared
    matched: float  # fraction of them with a Keras detection of the same class at IoU >= min_iou
    mean_iou: float  # over the matched ones
    max_score_diff: float  # |TFLite - Keras| score over the matched ones
    min_iou: float
    non_int8_ops: list = field(default_factory=list)
    conversion_seconds: float = 0.0
    nms: str = "fast"  # the post-processing op's NMS: "fast" (one class per box) or "regular" (per class)

    def __str__(self):
        ops = ", ".join(self.non_int8_ops) if self.non_int8_ops else "none"
        return (f"{self.mode}: {self.nms} NMS, {self.size_bytes / 1e6:.2f} MB; {self.matched:.3f} of "
                f"{self.compared} TFLite detections on {self.samples} images matched a Keras box of the same "
                f"class at IoU >= {self.min_iou} (mean IoU {self.mean_iou:.3f}, max |score diff| "
                f"{self.max_score_diff:.4f}); "
                f"ops computing in float: {ops}; converted in {self.conversion_seconds:.1f} s")


def detection_parity(content, reference, images, config, top=5, min_score=0.05, min_iou=0.5, num_threads=2):
    """(compared, matched fraction, mean IoU, max score diff) of a detector file vs `reference` (a Keras
    model of either flavor) on [0, 255] `images`; Keras boxes through `decode_detections` (per-class NMS,
    no clipping, 100 boxes), so every box the file keeps has its Keras counterpart."""
    from keras_mobilenets.nets.detection.postprocess import decode_detections
    from keras_mobilenets.nets.detection.targets import iou

    images = np.asarray(images, np.float32)
    lite = run_detector_tflite(content, images, num_threads)
    box_encodings, logits = reference(images, training=False)
    ours = decode_detections(box_encodings, logits, ssd_anchors(config), max_detections=100,
                             score_converter=config.score_converter, box_scales=config.box_scales,
                             clip_boxes=False)
    ours = {k: np.asarray(v) for k, v in ours.items()}
    overlaps, diffs, compared = [], [], 0
    for b in range(len(images)):
        keep = lite["detection_scores"][b][:top] >= min_score
        boxes = lite["detection_boxes"][b][:top][keep]
        count = int(ours["num_detections"][b])
        if not len(boxes):
            continue
        compared += len(boxes)
        overlap = np.asarray(iou(boxes, ours["detection_boxes"][b][:count])) if count else np.zeros((len(boxes), 0))
        same = lite["detection_classes"][b][:top][keep][:, None] == ours["detection_classes"][b][:count][None]
        overlap = np.where(same, overlap, 0.0)
        for i in range(len(boxes)):
            j = int(np.argmax(overlap[i])) if count else 0
            if count and overlap[i, j] >= min_iou:
                overlaps.append(overlap[i, j])
                diffs.append(abs(lite["detection_scores"][b][:top][keep][i] - ours["detection_scores"][b][j]))
    matched = len(overlaps) / compared if compared else 1.0
    return compared, matched, float(np.mean(overlaps)) if overlaps else 0.0, float(max(diffs, default=0.0))


def export_detector_tflite(model, path, mode="float32", representative=None, sample=None, input_type="float32",
                           per_channel=True, min_match=0.9, overwrite=False, reference=None, config=None,
                           max_detections=10, num_threads=2, output_type="float32", use_regular_nms=False):
    """Convert a detector (`convert_detector`), compare it with `reference` (default: `model`) on `sample`
    (default: the representative images; 32 at most), write `path`; a DetectionParityReport.

    The call raises `ParityError` and writes nothing when fewer than `min_match` of the compared TFLite
    detections have a Keras box of the same class at IoU >= 0.5. `output_type` may only be "float32" (the
    post-processing op's outputs): anything else is a ValueError, raised before anything is converted.
    `use_regular_nms`: per-class NMS in the file (see `convert_detector`).
    """
    check_detector_arguments(mode, output_type)
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it")
    if not 0 <= min_match <= 1:
        raise ValueError(f"min_match={min_match!r} is not allowed: must be in [0, 1]")
    images = _images(sample if sample is not None else representative, 32)
    if images is None:
        raise ValueError("export_detector_tflite needs sample (or representative) images for the parity report")
    config = config or detector_config(model)
    started = time.perf_counter()
    content = convert_detector(model, mode, representative, input_type, per_channel, max_detections,
                               use_regular_nms=use_regular_nms, config=config)
    seconds = time.perf_counter() - started
    compared, matched, mean_iou, score_diff = detection_parity(content, reference or model, images, config,
                                                               num_threads=num_threads)
    quantized = mode in INT8_MODES
    report = DetectionParityReport(
        path=path, mode=f"{mode} per-tensor" if quantized and per_tensor(plain_interpreter(content)) else mode,
        size_bytes=len(content), samples=len(images), compared=compared, matched=matched, mean_iou=mean_iou,
        max_score_diff=score_diff, min_iou=0.5,
        non_int8_ops=non_int8_ops(plain_interpreter(content)) if quantized else [],
        conversion_seconds=round(seconds, 2), nms="regular" if use_regular_nms else "fast")
    if report.matched < min_match:
        raise ParityError(f"TFLite {mode}: {report.matched:.3f} of the detections match the Keras model's, "
                          f"below min_match={min_match}; nothing written. {report}", report)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, content)
    return report
