"""Public segmentation builders: a backbone table, its head row as the table's top, the one builder loop.

Both return one flat functional model (Keras 3 or tf_keras) mapping [0, 255] RGB pixels (with the
default include_preprocessing=True) to logits [batch, height, width, num_classes] at the input
resolution. The backbone's strides past `output_stride` become dilation (DeepLab-style).
"""

from dataclasses import replace

from keras_mobilenets.nets import validation
from keras_mobilenets.nets.architectures import ARCHITECTURES
from keras_mobilenets.nets.builder import build
from keras_mobilenets.nets.flavors import FLAVORS
from keras_mobilenets.nets.segmentation.heads import DeepLabV3Head, LRASPPHead
from keras_mobilenets.nets.spec import Architecture, ConvBN
from keras_mobilenets.nets.tails import reduce_tail
from keras_mobilenets.nets.weights import load_weights

SEG_OUTPUT_STRIDES = (8, 16, 32)
PRESETS = ("paper", "torchvision")
ASPP_RATES = (6, 12, 18)  # at output stride 16; doubled at 8 (DeepLabv3)

# What each preset of LRASPP means (V3 paper via DeepLab's code, or torchvision's lraspp.py).
_LRASPP_PRESETS = {
    # DeepLab: reduced tail with the first expansion halved too, layer_7/depthwise_output as the stride-8
    # feature, a 1x1 conv with bias + q_sigmoid (= hard-sigmoid) as the gate.
    "paper": dict(reduced_tail=True, halve_first_expansion=True, low_tap="expanded", gate="hard_sigmoid",
                  gate_bias=True),
    # torchvision: full tail, "low" = the first stride-8 block's output (features[4]), bias-free gate conv
    # with a sigmoid.
    "torchvision": dict(reduced_tail=False, halve_first_expansion=False, low_tap="first", gate="sigmoid",
                        gate_bias=False),
}


def _backbone(backbone, alpha, reduced_tail, halve_first_expansion):
    """The backbone table: a registry name or an Architecture; V2 loses its last 1x1 conv (the V2 paper's
    "MNet V2*" builds the head on the second-last feature map, as DeepLab's layer_18 endpoint does)."""
    if isinstance(backbone, Architecture):
        arch = backbone
    else:
        validation.check_choice("backbone", backbone, tuple(ARCHITECTURES))
        arch = ARCHITECTURES[backbone]
    if arch.family == "v2" and isinstance(arch.rows[-1], ConvBN):
        arch = replace(arch, rows=arch.rows[:-1])
    if reduced_tail:
        arch = reduce_tail(arch, halve_first_expansion=halve_first_expansion)
    validation.check_alpha(alpha)
    return arch


def _check(num_classes, output_stride, input_shape, weights, flavor):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        validation.fail("num_classes", num_classes, "an integer >= 2 (background counts as a class)")
    validation.check_choice("output_stride", output_stride, SEG_OUTPUT_STRIDES)
    validation.check_choice("flavor", flavor, FLAVORS)
    if weights == "imagenet":
        validation.fail("weights", weights, "None or the path of a weights file of this same model "
                                            "(no pretrained segmentation weights are bundled)")
    weights = validation.check_weights(weights)
    input_shape = validation.check_input_shape(input_shape, None)
    if any(size is not None and size % output_stride for size in input_shape[:2]):
        validation.fail("input_shape", input_shape,
                        f"a (height, width, channels) whose height and width are multiples of "
                        f"output_stride={output_stride} (the head upsamples by whole factors)")
    return input_shape, weights


def _finish(model, weights):
    if weights is not None:
        load_weights(model, weights)
    return model


