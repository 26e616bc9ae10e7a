"""Detection on MobileNet backbones: SSDLite / SSD tables, blocks, anchors, box coding and post-processing."""

from keras_mobilenets.nets.detection.anchors import ssd_anchors
from keras_mobilenets.nets.detection.box_coder import decode_boxes, encode_boxes
from keras_mobilenets.nets.detection.config import DetectorConfig, detector_config, is_detector
from keras_mobilenets.nets.detection.postprocess import decode_detections
from keras_mobilenets.nets.detection.spec import (
    DETECTORS,
    AnchorSpec,
    DetectorSpec,
    SSDExtra,
    SSDLiteExtra,
    SSDLitePredictor,
    SSDPredictor,
    reduced_tail,
)
from keras_mobilenets.nets.detection.ssdlite import SSDLite
from keras_mobilenets.nets.detection.targets import encode_targets, iou, match

__all__ = ["DETECTORS", "AnchorSpec", "DetectorConfig", "DetectorSpec", "SSDExtra", "SSDLite", "SSDLiteExtra",
           "SSDLitePredictor", "SSDPredictor", "decode_boxes", "decode_detections", "detector_config",
           "encode_boxes", "encode_targets", "iou", "is_detector", "match", "reduced_tail", "ssd_anchors"]
