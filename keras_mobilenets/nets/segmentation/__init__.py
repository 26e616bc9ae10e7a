"""Segmentation heads (LR-ASPP, Mobile DeepLabv3) as registered blocks, and their public builders."""

from keras_mobilenets.nets.segmentation.heads import DeepLabV3Head, LRASPPHead
from keras_mobilenets.nets.segmentation.models import DeepLabV3, LRASPP
