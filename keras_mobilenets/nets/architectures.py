"""The papers' tables: MobileNetV1 (Table 1), V2 (Table 2), V3-Large (Table 1), V3-Small (Table 2)."""

from keras_mobilenets.nets.spec import (
    Architecture,
    BlockNames,
    ConvBN,
    ConvClassifier,
    DenseClassifier,
    DepthwiseSeparable,
    HeadClassifier,
    bneck,
    bottleneck,
    minimalistic,
)

MOBILENET_V1 = Architecture(
    name="mobilenet_{alpha:0.2f}_{rows}",
    rows=(
        ConvBN(32, kernel=3, stride=2, activation="relu6", name="conv1"),
        #                 pw channels, dw stride
        DepthwiseSeparable(64, 1),
        DepthwiseSeparable(128, 2),
        DepthwiseSeparable(128, 1),
        DepthwiseSeparable(256, 2),
        DepthwiseSeparable(256, 1),
        DepthwiseSeparable(512, 2),
        DepthwiseSeparable(512, 1),
        DepthwiseSeparable(512, 1),
        DepthwiseSeparable(512, 1),
        DepthwiseSeparable(512, 1),
        DepthwiseSeparable(512, 1),
        DepthwiseSeparable(1024, 2),
        DepthwiseSeparable(1024, 1),  # the paper prints s2 here: a typo, the input is already 7x7
    ),
    classifier=ConvClassifier(),
    width="int",
    bn_momentum=0.99,
    first_block_index=1,
    family="v1",
    default_size=224,
)

MOBILENET_V2 = Architecture(
    name="mobilenetv2_{alpha:0.2f}_{rows}",
    rows=(
        ConvBN(32, kernel=3, stride=2, activation="relu6", name="Conv1", bn_name="bn_Conv1",
               width="divisible"),
        #         t    c  n  s
        bottleneck(1, 16, 1, 1),
        bottleneck(6, 24, 2, 2),
        bottleneck(6, 32, 3, 2),
        bottleneck(6, 64, 4, 2),
        bottleneck(6, 96, 3, 1),
        bottleneck(6, 160, 3, 2),
        bottleneck(6, 320, 1, 1),
        ConvBN(1280, kernel=1, activation="relu6", name="Conv_1", act_name="out_relu",
               width="grow_only"),
    ),
    classifier=DenseClassifier(),
    width="int_divisible",
    family="v2",
    default_size=224,
)

_V3_NAMES = BlockNames(first="expanded_conv_", pattern="expanded_conv_{index}_", bn="_bn",
                       pad="depthwise_pad")

MOBILENET_V3_LARGE = Architecture(
    name="MobileNetV3Large",
    rows=(
        ConvBN(16, kernel=3, stride=2, activation="hard_swish", name="conv", width="fixed"),
        #     k  exp  out  SE     NL    s
        bneck(3, 16, 16, False, "RE", 1),
        bneck(3, 64, 24, False, "RE", 2),
        bneck(3, 72, 24, False, "RE", 1),
        bneck(5, 72, 40, True, "RE", 2),
        bneck(5, 120, 40, True, "RE", 1),
        bneck(5, 120, 40, True, "RE", 1),
        bneck(3, 240, 80, False, "HS", 2),
        bneck(3, 200, 80, False, "HS", 1),
        bneck(3, 184, 80, False, "HS", 1),
        bneck(3, 184, 80, False, "HS", 1),
        bneck(3, 480, 112, True, "HS", 1),
        bneck(3, 672, 112, True, "HS", 1),
        bneck(5, 672, 160, True, "HS", 2),
        bneck(5, 960, 160, True, "HS", 1),
        bneck(5, 960, 160, True, "HS", 1),
        ConvBN(None, kernel=1, activation="hard_swish", name="conv_1", expand=6),
    ),
    classifier=HeadClassifier(hidden=1280, activation="hard_swish"),
    block_names=_V3_NAMES,
    family="v3_large",
    include_preprocessing=True,
)

