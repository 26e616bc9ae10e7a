"""The built-in detection blocks: extra layers `block(x, row, ctx) -> x` and predictors
`block(x, row, ctx) -> (box_encodings, class_logits)`, registered under the names the rows use.

Predictors end in a Reshape to [batch, height * width * anchors, 4 | classes]: anchors vary fastest, then
x, then y, the order `anchors.ssd_anchors` generates. Stride-2 layers use "same" padding (TF's SAME, the
Object Detection API's choice), so any map size halves to ceil(size / 2).
"""

from keras_mobilenets.nets.registry import register_block


def _conv_bn_relu(x, ctx, filters, kernel, stride, name):
    x = ctx.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          kernel_initializer=ctx.initializer(), name=name)(x)
    x = ctx.batch_norm(f"{name}_bn")(x)
    return ctx.layers.ReLU(6.0, name=f"{name}_relu")(x)


def _depthwise_bn_relu(x, ctx, kernel, stride, name):
    x = ctx.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   depthwise_initializer=ctx.initializer(), name=name)(x)
    x = ctx.batch_norm(f"{name}_bn")(x)
    return ctx.layers.ReLU(6.0, name=f"{name}_relu")(x)


@register_block("ssdlite_extra")
def ssdlite_extra(x, row, ctx):
    """1x1 to half the depth, 3x3 depthwise stride 2, 1x1 to the depth; BN + ReLU6 after each."""
    prefix = f"extra_{ctx.map_index}_"
    depth = ctx.depth(row.filters)
    x = _conv_bn_relu(x, ctx, ctx.depth(row.filters / 2), 1, 1, f"{prefix}project")
    x = _depthwise_bn_relu(x, ctx, 3, 2, f"{prefix}depthwise")
    return _conv_bn_relu(x, ctx, depth, 1, 1, f"{prefix}conv")


@register_block("ssd_extra")
def ssd_extra(x, row, ctx):
    """1x1 to half the depth, full 3x3 conv stride 2 to the depth; BN + ReLU6 after each."""
    prefix = f"extra_{ctx.map_index}_"
    x = _conv_bn_relu(x, ctx, ctx.depth(row.filters / 2), 1, 1, f"{prefix}project")
    return _conv_bn_relu(x, ctx, ctx.depth(row.filters), 3, 2, f"{prefix}conv")


def _flatten(x, ctx, size, name):
    """[B, H, W, anchors * size] -> [B, H * W * anchors, size]."""
    height, width = x.shape[1], x.shape[2]
    return ctx.layers.Reshape((height * width * ctx.anchors, size), name=name)(x)


def _outputs(ctx, row):
    return (("box", 4, "zeros"),
            ("class", ctx.num_classes, ctx.keras.initializers.Constant(row.class_bias_init)))


@register_block("ssdlite_predictor")
def ssdlite_predictor(x, row, ctx):
    """Box and class predictors, each a 3x3 depthwise (BN + ReLU6) and a 1x1 conv with bias."""
    results = []
    for kind, size, bias in _outputs(ctx, row):
        prefix = f"predictor_{ctx.map_index}_{kind}_"
        y = _depthwise_bn_relu(x, ctx, row.kernel, 1, f"{prefix}depthwise")
        y = ctx.layers.Conv2D(ctx.anchors * size, 1, padding="same", kernel_initializer=ctx.initializer(),
                              bias_initializer=bias, name=f"{prefix}conv")(y)
        results.append(_flatten(y, ctx, size, f"{prefix}reshape"))
    return tuple(results)


@register_block("ssd_predictor")
def ssd_predictor(x, row, ctx):
    """Box and class predictors, each one full k x k conv with bias (plain SSD)."""
    results = []
    for kind, size, bias in _outputs(ctx, row):
        prefix = f"predictor_{ctx.map_index}_{kind}_"
        y = ctx.layers.Conv2D(ctx.anchors * size, row.kernel, padding="same",
                              kernel_initializer=ctx.initializer(), bias_initializer=bias,
                              name=f"{prefix}conv")(x)
        results.append(_flatten(y, ctx, size, f"{prefix}reshape"))
    return tuple(results)
