"""Typed rows for MobileNetV4 (arXiv 2404.10518) and the Model Garden MobileNets built from its blocks.

The paper's Tables 10-13 list each block as a type (ExtraDW, IB, ConvNext, FFN, FusedIB, Mobile MQA) with
its kernels, stride, expansion and channels; `uib(...)`, `fused_ib(...)`, `conv(...)` and `mqa(...)`
read the same way. Where the paper and the code disagree, the rows follow Model Garden
(official/vision/modeling/backbones/mobilenet.py) and timm (`_gen_mobilenet_v4`), which agree.
"""

from dataclasses import dataclass
from typing import ClassVar

from keras_mobilenets.nets.spec import check_row

V4_ACTIVATIONS = ("relu", "relu6", "hard_swish", "gelu")

# Which depthwise convs a UIB has: (start dw, middle dw). Paper Fig. 4.
UIB_VARIANTS = {"ExtraDW": (True, True), "IB": (False, True), "ConvNext": (True, False), "FFN": (False, False)}
DOWNSAMPLE = ("middle", "start")


def _check_activation(row):
    if row.activation not in V4_ACTIVATIONS:
        raise ValueError(f"{row!r}: activation={row.activation!r} is not allowed: activation must be one "
                         f"of {V4_ACTIVATIONS}.")


