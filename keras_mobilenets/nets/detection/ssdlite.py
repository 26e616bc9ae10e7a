"""`SSDLite`: a MobileNet backbone table + a `DetectorSpec`, built as ONE flat functional graph.

The backbone comes from the one builder loop (nets/builder.py); this module taps two of its tensors as the
Object Detection API does (the expansion output of the first stride-32 block, and the last layer), runs the
spec's extra rows and its predictor row through the block registry, and concatenates the predictions.
Outputs: `box_encodings` [B, A, 4] (ty, tx, th, tw; center-size coder with `box_scales`) and `class_logits`
[B, A, num_classes + 1] (background at index 0), maps in order from the stride-16 tap to the smallest.
"""

import numbers
from dataclasses import replace

from keras_mobilenets.nets import validation
from keras_mobilenets.nets.architectures import ARCHITECTURES
from keras_mobilenets.nets.builder import BlockInfo, block_info, build, set_block_info
from keras_mobilenets.nets.detection import blocks as _detection_blocks  # noqa: F401  (registers them)
from keras_mobilenets.nets.detection.config import DetectorConfig
from keras_mobilenets.nets.detection.spec import DETECTORS, HEADS, PRESETS, DetectorSpec
from keras_mobilenets.nets.detection.spec import reduced_tail as reduced_tail_table
from keras_mobilenets.nets.flavors import FLAVORS, get_flavor
from keras_mobilenets.nets.registry import get_block
from keras_mobilenets.nets.spec import Architecture
from keras_mobilenets.nets.weights import load_weights, resolve_imagenet

BACKBONES = ("v1", "v2", "v3-large", "v3-small")
MIN_SIZE = 33  # the Object Detection API's check_min_image_dim(33): the stride-32 tap is at least 2x2


class DetectionContext:
    """What a detection block may use: the flavor's layers, the map it works on, widths, BN, initializers."""

    def __init__(self, spec, flavor, alpha, num_classes):
        self.spec = spec
        self.flavor = flavor
        self.keras = flavor.keras
        self.layers = flavor.layers
        self.alpha = alpha
        self.num_classes = num_classes  # class slots, background included
        self.map_index = None
        self.anchors = None

    def depth(self, filters):
        """Extra-layer width: max(min_depth, int(filters * alpha)), as both references size them."""
        return max(self.spec.min_depth, int(filters * self.alpha))

    def batch_norm(self, name):
        return self.layers.BatchNormalization(epsilon=1e-3, momentum=self.spec.bn_momentum, name=name)

    def initializer(self):
        initializers = self.keras.initializers
        if self.spec.initializer == "normal":
            return initializers.RandomNormal(stddev=0.03)
        return initializers.TruncatedNormal(stddev=0.03)


def _fail(argument, value, allowed):
    validation.fail(argument, value, allowed)


def _backbone_table(backbone, minimalistic, tail):
    if isinstance(backbone, Architecture):
        arch, label = backbone, "custom"
    else:
        validation.check_choice("backbone", backbone, BACKBONES + tuple(
            f"{b}-minimalistic" for b in BACKBONES[2:]))
        if minimalistic and not backbone.startswith("v3"):
            _fail("minimalistic", minimalistic, "False for MobileNetV1/V2 backbones")
        label = f"{backbone}-minimalistic" if minimalistic and "minimalistic" not in backbone else backbone
        arch = ARCHITECTURES[label]
    if tail:
        if label in ("v1", "v2"):
            _fail("reduced_tail", tail, "False for MobileNetV1/V2 backbones (the reduced tail is MobileNetV3's)")
        arch = reduced_tail_table(arch)
    return arch, label


def _check_input_shape(input_shape):
    allowed = (f"a tuple (height, width, 3 or 1) with fixed integer height and width >= {MIN_SIZE}: anchors "
               "tile a fixed grid, and the stride-32 map must be at least 2x2 (e.g. 96, 160, 300, 320)")
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        _fail("input_shape", input_shape, allowed)
    for size in input_shape:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            _fail("input_shape", input_shape, allowed)
    if min(input_shape[:2]) < MIN_SIZE or input_shape[2] < 1:
        _fail("input_shape", input_shape, allowed)
    return tuple(int(s) for s in input_shape)


