"""The public builders: thin wrappers that pick a table and defaults, validate, build and load weights.

Arguments and defaults follow keras.applications, plus `include_preprocessing` on every version (the one
preprocessing contract: True means the model takes [0, 255] pixels), `output_stride` and `flavor`.
"""

from keras_mobilenets.nets import validation
from keras_mobilenets.nets.architectures import ARCHITECTURES
from keras_mobilenets.nets.builder import build
from keras_mobilenets.nets.flavors import FLAVORS, get_flavor
from keras_mobilenets.nets.spec import Architecture, DepthwiseSeparable
from keras_mobilenets.nets.weights import load_weights, resolve_imagenet

_ARCH_NAMES = ("v1", "v2", "v3-large", "v3-small")


def _architecture(arch, minimalistic):
    if isinstance(arch, Architecture):
        if minimalistic and not arch.minimalistic:
            validation.fail("minimalistic", minimalistic,
                            "False for a custom table (make it minimalistic with spec.minimalistic)")
        return arch
    validation.check_choice("arch", arch, _ARCH_NAMES)
    if minimalistic:
        if arch in ("v1", "v2"):
            validation.fail("minimalistic", minimalistic,
                            "False for MobileNetV1/V2 (only MobileNetV3 has minimalistic variants)")
        return ARCHITECTURES[f"{arch}-minimalistic"]
    return ARCHITECTURES[arch]


def _input_shape(arch, input_shape, input_tensor, include_top, flavor):
    if input_shape is not None:
        return input_shape
    if input_tensor is not None and flavor.is_keras_tensor(input_tensor):
        return tuple(input_tensor.shape[1:])
    if include_top and arch.default_size:
        return (arch.default_size, arch.default_size, 3)
    return (None, None, 3)


def create_model(arch, *, input_shape=None, alpha=1.0, minimalistic=False, depth_multiplier=1,
                 include_top=True, weights=None, input_tensor=None, pooling=None, classes=1000,
                 classifier_activation="softmax", dropout_rate=0.0, include_preprocessing=None,
                 output_stride=None, name=None, flavor="keras"):
    """Build any MobileNet from a name ("v1", "v2", "v3-large", "v3-small") or an `Architecture` table.

    `include_preprocessing=None` means the architecture's keras.applications default (False for V1/V2,
    True for V3). `output_stride` 8 or 16 turns later strides into dilation (DeepLab-style).
    """
    arch = _architecture(arch, minimalistic)
    alpha = validation.check_alpha(alpha)
    validation.check_choice("flavor", flavor, FLAVORS)
    flavor_obj = get_flavor(flavor)
    depth_multiplier = validation.check_positive_int("depth_multiplier", depth_multiplier,
                                                     "a positive integer")
    if depth_multiplier != 1 and not any(isinstance(r, DepthwiseSeparable) for r in arch.rows):
        validation.fail("depth_multiplier", depth_multiplier,
                        "1 for architectures without depthwise-separable (MobileNetV1) blocks")
    weights = validation.check_weights(weights)
    if weights == "imagenet" and depth_multiplier != 1:
        validation.fail("depth_multiplier", depth_multiplier, '1 with weights="imagenet"')
    validation.check_choice("pooling", pooling, validation.POOLING)
    validation.check_choice("output_stride", output_stride, validation.OUTPUT_STRIDES)
    classes = validation.check_top(include_top, weights, classes, classifier_activation)
    dropout_rate = validation.check_dropout(dropout_rate)
    if input_tensor is not None and not hasattr(input_tensor, "shape"):
        validation.fail("input_tensor", input_tensor, f"a {flavor} tensor (e.g. from keras.Input)")
    input_shape = validation.check_input_shape(
        _input_shape(arch, input_shape, input_tensor, include_top, flavor_obj), weights)
    if include_preprocessing is None:
        include_preprocessing = arch.include_preprocessing

    model = build(
        arch, input_shape=input_shape, input_tensor=input_tensor, name=name, flavor=flavor,
        alpha=alpha, depth_multiplier=depth_multiplier, include_top=include_top, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation, dropout_rate=dropout_rate,
        include_preprocessing=bool(include_preprocessing), output_stride=output_stride,
    )
    if weights == "imagenet":
        weights = resolve_imagenet(arch, alpha, input_shape, include_top)
    if weights is not None:
        load_weights(model, weights)
    return model


