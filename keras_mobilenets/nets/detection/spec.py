"""Detection tables as data: extra-layer and predictor rows, anchor schemes, and the named presets.

A detector is a backbone table (nets/architectures.py) plus a `DetectorSpec`: `extra` rows that each build
one more feature map from the last one, one `predictor` row run on every map, and an `AnchorSpec`.
Rows name registered blocks (nets/registry.py), so a user can swap any of them with their own.
"""

from dataclasses import dataclass, replace
from typing import ClassVar

from keras_mobilenets.nets.spec import InvertedResidual, check_row


@dataclass(frozen=True)
class SSDLiteExtra:
    """SSDLite extra layer (V2 paper Section 6.2): 1x1 conv to filters/2, 3x3 depthwise stride 2, 1x1 conv
    to `filters`, each with BatchNorm + ReLU6 (the Object Detection API's and torchvision's `_extra_block`)."""

    block: ClassVar[str] = "ssdlite_extra"
    filters: int

    def __post_init__(self):
        check_row(self, ("filters",))


@dataclass(frozen=True)
class SSDExtra:
    """Plain SSD extra layer: 1x1 conv to filters/2, then a full 3x3 conv stride 2 to `filters` (BN + ReLU6)."""

    block: ClassVar[str] = "ssd_extra"
    filters: int

    def __post_init__(self):
        check_row(self, ("filters",))


@dataclass(frozen=True)
class SSDLitePredictor:
    """Depthwise-separable box and class predictors: 3x3 depthwise + BN + ReLU6, then a 1x1 conv with bias.

    `class_bias_init` starts every class logit there (-4.6, sigmoid 0.01, as the Object Detection API's
    SSDLite MobileNetV3 configs; 0 as torchvision).
    """

    block: ClassVar[str] = "ssdlite_predictor"
    kernel: int = 3
    class_bias_init: float = 0.0

    def __post_init__(self):
        check_row(self, ("kernel",))


@dataclass(frozen=True)
class SSDPredictor:
    """Plain SSD predictors: one full k x k conv with bias per map for boxes, one for classes."""

    block: ClassVar[str] = "ssd_predictor"
    kernel: int = 3
    class_bias_init: float = 0.0

    def __post_init__(self):
        check_row(self, ("kernel",))


ANCHOR_KINDS = ("odapi", "torchvision")


@dataclass(frozen=True)
class AnchorSpec:
    """Anchor boxes on the six maps, in normalized (ymin, xmin, ymax, xmax).

    kind "odapi": the Object Detection API's `create_ssd_anchors` (scales min_scale..max_scale linearly
    over the maps, one box per aspect ratio plus one at the interpolated scale sqrt(s_k * s_k+1); with
    `reduce_boxes_in_lowest_layer` the first map gets only (0.1, 1), (s_0, 2), (s_0, 1/2)).
    kind "torchvision": torchvision's `DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95)` (s_k and s'_k at
    ratio 1, then w/h pairs for ratios 2 and 3; sizes clipped to 1).
    """

    kind: str = "odapi"
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True

    def __post_init__(self):
        if self.kind not in ANCHOR_KINDS:
            raise ValueError(f"AnchorSpec kind={self.kind!r} is not allowed: kind must be one of {ANCHOR_KINDS}.")

    def per_location(self, num_maps):
        """Anchors at each location of each map."""
        if self.kind == "torchvision":
            ratios = [r for r in self.aspect_ratios if r > 1.0]
            return [2 + 2 * len(ratios)] * num_maps
        rest = len(self.aspect_ratios) + (self.interpolated_scale_aspect_ratio > 0)
        first = 3 if self.reduce_boxes_in_lowest_layer else rest
        return [first] + [rest] * (num_maps - 1)


@dataclass(frozen=True)
class DetectorSpec:
    """Everything past the backbone: extra layers, predictors, anchors, and how logits become scores.

    `score_converter` is "sigmoid" (Object Detection API: independent per-class sigmoids) or "softmax"
    (torchvision). `box_scales` are the center-size coder's (y, x, h, w) scale factors. `min_depth` and the
    width rule max(min_depth, int(filters * alpha)) size the extra layers as both references do.
    `bn_momentum` 0.97 is the Object Detection API's decay and torchvision's momentum=0.03.
    """

    name: str
    extra: tuple
    predictor: object
    anchors: AnchorSpec
    score_converter: str = "sigmoid"
    box_scales: tuple = (10.0, 10.0, 5.0, 5.0)
    min_depth: int = 16
    bn_momentum: float = 0.97
    initializer: str = "truncated_normal"


PAPER_DEPTHS = (512, 256, 256, 128)  # V2 paper Section 6.2; ssd_mobilenet_v{2,3}_feature_extractor.py

HEADS = ("ssdlite", "ssd")
PRESETS = ("paper", "torchvision")

DETECTORS = {
    ("ssdlite", "paper"): DetectorSpec(
        name="ssdlite", extra=tuple(SSDLiteExtra(d) for d in PAPER_DEPTHS),
        predictor=SSDLitePredictor(kernel=3, class_bias_init=-4.6), anchors=AnchorSpec("odapi")),
    ("ssd", "paper"): DetectorSpec(
        name="ssd", extra=tuple(SSDExtra(d) for d in PAPER_DEPTHS),
        predictor=SSDPredictor(kernel=3, class_bias_init=-4.6), anchors=AnchorSpec("odapi")),
    # torchvision's ssdlite320_mobilenet_v3_large: same extra widths, 6 anchors everywhere, softmax scores
    ("ssdlite", "torchvision"): DetectorSpec(
        name="ssdlite", extra=tuple(SSDLiteExtra(d) for d in PAPER_DEPTHS),
        predictor=SSDLitePredictor(kernel=3), anchors=AnchorSpec("torchvision", aspect_ratios=(2.0, 3.0)),
        score_converter="softmax", initializer="normal"),
    ("ssd", "torchvision"): DetectorSpec(
        name="ssd", extra=tuple(SSDExtra(d) for d in PAPER_DEPTHS),
        predictor=SSDPredictor(kernel=3), anchors=AnchorSpec("torchvision", aspect_ratios=(2.0, 3.0)),
        score_converter="softmax", initializer="normal"),
}


def reduced_tail(arch):
    """The MobileNetV3 paper's "reduced tail" (its dagger rows) as a table transform.

    The stride-32 stage's output channels and the expansions of its later blocks are halved, as the
    Object Detection API's `_reduce_consecutive_layers(V3_LARGE, 13, 16)` and torchvision's
    `reduced_tail=True`: V3-Large becomes (5, 672, 80) (5, 480, 80) (5, 480, 80) and a 480-wide last conv
    (which is 6x its input in the table). The first block keeps its expansion (it is relative to its input).
    """
    rows = list(arch.rows)
    strided = [i for i, row in enumerate(rows) if isinstance(row, InvertedResidual) and row.stride == 2]
    if not strided:
        raise ValueError(f"reduced_tail=True is not allowed for {arch.name!r}: the table has no strided "
                         "inverted-residual stage to halve.")
    first = strided[-1]
    for i in range(first, len(rows)):
        row = rows[i]
        if not isinstance(row, InvertedResidual):
            continue
        exp_size = row.exp_size // 2 if (row.exp_size is not None and i > first) else row.exp_size
        rows[i] = replace(row, filters=row.filters // 2, exp_size=exp_size)
    return replace(arch, rows=tuple(rows), family=None, name=f"{arch.name}_reduced_tail")