MOBILENET_V3_SMALL = Architecture(
    name="MobileNetV3Small",
    rows=(
        ConvBN(16, kernel=3, stride=2, activation="hard_swish", name="conv", width="fixed"),
        #     k  exp  out  SE     NL    s
        bneck(3, 16, 16, True, "RE", 2),
        bneck(3, 72, 24, False, "RE", 2),
        bneck(3, 88, 24, False, "RE", 1),
        bneck(5, 96, 40, True, "HS", 2),
        bneck(5, 240, 40, True, "HS", 1),
        bneck(5, 240, 40, True, "HS", 1),
        bneck(5, 120, 48, True, "HS", 1),
        bneck(5, 144, 48, True, "HS", 1),
        bneck(5, 288, 96, True, "HS", 2),
        bneck(5, 576, 96, True, "HS", 1),
        bneck(5, 576, 96, True, "HS", 1),
        ConvBN(None, kernel=1, activation="hard_swish", name="conv_1", expand=6),
    ),
    classifier=HeadClassifier(hidden=1024, activation="hard_swish"),
    block_names=_V3_NAMES,
    family="v3_small",
    include_preprocessing=True,
)

MOBILENET_V3_LARGE_MINIMALISTIC = minimalistic(MOBILENET_V3_LARGE)
MOBILENET_V3_SMALL_MINIMALISTIC = minimalistic(MOBILENET_V3_SMALL)

ARCHITECTURES = {
    "v1": MOBILENET_V1,
    "v2": MOBILENET_V2,
    "v3-large": MOBILENET_V3_LARGE,
    "v3-small": MOBILENET_V3_SMALL,
    "v3-large-minimalistic": MOBILENET_V3_LARGE_MINIMALISTIC,
    "v3-small-minimalistic": MOBILENET_V3_SMALL_MINIMALISTIC,
}


# ---------------------------------------------------------------------------------------------------------
# MobileNetV4 (arXiv 2404.10518, Tables 10-13) and the Model Garden MobileNets, from nets/spec_v4.py rows.
# The rows follow Model Garden's official/vision/modeling/backbones/mobilenet.py block for block (timm's
# `_gen_mobilenet_v4` builds the same). Where the paper differs:
# - The paper prints Conv-S's first layers as FusedIB; both codes build plain Conv + BN + ReLU rows there.
# - In a UIB with both depthwise convs the stride sits on the MIDDLE one (Model Garden's
#   middle_dw_downsample=True, timm's dw_start_stride); the paper's Fig. 4 draws it on the first.
# - Head: 960-wide 1x1 conv, then pool, then a 1280-wide 1x1 conv WITH BatchNorm and no bias (the V3 head
#   had a bias and no BN), then the classifier.
# Width (alpha): make_divisible(c * alpha) everywhere, the stem included (Model Garden; timm keeps a
# 32-wide stem for multipliers below 1); the 1280 head grows only (Model Garden's finegrain mode).
# BatchNorm: momentum 0.99 (Model Garden); epsilon 1e-5 as timm, whose published weights load here
# (Model Garden uses 1e-3; the Model Garden variants below keep that).
# ---------------------------------------------------------------------------------------------------------
from keras_mobilenets.nets.spec_v4 import NormHeadClassifier, conv, fused_ib, mqa, uib  # noqa: E402

