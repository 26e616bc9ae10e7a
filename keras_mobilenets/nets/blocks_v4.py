"""MobileNetV4's blocks (UIB, Fused IB, Mobile MQA, the normalized head), registered like the V1-V3 ones.

Layer names follow timm's module names (`dw_start`, `pw_exp`, `dw_mid`, `pw_proj`, `conv_exp`,
`conv_pwl`, `attn.query.proj`, ...) under a `block_<i>_` prefix, so timm's published weights map onto
them (nets/timm_weights.py). Strided convs pad symmetrically, as PyTorch and timm do, not TF's 'SAME'
(which pads bottom/right only on even inputs): timm's weights then give timm's outputs.
Everything is a built-in Keras layer (no Lambda, no tensor arithmetic), so a model saves in safe mode,
converts to TFLite and copies into tf_keras for tfmot.
"""

from keras_mobilenets.nets.channels import make_divisible
from keras_mobilenets.nets.registry import register_block

LAYER_SCALE_INIT = 1e-5  # Model Garden and timm


def activation(ctx, kind, base):
    """`<base>_<relu|hard_swish|gelu>`; GELU is the exact (erf) one, as timm's nn.GELU."""
    if kind == "gelu":
        return ctx.layers.Activation("gelu", name=f"{base}_gelu")
    return ctx.activation(kind, base)


def conv(x, ctx, filters, kernel, stride, name, depthwise=False):
    """Conv2D / DepthwiseConv2D without bias; a network stride past output_stride becomes dilation.

    Stride 2 pads (kernel - 1) // 2 on every side then runs 'valid' (PyTorch's padding=k // 2).
    """
    stride, dilation = ctx.next_stride(stride)
    layers = ctx.layers
    padding = "same"
    if stride > 1:
        x = layers.ZeroPadding2D(dilation * (kernel - 1) // 2, name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        return layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, dilation_rate=dilation,
                                      use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, dilation_rate=dilation,
                         use_bias=False, name=name)(x)


def layer_scale(x, ctx, name):
    """LayerScale (CaiT): a learned per-channel scale initialized to 1e-5.

    Keras has no LayerScale layer; a 1x1 DepthwiseConv2D without bias is exactly that (one weight per
    channel) and is a built-in layer that saves, converts to TFLite and quantizes with tfmot as it is.
    """
    init = ctx.flavor.keras.initializers.Constant(LAYER_SCALE_INIT)
    return ctx.layers.DepthwiseConv2D(1, use_bias=False, depthwise_initializer=init, name=name)(x)


def _residual(x, shortcut, row, ctx, prefix):
    if getattr(row, "residual", True) and row.stride == 1 and shortcut.shape[-1] == x.shape[-1]:
        return ctx.layers.Add(name=f"{prefix}add")([shortcut, x])
    return x


@register_block("conv_norm_act")
def conv_norm_act(x, row, ctx):
    """Conv (stride here) + BN + activation: the stem (`row.name`) or a numbered "Conv" row."""
    base = row.name or f"block_{ctx.block_index}_conv"
    x = conv(x, ctx, ctx.channels(row.filters, row.width), row.kernel, row.stride, base)
    x = ctx.batch_norm(f"{base}_bn")(x)
    return activation(ctx, row.activation, base)(x)


@register_block("uib")
def universal_inverted_bottleneck(x, row, ctx):
    """UIB: [start dw + BN] -> 1x1 expand + BN + act -> [middle dw + BN + act] -> 1x1 project + BN ->
    [LayerScale] -> [+ input]. The expansion is make_divisible(input channels * expansion)."""
    prefix = f"block_{ctx.block_index}_"
    shortcut = x
    in_channels = x.shape[-1]
    stride_on_start = row.downsample == "start" or not row.middle_kernel
    if row.start_kernel:
        x = conv(x, ctx, None, row.start_kernel, row.stride if stride_on_start else 1, f"{prefix}dw_start",
                 depthwise=True)
        x = ctx.batch_norm(f"{prefix}dw_start_bn")(x)
    if row.expansion != 1:  # Model Garden expands even at 1 in a UIB; no table has a UIB of expansion 1
        x = conv(x, ctx, make_divisible(in_channels * row.expansion), 1, 1, f"{prefix}pw_exp")
        x = ctx.batch_norm(f"{prefix}pw_exp_bn")(x)
        x = activation(ctx, row.activation, f"{prefix}pw_exp")(x)
    if row.middle_kernel:
        x = conv(x, ctx, None, row.middle_kernel, 1 if stride_on_start else row.stride, f"{prefix}dw_mid",
                 depthwise=True)
        x = ctx.batch_norm(f"{prefix}dw_mid_bn")(x)
        x = activation(ctx, row.activation, f"{prefix}dw_mid")(x)
    x = conv(x, ctx, ctx.channels(row.filters), 1, 1, f"{prefix}pw_proj")
    x = ctx.batch_norm(f"{prefix}pw_proj_bn")(x)
    if row.layer_scale:
        x = layer_scale(x, ctx, f"{prefix}layer_scale")
    return _residual(x, shortcut, row, ctx, prefix)


