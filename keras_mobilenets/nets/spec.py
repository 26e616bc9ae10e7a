"""Architecture tables as data: typed rows that read like the papers' tables.

A row says *what* a block is (channels, stride, kernel...); the block registry says *how* to build it.
Every row has a class attribute `block` naming the registered block function that builds it; rows are
numbered blocks (`ctx.block_index`) unless they set the class attribute `numbered = False`.
"""

import numbers
from dataclasses import dataclass, field, replace
from typing import ClassVar

ACTIVATIONS = ("relu", "relu6", "hard_swish")
_PAPER_ACTIVATIONS = {"RE": "relu", "HS": "hard_swish", "R6": "relu6"}


def activation_name(nl):
    """Map a paper's NL column ("RE", "HS") or an activation name to one of `ACTIVATIONS`."""
    name = _PAPER_ACTIVATIONS.get(nl, nl)
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS} or a paper code {tuple(_PAPER_ACTIVATIONS)}; "
            f"received {nl!r}"
        )
    return name


def check_row(row, integers=(), numbers_=(), optional=()):
    """Raise a ValueError naming the row and the field when a channel count, stride, kernel or repeat
    count is not a positive integer (or an expansion not a positive number); `optional` fields may be None."""
    for name, kind, allowed in [(n, numbers.Integral, "a positive integer") for n in integers] + \
                               [(n, numbers.Real, "a positive number") for n in numbers_]:
        value = getattr(row, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
            raise ValueError(f"{row!r}: {name}={value!r} is not allowed: {name} must be {allowed}"
                             f"{' or None' if name in optional else ''}.")


@dataclass(frozen=True)
class ConvBN:
    """k x k convolution + BatchNorm + activation: stems and the last 1x1 conv.

    `filters` is the paper's channel count (scaled by the architecture's width rule, or by `width`).
    With `expand`, filters = make_divisible(input channels * expand) instead (MobileNetV3's last conv).
    """

    block: ClassVar[str] = "conv_bn"
    numbered: ClassVar[bool] = False  # stems and last convs carry explicit names, not a block number
    filters: int | None
    kernel: int = 3
    stride: int = 1
    activation: str = "relu6"
    name: str = "conv"
    bn_name: str | None = None
    act_name: str | None = None
    width: str | None = None
    expand: float | None = None

    def __post_init__(self):
        check_row(self, ("kernel", "stride") + (("filters",) if self.expand is None else ()),
                  ("expand",), optional=("expand",))


@dataclass(frozen=True)
class DepthwiseSeparable:
    """MobileNetV1 block: 3x3 depthwise (stride s) + BN + ReLU6, 1x1 pointwise to `filters` + BN + ReLU6."""

    block: ClassVar[str] = "depthwise_separable"
    filters: int
    stride: int = 1

    def __post_init__(self):
        check_row(self, ("filters", "stride"))


@dataclass(frozen=True)
class InvertedResidual:
    """MobileNetV2/V3 bottleneck: 1x1 expand, k x k depthwise, optional squeeze-excite, 1x1 linear project.

    Give the expansion either as a ratio `expansion` (V2's t) or as an absolute `exp_size` (V3's exp
    size, relative to the previous row's paper channels). `repeats` is V2's n: the first repeat has
    `stride`, the others stride 1.
    """

    block: ClassVar[str] = "inverted_residual"
    filters: int
    stride: int = 1
    repeats: int = 1
    expansion: float | None = None
    exp_size: int | None = None
    kernel: int = 3
    se: bool = False
    activation: str = "relu6"

    def __post_init__(self):
        check_row(self, ("filters", "stride", "repeats", "kernel", "exp_size"), ("expansion",),
                  optional=("exp_size", "expansion"))
        if (self.expansion is None) == (self.exp_size is None):
            raise ValueError(f"{self!r}: give exactly one of expansion (a ratio) and exp_size (channels).")


@dataclass(frozen=True)
class ConvClassifier:
    """MobileNetV1 top: global pool, dropout, 1x1 conv to classes, reshape, activation."""

    block: ClassVar[str] = "conv_classifier"


@dataclass(frozen=True)
class DenseClassifier:
    """MobileNetV2 top: global pool, optional dropout, Dense to classes with the classifier activation."""

    block: ClassVar[str] = "dense_classifier"


@dataclass(frozen=True)
class HeadClassifier:
    """MobileNetV3 top: pool, 1x1 conv to `hidden` with bias and no BN, activation, dropout, 1x1 logits."""

    block: ClassVar[str] = "head_classifier"
    hidden: int = 1280
    activation: str = "hard_swish"

    def __post_init__(self):
        check_row(self, ("hidden",))


def bottleneck(t, c, n, s):
    """A MobileNetV2 paper row: expansion t, output channels c, repeats n, first stride s."""
    return InvertedResidual(filters=c, stride=s, repeats=n, expansion=t)


def bneck(k, exp, out, se, nl, s):
    """A MobileNetV3 paper row: kernel, exp size, #out, SE, NL ("RE" / "HS"), stride."""
    return InvertedResidual(
        filters=out, stride=s, exp_size=exp, kernel=k, se=se, activation=activation_name(nl)
    )


@dataclass(frozen=True)
class BlockNames:
    """How a family names the layers of inverted-residual block i (keras.applications' names)."""

    first: str = "expanded_conv_"
    pattern: str = "block_{index}_"
    bn: str = "_BN"
    pad: str = "pad"

    def prefix(self, index):
        return self.first if index == 0 else self.pattern.format(index=index)


@dataclass(frozen=True)
class Architecture:
    """A whole network: rows run in order by the builder, then `classifier` when include_top=True.

    `name` is the default model name, formatted with `alpha` and `rows` (input height).
    `family` keys the official ImageNet weight files (None for custom tables).
    `default_size` is the input size used with include_top=True and no input_shape (keras.applications
    uses 224 for V1/V2; None keeps the input size open).
    """

    name: str
    rows: tuple
    classifier: object
    width: str = "divisible"
    bn_momentum: float = 0.999
    bn_epsilon: float = 1e-3
    block_names: BlockNames = field(default_factory=BlockNames)
    first_block_index: int = 0
    family: str | None = None
    minimalistic: bool = False
    include_preprocessing: bool = False
    default_size: int | None = None


def minimalistic(arch):
    """The minimalistic variant of a MobileNetV3 table: 3x3 kernels, ReLU everywhere, no SE."""

    def simplify(row):
        if isinstance(row, InvertedResidual):
            return replace(row, kernel=3, se=False, activation="relu")
        if isinstance(row, (ConvBN, HeadClassifier)):
            return replace(row, activation="relu")
        return row

    return replace(
        arch,
        rows=tuple(simplify(row) for row in arch.rows),
        classifier=simplify(arch.classifier),
        minimalistic=True,
    )
