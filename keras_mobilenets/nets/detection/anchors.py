"""Anchor boxes as numpy arrays: normalized (ymin, xmin, ymax, xmax), SSD's center-size convention.

Order: map by map (largest first), then y, then x, then the anchors of one location; the order the
predictors' Reshape layers emit (nets/detection/blocks.py).
"""

import math

import numpy as np


def _odapi_specs(spec, num_maps):
    """(scale, aspect ratio) per anchor per map: the Object Detection API's `create_ssd_anchors`."""
    scales = [spec.min_scale + (spec.max_scale - spec.min_scale) * i / (num_maps - 1)
              for i in range(num_maps)] + [1.0]
    layers = []
    for k in range(num_maps):
        if k == 0 and spec.reduce_boxes_in_lowest_layer:
            layers.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
            continue
        boxes = [(scales[k], ratio) for ratio in spec.aspect_ratios]
        if spec.interpolated_scale_aspect_ratio > 0:
            boxes.append((math.sqrt(scales[k] * scales[k + 1]), spec.interpolated_scale_aspect_ratio))
        layers.append(boxes)
    return layers


def _odapi_map(rows, cols, boxes, image_size):
    """`grid_anchor_generator.tile_anchors` with stride 1/size, offset half a stride; the base size is
    shrunk on the longer image side so anchors stay square in pixels (MultipleGridAnchorGenerator)."""
    short = min(image_size)
    base_h, base_w = short / image_size[0], short / image_size[1]
    heights = np.array([s / math.sqrt(r) * base_h for s, r in boxes])
    widths = np.array([s * math.sqrt(r) * base_w for s, r in boxes])
    cy = (np.arange(rows) + 0.5) / rows
    cx = (np.arange(cols) + 0.5) / cols
    return _tile(cy, cx, heights, widths)


def _torchvision_map(rows, cols, k, spec, num_maps):
    """torchvision's DefaultBoxGenerator for map k: (s_k, s_k), (s'_k, s'_k), then (w, h), (h, w) per ratio."""
    scales = [spec.min_scale + (spec.max_scale - spec.min_scale) * i / (num_maps - 1.0)
              for i in range(num_maps)] + [1.0]
    s_k, s_prime = scales[k], math.sqrt(scales[k] * scales[k + 1])
    pairs = [(s_k, s_k), (s_prime, s_prime)]
    for ratio in spec.aspect_ratios:
        if ratio <= 1.0:
            continue
        w, h = s_k * math.sqrt(ratio), s_k / math.sqrt(ratio)
        pairs += [(w, h), (h, w)]
    pairs = np.clip(np.array(pairs), 0.0, 1.0)
    cy = (np.arange(rows) + 0.5) / rows
    cx = (np.arange(cols) + 0.5) / cols
    return _tile(cy, cx, pairs[:, 1], pairs[:, 0])


def _tile(cy, cx, heights, widths):
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    centers_y = np.repeat(yy.reshape(-1), len(heights))
    centers_x = np.repeat(xx.reshape(-1), len(heights))
    h = np.tile(heights, yy.size)
    w = np.tile(widths, yy.size)
    return np.stack([centers_y - h / 2, centers_x - w / 2, centers_y + h / 2, centers_x + w / 2], axis=-1)


def ssd_anchors(config):
    """All anchors of a detector as a float32 array [A, 4] (normalized ymin, xmin, ymax, xmax).

    `config` is a `DetectorConfig` (or a model built by `SSDLite`, whose config is found by
    `detector_config`). Not clipped to the image: the Object Detection API does not clip either.
    """
    if not hasattr(config, "feature_map_sizes"):
        from keras_mobilenets.nets.detection.config import detector_config

        config = detector_config(config)
    spec = config.anchor_spec
    sizes = config.feature_map_sizes
    image_size = config.input_shape[:2]
    if spec.kind == "odapi":
        specs = _odapi_specs(spec, len(sizes))
        maps = [_odapi_map(r, c, boxes, image_size) for (r, c), boxes in zip(sizes, specs)]
    else:
        maps = [_torchvision_map(r, c, k, spec, len(sizes)) for k, (r, c) in enumerate(sizes)]
    return np.concatenate(maps, axis=0).astype(np.float32)