def LRASPP(backbone: str | Architecture = "v3-large", num_classes: int = 21,
           input_shape: tuple = (512, 512, 3), filters: int = 128, output_stride: int = 16,
           reduced_tail: bool | None = None, preset: str = "paper", alpha: float = 1.0,
           low_stride: int = 8, pool: tuple | None = None, weights: str | None = None,
           include_preprocessing: bool = True, classifier_activation=None,
           bn_momentum: float | None = None, name: str | None = None, flavor: str = "keras"):
    """Lite R-ASPP segmentation (MobileNetV3 paper, Section 6.3, Fig. 10) on any registry backbone.

    Args:
        backbone: "v3-large", "v3-small", "v2", "v1" (or a minimalistic V3, or an `Architecture`).
        num_classes: classes of the logits, background included (>= 2).
        input_shape: (height, width, 3); sizes None or multiples of output_stride.
        filters: the head's width (the paper: 128 or 256).
        output_stride: 8, 16 (last stage dilated) or 32.
        reduced_tail: halve the last stage (the paper's RF2). None: the preset's (paper True,
            torchvision False).
        preset: "paper" (DeepLab's code for the V3 paper) or "torchvision" (`lraspp_mobilenet_v3_large`).
        alpha: the backbone's width multiplier.
        low_stride: stride of the second classifier's feature (8).
        pool: None (global pooling for the gate) or ((kh, kw), (sh, sw)), e.g. ((49, 49), (16, 20)).
        weights: None or the path of this model's weights.
        include_preprocessing: True: [0, 255] pixels in; False: [-1, 1].
        classifier_activation: None (logits) or e.g. "softmax".
        bn_momentum: BatchNorm momentum; None keeps the backbone table's.
        name: the model's name.
        flavor: "keras" or "tf_keras" (for tfmot).

    Returns:
        A flat functional model: [B, H, W, 3] pixels -> [B, H, W, num_classes] logits.
    """
    validation.check_choice("preset", preset, PRESETS)
    settings = dict(_LRASPP_PRESETS[preset])
    if reduced_tail is not None:
        settings["reduced_tail"] = bool(reduced_tail)
    input_shape, weights = _check(num_classes, output_stride, input_shape, weights, flavor)
    validation.check_positive_int("filters", filters, "a positive integer (the paper uses 128 or 256)")
    arch = _backbone(backbone, alpha, settings["reduced_tail"], settings["halve_first_expansion"])
    head = LRASPPHead(filters=filters, low_stride=low_stride, low_tap=settings["low_tap"],
                      gate=settings["gate"], gate_bias=settings["gate_bias"], pool=pool)
    arch = replace(arch, classifier=head, name=name or f"lraspp_{arch.family or 'custom'}")
    model = build(arch, input_shape=input_shape, flavor=flavor, alpha=alpha, include_top=True,
                  classes=num_classes, classifier_activation=classifier_activation,
                  include_preprocessing=include_preprocessing, output_stride=output_stride,
                  bn_momentum=validation.check_bn_momentum(bn_momentum))
    return _finish(model, weights)


def DeepLabV3(backbone: str | Architecture = "v2", num_classes: int = 21, input_shape: tuple = (512, 512, 3),
              aspp: bool = False, output_stride: int = 16, decoder: bool = False, alpha: float = 1.0,
              filters: int = 256, dropout_rate: float = 0.1, weights: str | None = None,
              include_preprocessing: bool = True, classifier_activation=None,
              bn_momentum: float | None = None, name: str | None = None, flavor: str = "keras"):
    """Mobile DeepLabv3 (MobileNetV2 paper, Section 6.3, Table 7) and DeepLabv3+ on any registry backbone.

    Args:
        backbone: "v2" (the paper's "MNet V2*": features of the second-last layer), "v1", "v3-large",
            "v3-small" or an `Architecture`.
        num_classes: classes of the logits, background included (>= 2).
        input_shape: (height, width, 3) with fixed sizes, multiples of output_stride.
        aspp: add the three 3x3 atrous branches (rates 6/12/18 at output stride 16, 12/24/36 at 8).
        output_stride: 8, 16 or 32.
        decoder: the DeepLabv3+ decoder on the stride-4 feature.
        alpha: the backbone's width multiplier.
        filters: the head's width (256).
        dropout_rate: dropout after the projection (DeepLab: 0.1).
        weights: None or the path of this model's weights.
        include_preprocessing: True: [0, 255] pixels in; False: [-1, 1].
        classifier_activation: None (logits) or e.g. "softmax".
        bn_momentum: BatchNorm momentum; None keeps the backbone table's.
        name: the model's name.
        flavor: "keras" or "tf_keras" (for tfmot).

    Returns:
        A flat functional model: [B, H, W, 3] pixels -> [B, H, W, num_classes] logits.
    """
    input_shape, weights = _check(num_classes, output_stride, input_shape, weights, flavor)
    validation.check_positive_int("filters", filters, "a positive integer (the paper uses 256)")
    dropout_rate = validation.check_dropout(dropout_rate)
    rates = tuple(r * 16 // output_stride for r in ASPP_RATES) if aspp else ()
    if aspp and output_stride == 32:
        rates = tuple(r // 2 for r in ASPP_RATES)
    arch = _backbone(backbone, alpha, False, False)
    head = DeepLabV3Head(filters=filters, rates=rates, dropout=dropout_rate,
                         decoder_stride=4 if decoder else None)
    arch = replace(arch, classifier=head, name=name or f"deeplabv3_{arch.family or 'custom'}")
    model = build(arch, input_shape=input_shape, flavor=flavor, alpha=alpha, include_top=True,
                  classes=num_classes, classifier_activation=classifier_activation,
                  include_preprocessing=include_preprocessing, output_stride=output_stride,
                  bn_momentum=validation.check_bn_momentum(bn_momentum))
    return _finish(model, weights)
