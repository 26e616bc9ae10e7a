"""The built-in blocks, registered under the names the table rows use.

Layer names follow keras.applications exactly for every layer that carries weights, so official weight
files load unchanged; activation layers get stable names of their own.
"""

from keras_mobilenets.nets.channels import make_divisible
from keras_mobilenets.nets.registry import register_block

SE_RATIO = 0.25
_V1_STRIDE_PAD = ((0, 1), (0, 1))


def correct_pad(x, kernel):
    """Zero padding that makes a stride-2 'valid' conv match TF-slim's 'SAME' (keras.applications)."""
    height, width = x.shape[1], x.shape[2]
    adjust = (1, 1) if height is None else (1 - height % 2, 1 - width % 2)
    half = kernel // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


def depthwise(x, ctx, kernel, stride, name, pad_name, pad=None, depth_multiplier=1):
    """Depthwise conv; stride 2 as explicit zero padding + 'valid', dilated instead past output_stride."""
    stride, dilation = ctx.next_stride(stride)
    layers = ctx.layers
    if stride == 1:
        padding = "same"
    else:
        x = layers.ZeroPadding2D(padding=pad or correct_pad(x, kernel), name=pad_name)(x)
        padding = "valid"
    return layers.DepthwiseConv2D(
        kernel, strides=stride, padding=padding, dilation_rate=dilation,
        depth_multiplier=depth_multiplier, use_bias=False, name=name,
    )(x)


def squeeze_excite(x, ctx, prefix):
    """Squeeze-excite: pool, 1x1 conv to make_divisible(c / 4) + ReLU, 1x1 conv back + h-sigmoid, scale."""
    layers = ctx.layers
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")(x)
    s = layers.Conv2D(make_divisible(channels * SE_RATIO), 1, padding="same",
                      name=f"{prefix}squeeze_excite_conv")(s)
    s = layers.ReLU(name=f"{prefix}squeeze_excite_relu")(s)
    s = layers.Conv2D(channels, 1, padding="same", name=f"{prefix}squeeze_excite_conv_1")(s)
    s = ctx.flavor.HardSigmoid(name=f"{prefix}squeeze_excite_hard_sigmoid")(s)
    return layers.Multiply(name=f"{prefix}squeeze_excite_mul")([x, s])


@register_block("conv_bn")
def conv_bn(x, row, ctx):
    """Stem / last conv: Conv2D + BatchNorm + activation, named by the row."""
    if row.expand is not None:
        filters = make_divisible(x.shape[-1] * row.expand)
    else:
        filters = ctx.channels(row.filters, row.width)
    stride, dilation = ctx.next_stride(row.stride)
    x = ctx.layers.Conv2D(filters, row.kernel, strides=stride, dilation_rate=dilation, padding="same",
                          use_bias=False, name=row.name)(x)
    x = ctx.batch_norm(row.bn_name or f"{row.name}_bn")(x)
    return ctx.activation(row.activation, row.name, row.act_name)(x)


@register_block("depthwise_separable")
def depthwise_separable(x, row, ctx):
    """MobileNetV1 block, with keras.applications' conv_dw_i / conv_pw_i names."""
    i = ctx.block_index
    x = depthwise(x, ctx, 3, row.stride, name=f"conv_dw_{i}", pad_name=f"conv_pad_{i}",
                  pad=_V1_STRIDE_PAD, depth_multiplier=ctx.options.depth_multiplier)
    x = ctx.batch_norm(f"conv_dw_{i}_bn")(x)
    x = ctx.activation("relu6", f"conv_dw_{i}")(x)
    x = ctx.layers.Conv2D(ctx.channels(row.filters), 1, padding="same", use_bias=False,
                          name=f"conv_pw_{i}")(x)
    x = ctx.batch_norm(f"conv_pw_{i}_bn")(x)
    return ctx.activation("relu6", f"conv_pw_{i}")(x)


@register_block("inverted_residual")
def inverted_residual(x, row, ctx):
    """MobileNetV2/V3 bottleneck; the expand conv is skipped when the expansion is 1."""
    names = ctx.arch.block_names
    prefix = names.prefix(ctx.block_index)
    layers = ctx.layers
    in_channels = x.shape[-1]
    ratio = row.expansion if row.expansion is not None else row.exp_size / ctx.base_channels
    filters = ctx.channels(row.filters)
    shortcut = x
    if ratio != 1:
        x = layers.Conv2D(make_divisible(in_channels * ratio), 1, padding="same", use_bias=False,
                          name=f"{prefix}expand")(x)
        x = ctx.batch_norm(f"{prefix}expand{names.bn}")(x)
        x = ctx.activation(row.activation, f"{prefix}expand")(x)
    x = depthwise(x, ctx, row.kernel, row.stride, name=f"{prefix}depthwise",
                  pad_name=f"{prefix}{names.pad}")
    x = ctx.batch_norm(f"{prefix}depthwise{names.bn}")(x)
    x = ctx.activation(row.activation, f"{prefix}depthwise")(x)
    ctx.expanded = x  # DeepLab's "layer_i/depthwise_output" tap for segmentation heads
    if row.se:
        x = squeeze_excite(x, ctx, prefix)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
    x = ctx.batch_norm(f"{prefix}project{names.bn}")(x)
    if row.stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{prefix}add")([shortcut, x])
    return x


@register_block("conv_classifier")
def conv_classifier(x, row, ctx):
    """MobileNetV1 top (keras.applications): the classifier is a 1x1 conv on the pooled features."""
    layers, options = ctx.layers, ctx.options
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
    x = layers.Dropout(options.dropout_rate, name="dropout")(x)
    x = layers.Conv2D(options.classes, 1, padding="same", name="conv_preds")(x)
    x = layers.Reshape((options.classes,), name="reshape_2")(x)
    return layers.Activation(options.classifier_activation, name="predictions")(x)


@register_block("dense_classifier")
def dense_classifier(x, row, ctx):
    """MobileNetV2 top: pooled features into one Dense layer."""
    layers, options = ctx.layers, ctx.options
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if options.dropout_rate > 0:
        x = layers.Dropout(options.dropout_rate, name="dropout")(x)
    return layers.Dense(options.classes, activation=options.classifier_activation,
                        name="predictions")(x)


@register_block("head_classifier")
def head_classifier(x, row, ctx):
    """MobileNetV3 top: pool first, then the 1x1 `hidden` conv (bias, no BN), then the 1x1 logits."""
    layers, options = ctx.layers, ctx.options
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
    x = layers.Conv2D(ctx.channels(row.hidden, "grow_only"), 1, padding="same", use_bias=True,
                      name="conv_2")(x)
    x = ctx.activation(row.activation, "conv_2")(x)
    if options.dropout_rate > 0:
        x = layers.Dropout(options.dropout_rate, name="dropout")(x)
    x = layers.Conv2D(options.classes, 1, padding="same", name="logits")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Activation(options.classifier_activation, name="predictions")(x)
