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