def _taps(backbone_model, flavor):
    """(expansion of the first stride-32 block, last layer) of a backbone, as the Object Detection API taps
    `layer_15/expansion_output` and `layer_19` of MobileNetV2: the input of the block's strided layer."""
    records = block_info(backbone_model)
    first = next((r for r in records if r.stride == 32), None)
    deepest = max(r.stride for r in records)
    if first is None or deepest != 32:
        raise ValueError(
            f"backbone={backbone_model.name!r} is not allowed here: SSDLite taps the first stride-32 block "
            f"and the last layer, so the backbone must end at output stride 32; this one reaches {deepest} "
            "(a table without a fifth stride-2 row, or output_stride 8/16, removes the tap).")
    for name in first.layers:
        layer = backbone_model.get_layer(name)
        if type(layer).__name__ == "ZeroPadding2D" or tuple(getattr(layer, "strides", (1, 1))) == (2, 2):
            return layer.input, backbone_model.get_layer(records[-1].output).output
    raise ValueError(f"backbone={backbone_model.name!r}: its first stride-32 block has no strided layer to tap.")


def _record(model, prefix, kind, stride, output):
    names = tuple(layer.name for layer in model.layers if layer.name.startswith(prefix))
    channels = int(model.get_layer(output).output.shape[-1])
    return BlockInfo(None, kind, output, stride, 1, channels, names)