MOBILENET_V4_CONV_SMALL = Architecture(
    name="MobileNetV4ConvSmall",
    rows=(
        conv(3, 2, 32, name="stem_conv"),
        #     k  s   c
        conv(3, 2, 32),
        conv(1, 1, 32),
        conv(3, 2, 96),
        conv(1, 1, 64),
        #    type       dw1 dw2 s   e    c
        uib("ExtraDW",   5,  5, 2, 3.0, 96),
        uib("IB",        0,  3, 1, 2.0, 96),
        uib("IB",        0,  3, 1, 2.0, 96),
        uib("IB",        0,  3, 1, 2.0, 96),
        uib("IB",        0,  3, 1, 2.0, 96),
        uib("ConvNext",  3,  0, 1, 4.0, 96),
        uib("ExtraDW",   3,  3, 2, 6.0, 128),
        uib("ExtraDW",   5,  5, 1, 4.0, 128),
        uib("IB",        0,  5, 1, 4.0, 128),
        uib("IB",        0,  5, 1, 3.0, 128),
        uib("IB",        0,  3, 1, 4.0, 128),
        uib("IB",        0,  3, 1, 4.0, 128),
        conv(1, 1, 960),
    ),
    classifier=NormHeadClassifier(1280),
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    default_size=224,
)

MOBILENET_V4_CONV_MEDIUM = Architecture(
    name="MobileNetV4ConvMedium",
    rows=(
        conv(3, 2, 32, name="stem_conv"),
        #        k  s  e    c
        fused_ib(3, 2, 4.0, 48),
        #    type       dw1 dw2 s   e    c
        uib("ExtraDW",   3,  5, 2, 4.0, 80),
        uib("ExtraDW",   3,  3, 1, 2.0, 80),
        uib("ExtraDW",   3,  5, 2, 6.0, 160),
        uib("ExtraDW",   3,  3, 1, 4.0, 160),
        uib("ExtraDW",   3,  3, 1, 4.0, 160),
        uib("ExtraDW",   3,  5, 1, 4.0, 160),
        uib("ExtraDW",   3,  3, 1, 4.0, 160),
        uib("ConvNext",  3,  0, 1, 4.0, 160),
        uib("FFN",       0,  0, 1, 2.0, 160),
        uib("ConvNext",  3,  0, 1, 4.0, 160),
        uib("ExtraDW",   5,  5, 2, 6.0, 256),
        uib("ExtraDW",   5,  5, 1, 4.0, 256),
        uib("ExtraDW",   3,  5, 1, 4.0, 256),
        uib("ExtraDW",   3,  5, 1, 4.0, 256),
        uib("FFN",       0,  0, 1, 4.0, 256),
        uib("ConvNext",  3,  0, 1, 4.0, 256),
        uib("ExtraDW",   3,  5, 1, 2.0, 256),
        uib("ExtraDW",   5,  5, 1, 4.0, 256),
        uib("FFN",       0,  0, 1, 4.0, 256),
        uib("FFN",       0,  0, 1, 4.0, 256),
        uib("ConvNext",  5,  0, 1, 2.0, 256),
        conv(1, 1, 960),
    ),
    classifier=NormHeadClassifier(1280),
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    default_size=256,
)

MOBILENET_V4_CONV_LARGE = Architecture(
    name="MobileNetV4ConvLarge",
    rows=(
        conv(3, 2, 24, name="stem_conv"),
        fused_ib(3, 2, 4.0, 48),
        #    type       dw1 dw2 s   e    c
        uib("ExtraDW",   3,  5, 2, 4.0, 96),
        uib("ExtraDW",   3,  3, 1, 4.0, 96),
        uib("ExtraDW",   3,  5, 2, 4.0, 192),
        uib("ExtraDW",   3,  3, 1, 4.0, 192),
        uib("ExtraDW",   3,  3, 1, 4.0, 192),
        uib("ExtraDW",   3,  3, 1, 4.0, 192),
        uib("ExtraDW",   3,  5, 1, 4.0, 192),
        uib("ExtraDW",   5,  3, 1, 4.0, 192),
        uib("ExtraDW",   5,  3, 1, 4.0, 192),
        uib("ExtraDW",   5,  3, 1, 4.0, 192),
        uib("ExtraDW",   5,  3, 1, 4.0, 192),
        uib("ExtraDW",   5,  3, 1, 4.0, 192),
        uib("ConvNext",  3,  0, 1, 4.0, 192),
        uib("ExtraDW",   5,  5, 2, 4.0, 512),
        uib("ExtraDW",   5,  5, 1, 4.0, 512),
        uib("ExtraDW",   5,  5, 1, 4.0, 512),
        uib("ExtraDW",   5,  5, 1, 4.0, 512),
        uib("ConvNext",  5,  0, 1, 4.0, 512),
        uib("ExtraDW",   5,  3, 1, 4.0, 512),
        uib("ConvNext",  5,  0, 1, 4.0, 512),
        uib("ConvNext",  5,  0, 1, 4.0, 512),
        uib("ExtraDW",   5,  3, 1, 4.0, 512),
        uib("ExtraDW",   5,  5, 1, 4.0, 512),
        uib("ConvNext",  5,  0, 1, 4.0, 512),
        uib("ConvNext",  5,  0, 1, 4.0, 512),
        uib("ConvNext",  5,  0, 1, 4.0, 512),
        conv(1, 1, 960),
    ),
    classifier=NormHeadClassifier(1280),
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    default_size=384,
)