def _check_kernel(row, name):
    """A depthwise kernel of a UIB: 0 (absent) or a positive odd integer."""
    value = getattr(row, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (value and value % 2 == 0):
        raise ValueError(f"{row!r}: {name}={value!r} is not allowed: {name} must be 0 (no such depthwise "
                         "conv) or a positive odd integer.")


@dataclass(frozen=True)
class ConvNormAct:
    """k x k conv (no bias) + BatchNorm + activation: the stem, the paper's "Conv" rows and the last 1x1.

    Numbered like a block unless `name` is given (the stem). timm: `conv_stem`/`bn1` for the stem,
    `blocks.s.i.conv`/`bn1` for the others.
    """

    block: ClassVar[str] = "conv_norm_act"
    filters: int
    kernel: int = 3
    stride: int = 1
    activation: str = "relu"
    name: str | None = None
    width: str | None = None

    @property
    def numbered(self):
        return self.name is None

    def __post_init__(self):
        check_row(self, ("filters", "kernel", "stride"))
        _check_activation(self)


@dataclass(frozen=True)
class UniversalInvertedBottleneck:
    """UIB (paper Fig. 4): [start dw k1 + BN] -> 1x1 expand + BN + act -> [middle dw k2 + BN + act] ->
    1x1 project + BN -> [LayerScale] -> [+ input when stride 1 and channels match].

    A kernel of 0 leaves that depthwise out: ExtraDW (k1, k2), IB (0, k2), ConvNext (k1, 0), FFN (0, 0).
    `downsample` says which depthwise carries the stride: "middle" (Model Garden's default
    `middle_dw_downsample=True` and timm: the middle one when there is one, else the start one) or "start".
    """

    block: ClassVar[str] = "uib"
    filters: int
    stride: int = 1
    expansion: float = 4.0
    start_kernel: int = 0
    middle_kernel: int = 3
    activation: str = "relu"
    layer_scale: bool = False
    downsample: str = "middle"
    residual: bool = True

    def __post_init__(self):
        check_row(self, ("filters", "stride"), ("expansion",))
        _check_kernel(self, "start_kernel")
        _check_kernel(self, "middle_kernel")
        _check_activation(self)
        if self.downsample not in DOWNSAMPLE:
            raise ValueError(f"{self!r}: downsample={self.downsample!r} is not allowed: downsample must be "
                             f"one of {DOWNSAMPLE}.")
        if self.stride > 1 and self.downsample == "start" and not self.start_kernel:
            raise ValueError(f"{self!r}: downsample='start' is not allowed without a start depthwise: "
                             "downsample must be 'middle' when start_kernel is 0.")
        if self.stride > 1 and not (self.start_kernel or self.middle_kernel):
            raise ValueError(f"{self!r}: stride={self.stride} is not allowed for an FFN (no depthwise conv "
                             "to carry it): stride must be 1 when start_kernel and middle_kernel are 0.")

    @property
    def variant(self):
        present = (bool(self.start_kernel), bool(self.middle_kernel))
        return next(name for name, kernels in UIB_VARIANTS.items() if kernels == present)


@dataclass(frozen=True)
class FusedInvertedBottleneck:
    """Fused IB: k x k conv to expansion * input channels (stride here) + BN + act, 1x1 project + BN,
    residual when shapes match. With expansion 1 there is no expansion conv (Model Garden)."""

    block: ClassVar[str] = "fused_ib"
    filters: int
    kernel: int = 3
    stride: int = 1
    expansion: float = 4.0
    activation: str = "relu"
    residual: bool = True

    def __post_init__(self):
        check_row(self, ("filters", "kernel", "stride"), ("expansion",))
        _check_activation(self)
        if self.expansion == 1 and self.stride != 1:
            raise ValueError(f"{self!r}: stride={self.stride} is not allowed with expansion=1 (no expansion "
                             "conv to carry it): stride must be 1.")


@dataclass(frozen=True)
class MobileMQA:
    """Mobile MQA (paper Sec. 4.1): BN -> multi-query attention (`heads` query heads, ONE shared key and
    value head; keys and values spatially downsampled by a `kv_stride` 3x3 depthwise + BN when
    kv_stride > 1) -> 1x1 output projection -> LayerScale -> + input.

    `filters` is the block's (input and output) paper channel count; `heads=None` means
    filters // key_dim, which then must divide evenly.
    """

    block: ClassVar[str] = "mobile_mqa"
    filters: int
    heads: int | None = 4
    key_dim: int = 64
    value_dim: int = 64
    kv_stride: int = 1
    dw_kernel: int = 3
    layer_scale: bool = True

    def __post_init__(self):
        check_row(self, ("filters", "key_dim", "value_dim", "kv_stride", "dw_kernel"))
        if self.heads is None:
            if self.filters % self.key_dim:
                raise ValueError(f"{self!r}: key_dim={self.key_dim!r} is not allowed with heads=None: key_dim "
                                 f"must divide filters={self.filters} evenly (heads = filters // key_dim).")
        elif isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 1:
            raise ValueError(f"{self!r}: heads={self.heads!r} is not allowed: heads must be a positive "
                             "integer, or None for filters // key_dim.")

    @property
    def num_heads(self):
        return self.filters // self.key_dim if self.heads is None else self.heads


@dataclass(frozen=True)
class NormHeadClassifier:
    """MobileNetV4 / Model Garden top: pool, 1x1 conv to `hidden` (no bias) + BN + act, flatten, dropout,
    Dense to classes (timm: conv_head, norm_head, classifier)."""

    block: ClassVar[str] = "norm_head_classifier"
    hidden: int = 1280
    activation: str = "relu"

    def __post_init__(self):
        check_row(self, ("hidden",))
        _check_activation(self)


def conv(k, s, c, act="relu", name=None, width=None):
    """A "Conv" row: kernel, stride, channels."""
    return ConvNormAct(filters=c, kernel=k, stride=s, activation=act, name=name, width=width)


def uib(kind, k1, k2, s, e, c, act="relu", layer_scale=False, residual=True):
    """A UIB row as the paper prints it: type, start dw kernel, middle dw kernel, stride, expansion, channels.

    The type must agree with the kernels (ExtraDW has both, IB only the middle one, ConvNext only the
    start one, FFN none); 0 or "-" means no such depthwise conv.
    """
    if kind not in UIB_VARIANTS:
        raise ValueError(f"kind={kind!r} is not allowed: the UIB type must be one of {tuple(UIB_VARIANTS)}.")
    k1, k2 = (0 if k in ("-", None) else k for k in (k1, k2))
    row = UniversalInvertedBottleneck(filters=c, stride=s, expansion=e, start_kernel=k1, middle_kernel=k2,
                                      activation=act, layer_scale=layer_scale, residual=residual)
    if row.variant != kind:
        start, middle = UIB_VARIANTS[kind]
        raise ValueError(
            f"kind={kind!r} with start_kernel={k1!r}, middle_kernel={k2!r} is not allowed: a {kind} UIB has "
            f"{'a' if start else 'no'} start depthwise and {'a' if middle else 'no'} middle depthwise "
            f"(kernel > 0 means present); these kernels make a {row.variant}.")
    return row


def fused_ib(k, s, e, c, act="relu", residual=True):
    """A "FusedIB" row: kernel, stride, expansion, channels."""
    return FusedInvertedBottleneck(filters=c, kernel=k, stride=s, expansion=e, activation=act, residual=residual)


def mqa(heads, key_dim, kv_stride, c, value_dim=None):
    """A "Mobile MQA" row: query heads, key (= value) dim, key/value downsampling stride, channels."""
    return MobileMQA(filters=c, heads=heads, key_dim=key_dim, value_dim=value_dim or key_dim,
                     kv_stride=kv_stride)