def SSDLite(backbone: str | Architecture = "v2", alpha: float = 1.0, num_classes: int = 80,
            input_shape: tuple = (300, 300, 3), reduced_tail: bool = False, head: str = "ssdlite",
            preset: str = "paper", weights: str | None = None, flavor: str = "keras", *,
            minimalistic: bool = False, include_preprocessing: bool = True,
            detector: DetectorSpec | None = None, name: str | None = None):
    """SSDLite (MobileNetV2 paper Section 6.2) or plain SSD on any MobileNet, as one flat Keras model.

    Args:
        backbone: "v1", "v2", "v3-large", "v3-small" (or "v3-large-minimalistic", "v3-small-minimalistic"),
            or an `Architecture` table that reaches output stride 32.
        alpha: the backbone's width multiplier; extra layers get max(16, int(depth * alpha)) channels.
        num_classes: object classes; the class output has num_classes + 1 slots, background at index 0.
        input_shape: (height, width, channels), fixed, height and width >= 33.
        reduced_tail: MobileNetV3 only: halve the stride-32 stage (the V3 paper's detection backbone).
        head: "ssdlite" (depthwise-separable extra layers and predictors) or "ssd" (full 3x3 convs).
        preset: "paper" (Object Detection API: 3 anchors on the first map, 6 elsewhere, sigmoid scores)
            or "torchvision" (`ssdlite320_mobilenet_v3_large`: 6 anchors everywhere, softmax scores).
        weights: None, "imagenet" (the backbone's ImageNet file; not with reduced_tail) or the path of a
            weights file of this whole detector.
        flavor: "keras" (Keras 3) or "tf_keras" (Keras 2, what tfmot quantizes).
        minimalistic: MobileNetV3's minimalistic variant.
        include_preprocessing: True (default): the model takes [0, 255] pixels; False: [-1, 1].
        detector: a `DetectorSpec` table replacing the one `head` and `preset` select.
        name: the model's name.

    Returns:
        A functional model with outputs `box_encodings` [B, A, 4] and `class_logits` [B, A, classes + 1];
        `model.detector_config` (also `detector_config(model)` after reloading) and `ssd_anchors(model)`.
    """
    arch, label = _backbone_table(backbone, minimalistic, reduced_tail)
    alpha = validation.check_alpha(alpha)
    num_classes = validation.check_positive_int(
        "num_classes", num_classes, "a positive integer: the number of object classes, without background")
    input_shape = _check_input_shape(input_shape)
    validation.check_choice("flavor", flavor, FLAVORS)
    if detector is None:
        validation.check_choice("head", head, HEADS)
        validation.check_choice("preset", preset, PRESETS)
        detector = DETECTORS[(head, preset)]
    elif not isinstance(detector, DetectorSpec):
        _fail("detector", detector, "None or a DetectorSpec")
    weights = validation.check_weights(weights)
    if weights == "imagenet" and (reduced_tail or arch.family is None):
        _fail("weights", weights, "None or a file path for a reduced-tail or custom backbone (no ImageNet "
              "file has those shapes)")
    if weights == "imagenet" and input_shape[2] != 3:
        _fail("input_shape", input_shape, '3 channels with weights="imagenet"')
    extra = [get_block(row.block) for row in detector.extra]  # unknown blocks fail before any layer exists
    predictor = get_block(detector.predictor.block)

    flavor_obj = get_flavor(flavor)
    backbone_model = build(arch, input_shape=input_shape, flavor=flavor, alpha=alpha, include_top=False,
                           include_preprocessing=include_preprocessing, bn_momentum=detector.bn_momentum)
    if weights == "imagenet":
        load_weights(backbone_model, resolve_imagenet(arch, alpha, input_shape, False))
    maps = list(_taps(backbone_model, flavor_obj))

    per_location = detector.anchors.per_location(len(maps) + len(detector.extra))
    ctx = DetectionContext(detector, flavor_obj, alpha, num_classes + 1)
    for index, (row, function) in enumerate(zip(detector.extra, extra), start=len(maps)):
        ctx.map_index = index
        maps.append(function(maps[-1], row, ctx))
    boxes, logits = [], []
    for index, feature_map in enumerate(maps):
        ctx.map_index, ctx.anchors = index, per_location[index]
        box, logit = predictor(feature_map, detector.predictor, ctx)
        boxes.append(box)
        logits.append(logit)
    layers = flavor_obj.layers
    box_encodings = layers.Concatenate(axis=1, name="box_encodings")(boxes)
    class_logits = layers.Concatenate(axis=1, name="class_logits")(logits)
    size = "x".join(str(s) for s in input_shape[:2])
    model_name = name or f"{detector.name}_{label}{'_reduced_tail' if reduced_tail else ''}_{alpha:g}_{size}"
    model = flavor_obj.model(backbone_model.input, [box_encodings, class_logits], name=model_name)

    records = list(block_info(backbone_model))
    for index, row in enumerate(detector.extra, start=2):
        output = flavor_obj.layer_of(maps[index]).name
        records.append(_record(model, f"extra_{index}_", row.block, records[-1].stride * 2, output))
    strides = [16, 32] + [r.stride for r in records[-len(detector.extra):]] if detector.extra else [16, 32]
    for index in range(len(maps)):
        records.append(_record(model, f"predictor_{index}_", detector.predictor.block, strides[index],
                               f"predictor_{index}_class_reshape"))
    records.append(BlockInfo(None, "outputs", "class_logits", strides[-1], 1, num_classes + 1,
                             ("box_encodings", "class_logits")))
    set_block_info(model, [replace(r, part="backbone") if i < len(block_info(backbone_model)) else
                           replace(r, part="head") for i, r in enumerate(records)])
    model.detector_config = DetectorConfig(
        num_classes=num_classes, input_shape=input_shape,
        feature_map_sizes=tuple(tuple(int(d) for d in m.shape[1:3]) for m in maps),
        anchors_per_location=tuple(per_location), anchor_spec=detector.anchors,
        score_converter=detector.score_converter, box_scales=detector.box_scales,
        head=head, preset=preset, backbone=label, alpha=alpha, reduced_tail=bool(reduced_tail))
    if weights not in (None, "imagenet"):
        load_weights(model, weights)
    return model
