"""Segmentation heads as table rows and registered blocks: LR-ASPP (MobileNetV3 paper, Fig. 10) and
Mobile DeepLabv3 / v3+ (MobileNetV2 paper, Section 6.3).

A head row is the table's top (`Architecture.classifier`): the builder calls it after the backbone rows
with the context whose `features` list every row's output (and an inverted-residual block's expanded
depthwise activation), so the head taps earlier strides in the same flat graph. Every head ends in
logits [batch, height, width, classes] at the input resolution (softmax only with
classifier_activation="softmax").

Upsampling is `UpSampling2D(interpolation="bilinear")` by integer factors (input sizes must be multiples
of the output stride): Keras computes it with half-pixel centers, TFLite's RESIZE_BILINEAR with
half_pixel_centers=True computes the same, in float and in int8, and tfmot quantizes it (its registry
lists UpSampling2D with an output fake-quant). Tiling a 1x1 pooled map uses nearest (a copy).
"""

from dataclasses import dataclass
from typing import ClassVar

from keras_mobilenets.nets.registry import register_block
from keras_mobilenets.nets.spec import check_row

TAPS = ("last", "first", "expanded")
GATES = ("hard_sigmoid", "sigmoid")


@dataclass(frozen=True)
class LRASPPHead:
    """Lite R-ASPP: a 1x1 conv (BN, ReLU) on the deepest feature, gated by a pooled 1x1 conv + sigmoid,
    upsampled to `low_stride`, a classifier on it plus a classifier on the `low_stride` feature, summed.

    `pool` None is global pooling; ((kh, kw), (sh, sw)) is the paper's large average pool (49x49,
    stride (16, 20) at 1024x2048), whose output is upsampled back to the feature map. `low_tap`: which
    `low_stride` feature -- "last" block output, "first" block output (torchvision), or "expanded", the
    last block's depthwise activation (DeepLab's layer_7/depthwise_output).
    """

    block: ClassVar[str] = "lraspp"
    filters: int = 128
    low_stride: int = 8
    low_tap: str = "expanded"
    gate: str = "hard_sigmoid"
    gate_bias: bool = True
    pool: tuple | None = None

    def __post_init__(self):
        check_row(self, ("filters", "low_stride"))
        if self.low_tap not in TAPS or self.gate not in GATES:
            raise ValueError(f"{self!r}: low_tap must be one of {TAPS} and gate one of {GATES}")


@dataclass(frozen=True)
class DeepLabV3Head:
    """Mobile DeepLabv3: image pooling (1x1 conv, BN, ReLU, tiled) and a 1x1 conv branch, plus 3x3
    atrous branches at `rates` (ASPP), concatenated, projected by a 1x1 conv, dropout, 1x1 logits.

    With `decoder_stride` (DeepLabv3+): the `decoder_tap` feature at that stride projected to
    `decoder_projection` channels, concatenated with the upsampled head, two separable 3x3 convs.
    """

    block: ClassVar[str] = "deeplabv3"
    filters: int = 256
    rates: tuple = ()
    image_pooling: bool = True
    dropout: float = 0.1
    decoder_stride: int | None = None
    decoder_tap: str = "expanded"
    decoder_projection: int = 48
    decoder_filters: int = 256

    def __post_init__(self):
        check_row(self, ("filters", "decoder_stride", "decoder_projection", "decoder_filters"),
                  optional=("decoder_stride",))
        if self.decoder_tap not in TAPS:
            raise ValueError(f"{self!r}: decoder_tap must be one of {TAPS}")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in self.rates):
            raise ValueError(f"{self!r}: rates must be positive integers")


def stride_feature(ctx, stride, tap="last", argument="stride"):
    """The tensor at `stride` from the rows built so far: the last or first block output there, or the
    last block's expanded activation ("expanded"; the output for blocks without one)."""
    rows = [(record, out, expanded) for record, out, expanded in ctx.features if record.stride == stride]
    deepest = ctx.stride
    if not rows or stride >= deepest:
        available = tuple(sorted({r.stride for r, _, _ in ctx.features if r.stride < deepest}))
        raise ValueError(f"{argument}={stride!r} is not allowed: the head needs a feature above the "
                         f"backbone's output stride {deepest}; this backbone gives strides {available}.")
    record, out, expanded = rows[0] if tap == "first" else rows[-1]
    return expanded if tap == "expanded" and expanded is not None else out


def _conv_bn_relu(x, ctx, filters, name, kernel=1, dilation=1):
    x = ctx.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, use_bias=False,
                          name=name)(x)
    x = ctx.batch_norm(f"{name}_bn")(x)
    return ctx.layers.ReLU(name=f"{name}_relu")(x)


def _separable(x, ctx, filters, name):
    x = ctx.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = ctx.batch_norm(f"{name}_depthwise_bn")(x)
    x = ctx.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return _conv_bn_relu(x, ctx, filters, f"{name}_pointwise")


