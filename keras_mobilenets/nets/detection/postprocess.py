"""From raw predictions to detections in the graph: decode boxes, convert logits to scores, NMS.

Detections follow the Object Detection API's output signature: `detection_boxes` [B, K, 4] normalized
(ymin, xmin, ymax, xmax) clipped to the image, `detection_classes` [B, K] (0-based object classes, float
as TF Serving and TFLite return them), `detection_scores` [B, K], `num_detections` [B].
"""

import tensorflow as tf

from keras_mobilenets.nets.detection.box_coder import decode_boxes

SCORE_CONVERTERS = ("sigmoid", "softmax")


def class_scores(class_logits, score_converter="sigmoid"):
    """[B, A, classes + 1] logits -> [B, A, classes] object scores (background column dropped)."""
    if score_converter not in SCORE_CONVERTERS:
        raise ValueError(f"score_converter={score_converter!r} is not allowed: score_converter must be one "
                         f"of {SCORE_CONVERTERS}.")
    logits = tf.convert_to_tensor(class_logits, tf.float32)
    scores = tf.sigmoid(logits) if score_converter == "sigmoid" else tf.nn.softmax(logits, axis=-1)
    return scores[..., 1:]


def decode_detections(box_encodings, class_logits, anchors, max_detections=100, score_threshold=1e-8,
                      iou_threshold=0.6, score_converter="sigmoid", box_scales=(10.0, 10.0, 5.0, 5.0),
                      max_detections_per_class=None, clip_boxes=True):
    """Per-class NMS over all anchors with `tf.image.combined_non_max_suppression`.

    Defaults are the Object Detection API's SSDLite post-processing (score 1e-8, IoU 0.6, 100 boxes,
    sigmoid scores); torchvision's are score 0.001, IoU 0.55, softmax. Pass the model's own
    `detector_config(model).score_converter` and `box_scales`. `clip_boxes` clips to the image (as the
    Object Detection API); TFLite's TFLite_Detection_PostProcess does not clip.
    """
    boxes = decode_boxes(box_encodings, anchors, box_scales)
    scores = class_scores(class_logits, score_converter)
    boxes, scores, classes, count = tf.image.combined_non_max_suppression(
        tf.expand_dims(boxes, 2), scores, max_output_size_per_class=max_detections_per_class or max_detections,
        max_total_size=max_detections, iou_threshold=iou_threshold, score_threshold=score_threshold,
        clip_boxes=clip_boxes)
    return {"detection_boxes": boxes, "detection_classes": classes, "detection_scores": scores,
            "num_detections": count}