def _ls(kind, k1, k2, s, e, c, act="relu"):
    """A hybrid model's UIB: LayerScale on (Model Garden use_layer_scale=True, timm layer_scale_init 1e-5)."""
    return uib(kind, k1, k2, s, e, c, act=act, layer_scale=True)


MOBILENET_V4_HYBRID_MEDIUM = Architecture(
    name="MobileNetV4HybridMedium",
    rows=(
        conv(3, 2, 32, name="stem_conv"),
        fused_ib(3, 2, 4.0, 48),
        #   type       dw1 dw2 s   e    c          Mobile MQA: heads, key dim, kv stride, c
        _ls("ExtraDW",  3,  5, 2, 4.0, 80),
        _ls("ExtraDW",  3,  3, 1, 2.0, 80),
        _ls("ExtraDW",  3,  5, 2, 6.0, 160),
        _ls("FFN",      0,  0, 1, 2.0, 160),
        _ls("ExtraDW",  3,  3, 1, 4.0, 160),
        _ls("ExtraDW",  3,  5, 1, 4.0, 160),
        mqa(4, 64, 2, 160),
        _ls("ExtraDW",  3,  3, 1, 4.0, 160),
        mqa(4, 64, 2, 160),
        _ls("ConvNext", 3,  0, 1, 4.0, 160),
        mqa(4, 64, 2, 160),
        _ls("ExtraDW",  3,  3, 1, 4.0, 160),
        mqa(4, 64, 2, 160),
        _ls("ConvNext", 3,  0, 1, 4.0, 160),
        _ls("ExtraDW",  5,  5, 2, 6.0, 256),
        _ls("ExtraDW",  5,  5, 1, 4.0, 256),
        _ls("ExtraDW",  3,  5, 1, 4.0, 256),
        _ls("ExtraDW",  3,  5, 1, 4.0, 256),
        _ls("FFN",      0,  0, 1, 2.0, 256),
        _ls("ExtraDW",  3,  5, 1, 2.0, 256),
        _ls("FFN",      0,  0, 1, 2.0, 256),
        _ls("FFN",      0,  0, 1, 4.0, 256),
        mqa(4, 64, 1, 256),
        _ls("ConvNext", 3,  0, 1, 4.0, 256),
        mqa(4, 64, 1, 256),
        _ls("ExtraDW",  5,  5, 1, 4.0, 256),
        mqa(4, 64, 1, 256),
        _ls("ConvNext", 5,  0, 1, 4.0, 256),
        mqa(4, 64, 1, 256),
        _ls("ConvNext", 5,  0, 1, 4.0, 256),
        conv(1, 1, 960),
    ),
    classifier=NormHeadClassifier(1280),
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    default_size=256,
)

_G = "gelu"  # Hybrid-L uses GELU in every conv block and the head (attention has no activation)