def MobileNetV1(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3, include_top=True,
                weights="imagenet", input_tensor=None, pooling=None, classes=1000,
                classifier_activation="softmax", include_preprocessing=False, output_stride=None,
                name=None, flavor="keras"):
    """MobileNetV1 (arXiv 1704.04861), layer for layer keras.applications.MobileNet.

    Expects pixels in [-1, 1] (see `preprocess_input`), or [0, 255] with include_preprocessing=True.
    """
    return create_model(
        "v1", input_shape=input_shape, alpha=alpha, depth_multiplier=depth_multiplier,
        dropout_rate=dropout, include_top=include_top, weights=weights, input_tensor=input_tensor,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, output_stride=output_stride, name=name,
        flavor=flavor,
    )


MobileNet = MobileNetV1


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights="imagenet", input_tensor=None,
                pooling=None, classes=1000, classifier_activation="softmax", dropout_rate=0.0,
                include_preprocessing=False, output_stride=None, name=None, flavor="keras"):
    """MobileNetV2 (arXiv 1801.04381), layer for layer keras.applications.MobileNetV2.

    Expects pixels in [-1, 1] (see `preprocess_input`), or [0, 255] with include_preprocessing=True.
    """
    return create_model(
        "v2", input_shape=input_shape, alpha=alpha, include_top=include_top, weights=weights,
        input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate,
        include_preprocessing=include_preprocessing, output_stride=output_stride, name=name,
        flavor=flavor,
    )


def _v3(arch, input_shape, alpha, minimalistic, include_top, weights, input_tensor, classes, pooling,
        dropout_rate, classifier_activation, include_preprocessing, output_stride, name, flavor):
    return create_model(
        arch, input_shape=input_shape, alpha=alpha, minimalistic=minimalistic,
        include_top=include_top, weights=weights, input_tensor=input_tensor, classes=classes,
        pooling=pooling, dropout_rate=dropout_rate, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, output_stride=output_stride, name=name,
        flavor=flavor,
    )


def MobileNetV3Large(input_shape=None, alpha=1.0, minimalistic=False, include_top=True,
                     weights="imagenet", input_tensor=None, classes=1000, pooling=None,
                     dropout_rate=0.2, classifier_activation="softmax", include_preprocessing=True,
                     output_stride=None, name="MobileNetV3Large", flavor="keras"):
    """MobileNetV3-Large (arXiv 1905.02244), layer for layer keras.applications.MobileNetV3Large.

    Expects [0, 255] pixels (include_preprocessing=True, the default), or [-1, 1] without it.
    """
    return _v3("v3-large", input_shape, alpha, minimalistic, include_top, weights, input_tensor,
               classes, pooling, dropout_rate, classifier_activation, include_preprocessing,
               output_stride, name, flavor)


def MobileNetV3Small(input_shape=None, alpha=1.0, minimalistic=False, include_top=True,
                     weights="imagenet", input_tensor=None, classes=1000, pooling=None,
                     dropout_rate=0.2, classifier_activation="softmax", include_preprocessing=True,
                     output_stride=None, name="MobileNetV3Small", flavor="keras"):
    """MobileNetV3-Small (arXiv 1905.02244), layer for layer keras.applications.MobileNetV3Small.

    Expects [0, 255] pixels (include_preprocessing=True, the default), or [-1, 1] without it.
    """
    return _v3("v3-small", input_shape, alpha, minimalistic, include_top, weights, input_tensor,
               classes, pooling, dropout_rate, classifier_activation, include_preprocessing,
               output_stride, name, flavor)