def upsample(x, ctx, factor, name, interpolation="bilinear"):
    """x `factor` times larger (an int or (rows, cols)); nothing when the factor is 1."""
    factor = (factor, factor) if isinstance(factor, int) else tuple(factor)
    if factor == (1, 1):
        return x
    return ctx.layers.UpSampling2D(size=factor, interpolation=interpolation, name=name)(x)


def _top(x, ctx, stride):
    """1x1 logits at `stride` -> input resolution, then the optional activation."""
    x = upsample(x, ctx, stride, "logits_upsample")
    activation = ctx.options.classifier_activation
    if activation is not None:
        x = ctx.layers.Activation(activation, name="predictions")(x)
    return x


def _pool(x, ctx, pool, name):
    """Global average pooling (keepdims) or a large 'valid' average pool; and the factor back."""
    if pool is None:
        return ctx.layers.GlobalAveragePooling2D(keepdims=True, name=name)(x), None
    (kh, kw), (sh, sw) = pool
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None or height < kh or width < kw:
        raise ValueError(f"pool={pool!r} is not allowed for a {height}x{width} feature map: an average "
                         "pool needs a fixed input size at least as large as its kernel (use pool=None "
                         "for global pooling)")
    pooled = ctx.layers.AveragePooling2D((kh, kw), strides=(sh, sw), padding="valid", name=name)(x)
    ph, pw = pooled.shape[1], pooled.shape[2]
    if height % ph or width % pw:
        raise ValueError(f"pool={pool!r} is not allowed for a {height}x{width} feature map: its "
                         f"{ph}x{pw} output must divide the feature map to be upsampled back")
    return pooled, (height // ph, width // pw)


@register_block("lraspp")
def lraspp(x, row, ctx):
    """LR-ASPP head on the backbone output `x` (stride ctx.stride) and the `low_stride` feature."""
    layers = ctx.layers
    classes = ctx.options.classes
    low = stride_feature(ctx, row.low_stride, row.low_tap, "low_stride")
    high = _conv_bn_relu(x, ctx, row.filters, "lraspp_conv")
    gate, factor = _pool(x, ctx, row.pool, "lraspp_pool")
    gate = layers.Conv2D(row.filters, 1, use_bias=row.gate_bias, name="lraspp_gate")(gate)
    if row.gate == "hard_sigmoid":
        gate = ctx.flavor.HardSigmoid(name="lraspp_gate_hard_sigmoid")(gate)
    else:
        gate = layers.Activation("sigmoid", name="lraspp_gate_sigmoid")(gate)
    if factor is not None:
        gate = upsample(gate, ctx, factor, "lraspp_gate_upsample")
    high = layers.Multiply(name="lraspp_mul")([high, gate])  # a global gate broadcasts, like SE
    high = upsample(high, ctx, ctx.stride // row.low_stride, "lraspp_upsample")
    high = layers.Conv2D(classes, 1, name="lraspp_high_logits")(high)
    low = layers.Conv2D(classes, 1, name="lraspp_low_logits")(low)
    x = layers.Add(name="lraspp_logits")([high, low])
    return _top(x, ctx, row.low_stride)


@register_block("deeplabv3")
def deeplabv3(x, row, ctx):
    """Mobile DeepLabv3 head (ASPP when `rates`), optionally the DeepLabv3+ decoder."""
    layers = ctx.layers
    stride = ctx.stride
    low = stride_feature(ctx, row.decoder_stride, row.decoder_tap, "decoder_stride") \
        if row.decoder_stride else None
    branches = []
    if row.image_pooling:
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            raise ValueError("input_shape with a None size is not allowed with image pooling: the pooled "
                             "branch is tiled to the feature map, so give a fixed (height, width, 3)")
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name="image_pooling")(x)
        pooled = _conv_bn_relu(pooled, ctx, row.filters, "image_pooling_conv")
        branches.append(upsample(pooled, ctx, (height, width), "image_pooling_upsample", "nearest"))
    branches.append(_conv_bn_relu(x, ctx, row.filters, "aspp0"))
    for i, rate in enumerate(row.rates, 1):
        branches.append(_conv_bn_relu(x, ctx, row.filters, f"aspp{i}", kernel=3, dilation=rate))
    x = layers.Concatenate(name="aspp_concat")(branches) if len(branches) > 1 else branches[0]
    x = _conv_bn_relu(x, ctx, row.filters, "concat_projection")
    if row.dropout:
        x = layers.Dropout(row.dropout, name="concat_projection_dropout")(x)
    if low is not None:
        x = upsample(x, ctx, stride // row.decoder_stride, "decoder_upsample")
        low = _conv_bn_relu(low, ctx, row.decoder_projection, "decoder_projection")
        x = layers.Concatenate(name="decoder_concat")([x, low])
        x = _separable(x, ctx, row.decoder_filters, "decoder_conv0")
        x = _separable(x, ctx, row.decoder_filters, "decoder_conv1")
        stride = row.decoder_stride
    x = layers.Conv2D(ctx.options.classes, 1, name="logits")(x)
    return _top(x, ctx, stride)