MOBILENET_V4_HYBRID_LARGE = Architecture(
    name="MobileNetV4HybridLarge",
    rows=(
        conv(3, 2, 24, act=_G, name="stem_conv"),
        fused_ib(3, 2, 4.0, 48, act=_G),
        #   type       dw1 dw2 s   e    c
        _ls("ExtraDW",  3,  5, 2, 4.0, 96, _G),
        _ls("ExtraDW",  3,  3, 1, 4.0, 96, _G),
        _ls("ExtraDW",  3,  5, 2, 4.0, 192, _G),
        _ls("ExtraDW",  3,  3, 1, 4.0, 192, _G),
        _ls("ExtraDW",  3,  3, 1, 4.0, 192, _G),
        _ls("ExtraDW",  3,  3, 1, 4.0, 192, _G),
        _ls("ExtraDW",  3,  5, 1, 4.0, 192, _G),
        _ls("ExtraDW",  5,  3, 1, 4.0, 192, _G),
        _ls("ExtraDW",  5,  3, 1, 4.0, 192, _G),
        mqa(8, 48, 2, 192),
        _ls("ExtraDW",  5,  3, 1, 4.0, 192, _G),
        mqa(8, 48, 2, 192),
        _ls("ExtraDW",  5,  3, 1, 4.0, 192, _G),
        mqa(8, 48, 2, 192),
        _ls("ExtraDW",  5,  3, 1, 4.0, 192, _G),
        mqa(8, 48, 2, 192),
        _ls("ConvNext", 3,  0, 1, 4.0, 192, _G),
        _ls("ExtraDW",  5,  5, 2, 4.0, 512, _G),
        _ls("ExtraDW",  5,  5, 1, 4.0, 512, _G),
        _ls("ExtraDW",  5,  5, 1, 4.0, 512, _G),
        _ls("ExtraDW",  5,  5, 1, 4.0, 512, _G),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        _ls("ExtraDW",  5,  3, 1, 4.0, 512, _G),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        _ls("ExtraDW",  5,  3, 1, 4.0, 512, _G),
        _ls("ExtraDW",  5,  5, 1, 4.0, 512, _G),
        mqa(8, 64, 1, 512),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        mqa(8, 64, 1, 512),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        mqa(8, 64, 1, 512),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        mqa(8, 64, 1, 512),
        _ls("ConvNext", 5,  0, 1, 4.0, 512, _G),
        conv(1, 1, 960, act=_G),
    ),
    classifier=NormHeadClassifier(1280, activation=_G),
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    default_size=384,
)


# Model Garden's MobileNets from "Discovering Multi-Hardware Mobile Models via Architecture Search"
# (arXiv 2008.08178) and slim's MobileNet-EdgeTPU: inverted bottlenecks (UIB "IB" rows) and fused ones.
def _ib(k, s, e, c, residual=True):
    return uib("IB", 0, k, s, e, c, residual=residual)


def _model_garden(name, rows, head=1280, classifier=None):
    return Architecture(name=name, rows=rows, classifier=classifier or NormHeadClassifier(head),
                        bn_momentum=0.99, default_size=224)


MOBILENET_EDGETPU = _model_garden("MobileNetEdgeTPU", (
    conv(3, 2, 32, name="stem_conv"),
    #        k  s  e    c
    fused_ib(3, 1, 1.0, 16),  # expansion 1: only the 1x1 projection (Model Garden)
    fused_ib(3, 2, 8.0, 32),
    fused_ib(3, 1, 4.0, 32),
    fused_ib(3, 1, 4.0, 32),
    fused_ib(3, 1, 4.0, 32),
    fused_ib(3, 2, 8.0, 48),
    fused_ib(3, 1, 4.0, 48),
    fused_ib(3, 1, 4.0, 48),
    fused_ib(3, 1, 4.0, 48),
    #  k  s  e    c
    _ib(3, 2, 8.0, 96),
    _ib(3, 1, 4.0, 96),
    _ib(3, 1, 4.0, 96),
    _ib(3, 1, 4.0, 96),
    _ib(3, 1, 8.0, 96, residual=False),  # Model Garden: use_residual=False
    _ib(3, 1, 4.0, 96),
    _ib(3, 1, 4.0, 96),
    _ib(3, 1, 4.0, 96),
    _ib(5, 2, 8.0, 160),
    _ib(5, 1, 4.0, 160),
    _ib(5, 1, 4.0, 160),
    _ib(5, 1, 4.0, 160),
    _ib(3, 1, 8.0, 192),
    conv(1, 1, 1280, width="grow_only"),
), classifier=DenseClassifier())