@register_block("fused_ib")
def fused_inverted_bottleneck(x, row, ctx):
    """Fused IB (timm's EdgeResidual): k x k conv to make_divisible(input * expansion) (stride here) +
    BN + act, 1x1 project + BN, residual when shapes match."""
    prefix = f"block_{ctx.block_index}_"
    shortcut = x
    if row.expansion != 1:
        x = conv(x, ctx, make_divisible(x.shape[-1] * row.expansion), row.kernel, row.stride,
                 f"{prefix}conv_exp")
        x = ctx.batch_norm(f"{prefix}conv_exp_bn")(x)
        x = activation(ctx, row.activation, f"{prefix}conv_exp")(x)
    x = conv(x, ctx, ctx.channels(row.filters), 1, 1, f"{prefix}conv_pwl")
    x = ctx.batch_norm(f"{prefix}conv_pwl_bn")(x)
    return _residual(x, shortcut, row, ctx, prefix)


def _key_value(x, row, ctx, prefix, kind, dim):
    """Key or value: [kv_stride depthwise + BN] -> 1x1 conv to `dim` -> (batch, positions, dim)."""
    layers = ctx.layers
    if row.kv_stride > 1:
        x = layers.ZeroPadding2D((row.dw_kernel - 1) // 2, name=f"{prefix}{kind}_down_pad")(x)
        x = layers.DepthwiseConv2D(row.dw_kernel, strides=row.kv_stride, padding="valid", use_bias=False,
                                   name=f"{prefix}{kind}_down_conv")(x)
        x = ctx.batch_norm(f"{prefix}{kind}_norm")(x)
    x = layers.Conv2D(dim, 1, use_bias=False, name=f"{prefix}{kind}_proj")(x)
    return layers.Reshape((x.shape[1] * x.shape[2], dim), name=f"{prefix}{kind}_reshape")(x)


@register_block("mobile_mqa")
def mobile_mqa(x, row, ctx):
    """Mobile MQA: BN -> queries (heads * key_dim, 1x1 conv) against ONE key and ONE value head ->
    1x1 output projection -> LayerScale -> + input.

    All heads share the key, so the heads fold into the query rows: queries (HW * heads, key_dim) times
    keys (M, key_dim)^T is one batched matmul (a `Dot` layer), softmax over the M key positions, times
    values (M, value_dim), reshaped back to (H, W, heads * value_dim) in timm's channel order. The
    1/sqrt(key_dim) scale is a `Rescaling` of the queries.
    """
    layers = ctx.layers
    prefix = f"block_{ctx.block_index}_"
    height, width, channels = x.shape[1], x.shape[2], x.shape[-1]
    if height is None or width is None:
        raise ValueError(
            f"input_shape with a height or width of None is not allowed for a model with Mobile MQA "
            f"blocks (block {ctx.block_index}): input_shape must give a fixed size, e.g. (256, 256, 3).")
    if ctx.channels(row.filters) != channels:
        raise ValueError(f"{row!r}: filters={row.filters} scales to {ctx.channels(row.filters)} channels but "
                         f"the block's input has {channels}: filters must equal the previous row's.")
    heads, key_dim, value_dim = row.num_heads, row.key_dim, row.value_dim
    shortcut = x
    x = ctx.batch_norm(f"{prefix}norm")(x)
    q = layers.Conv2D(heads * key_dim, 1, use_bias=False, name=f"{prefix}query_proj")(x)
    q = layers.Rescaling(key_dim ** -0.5, name=f"{prefix}query_scale")(q)
    q = layers.Reshape((height * width * heads, key_dim), name=f"{prefix}query_reshape")(q)
    k = _key_value(x, row, ctx, prefix, "key", key_dim)
    v = _key_value(x, row, ctx, prefix, "value", value_dim)
    logits = layers.Dot(axes=(2, 2), name=f"{prefix}attention_logits")([q, k])
    scores = layers.Softmax(axis=-1, name=f"{prefix}attention_softmax")(logits)
    o = layers.Dot(axes=(2, 1), name=f"{prefix}attention_values")([scores, v])
    o = layers.Reshape((height, width, heads * value_dim), name=f"{prefix}output_reshape")(o)
    o = layers.Conv2D(channels, 1, use_bias=False, name=f"{prefix}output_proj")(o)
    if row.layer_scale:
        o = layer_scale(o, ctx, f"{prefix}layer_scale")
    return layers.Add(name=f"{prefix}add")([shortcut, o])


@register_block("norm_head_classifier")
def norm_head_classifier(x, row, ctx):
    """Pool, 1x1 conv to `hidden` (no bias; grown only for alpha > 1, Model Garden's finegrain mode) + BN
    + act, flatten, optional dropout, Dense to classes."""
    layers, options = ctx.layers, ctx.options
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
    x = layers.Conv2D(ctx.channels(row.hidden, "grow_only"), 1, use_bias=False, name="head_conv")(x)
    x = ctx.batch_norm("head_bn")(x)
    x = activation(ctx, row.activation, "head")(x)
    x = layers.Flatten(name="flatten")(x)
    if options.dropout_rate > 0:
        x = layers.Dropout(options.dropout_rate, name="dropout")(x)
    return layers.Dense(options.classes, activation=options.classifier_activation, name="predictions")(x)