_MULTI_MAX_BODY = (
    conv(3, 2, 32, name="stem_conv"),
    _ib(3, 2, 3.0, 32),
    _ib(5, 2, 6.0, 64),
    _ib(3, 1, 2.0, 64),
    _ib(3, 1, 2.0, 64),
    _ib(5, 2, 6.0, 128),
    _ib(3, 1, 4.0, 128),
    _ib(3, 1, 3.0, 128),
    _ib(3, 1, 3.0, 128),
    _ib(3, 1, 6.0, 128),
    _ib(3, 1, 3.0, 128),
    _ib(3, 2, 6.0, 160),
)
MOBILENET_MULTI_MAX = _model_garden("MobileNetMultiMAX", _MULTI_MAX_BODY + (
    _ib(5, 1, 4.0, 160),
    _ib(3, 1, 5.0, 160),
    _ib(5, 1, 4.0, 160),
    conv(1, 1, 960),
))
MOBILENET_MULTI_MAX_SEG = _model_garden("MobileNetMultiMAXSeg", _MULTI_MAX_BODY + (
    _ib(5, 1, 2.0, 96),  # the Seg versions halve the last stage and end in 448 channels
    _ib(3, 1, 4.0, 96),
    _ib(5, 1, 320 / 96, 96),
    conv(1, 1, 448),
))

_MULTI_AVG_BODY = (
    conv(3, 2, 32, name="stem_conv"),
    _ib(3, 2, 3.0, 32),
    _ib(3, 1, 2.0, 32),
    _ib(5, 2, 5.0, 64),
    _ib(3, 1, 3.0, 64),
    _ib(3, 1, 2.0, 64),
    _ib(3, 1, 3.0, 64),
    _ib(5, 2, 6.0, 128),
    _ib(3, 1, 3.0, 128),
    _ib(3, 1, 3.0, 128),
    _ib(3, 1, 3.0, 128),
    _ib(3, 1, 6.0, 160),
    _ib(3, 1, 4.0, 160),
    _ib(3, 2, 6.0, 192),
)
MOBILENET_MULTI_AVG = _model_garden("MobileNetMultiAVG", _MULTI_AVG_BODY + (
    _ib(5, 1, 4.0, 192),
    _ib(5, 1, 4.0, 192),
    _ib(5, 1, 4.0, 192),
    conv(1, 1, 960),
))
MOBILENET_MULTI_AVG_SEG = _model_garden("MobileNetMultiAVGSeg", _MULTI_AVG_BODY + (
    _ib(5, 1, 2.0, 96),
    _ib(5, 1, 4.0, 96),
    _ib(5, 1, 4.0, 96),
    conv(1, 1, 448),
))

V4_ARCHITECTURES = {
    "v4-conv-small": MOBILENET_V4_CONV_SMALL,
    "v4-conv-medium": MOBILENET_V4_CONV_MEDIUM,
    "v4-conv-large": MOBILENET_V4_CONV_LARGE,
    "v4-hybrid-medium": MOBILENET_V4_HYBRID_MEDIUM,
    "v4-hybrid-large": MOBILENET_V4_HYBRID_LARGE,
    "edgetpu": MOBILENET_EDGETPU,
    "multi-avg": MOBILENET_MULTI_AVG,
    "multi-max": MOBILENET_MULTI_MAX,
    "multi-avg-seg": MOBILENET_MULTI_AVG_SEG,
    "multi-max-seg": MOBILENET_MULTI_MAX_SEG,
}
ARCHITECTURES.update(V4_ARCHITECTURES)
