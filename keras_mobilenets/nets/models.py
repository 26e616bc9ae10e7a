"""The public builders: thin wrappers that pick a table and defaults, validate, build and load weights.

Arguments and defaults follow keras.applications, plus `include_preprocessing` on every version (the one
preprocessing contract: True means the model takes [0, 255] pixels), `output_stride` and `flavor`.
"""

from keras_mobilenets.nets import validation
from keras_mobilenets.nets.architectures import ARCHITECTURES, V4_ARCHITECTURES
from keras_mobilenets.nets.builder import build
from keras_mobilenets.nets.flavors import FLAVORS, get_flavor
from keras_mobilenets.nets.spec import Architecture, DepthwiseSeparable
from keras_mobilenets.nets.spec_v4 import MobileMQA
from keras_mobilenets.nets.timm_weights import load_timm_weights
from keras_mobilenets.nets.weights import load_weights, resolve_imagenet

ARCH_NAMES = ("v1", "v2", "v3-large", "v3-small",
              # MobileNetV4 and the Model Garden MobileNets (nets/architectures.py, second part)
              "v4-conv-small", "v4-conv-medium", "v4-conv-large", "v4-hybrid-medium", "v4-hybrid-large",
              "edgetpu", "multi-avg", "multi-max", "multi-avg-seg", "multi-max-seg")

_ARGS = {
    "arch": f"an architecture name {ARCH_NAMES} or an `Architecture` table.",
    "input_shape": "(height, width, channels); height and width None or >= 32. Default: the "
                   "architecture's 224x224x3 with a top, (None, None, 3) without one.",
    "alpha": "width multiplier: every layer's filters scale by it (rounded as the paper's table says).",
    "minimalistic": "MobileNetV3 without squeeze-excite, hard-swish and 5x5 kernels.",
    "depth_multiplier": "MobileNetV1's depthwise channel multiplier.",
    "include_top": "whether to end in the ImageNet-style classifier.",
    "weights": 'None (random), "imagenet" (the official file, from the Keras cache or downloaded) or '
               "a path to a weights file (a timm .safetensors file for MobileNetV4, see load_timm_weights).",
    "input_tensor": "an optional Keras tensor to build the model on.",
    "pooling": 'without a top: None (4D feature map), "avg" or "max" (global pooling to 2D).',
    "classes": "number of classes for the top (1000 with ImageNet weights).",
    "classifier_activation": 'the top\'s activation: "softmax", None for logits, or any Keras activation.',
    "dropout": "dropout rate before the classifier.",
    "dropout_rate": "dropout rate before the classifier.",
    "include_preprocessing": "True: the model takes [0, 255] pixels (a Rescaling layer inside); False: "
                             "[-1, 1] (see `preprocess_input`).",
    "output_stride": "8, 16 or 32 (None): strides past it become dilation, DeepLab-style.",
    "bn_momentum": "BatchNorm momentum; None keeps the architecture's (0.999 for V2/V3, tuned for "
                   "ImageNet; 0.9 suits short runs from scratch).",
    "name": "the model's name.",
    "flavor": '"keras" (Keras 3, default) or "tf_keras" (Keras 2, what tfmot quantizes).',
}


def _doc(summary, names):
    """keras.applications-style docstrings: one shared text per argument."""
    lines = [f"    {name}: {_ARGS[name]}" for name in names]
    return f"{summary}\n\nArgs:\n" + "\n".join(lines) + "\n\nReturns:\n    A flat functional Keras model.\n"



def _architecture(arch, minimalistic):
    if isinstance(arch, Architecture):
        if minimalistic and not arch.minimalistic:
            validation.fail("minimalistic", minimalistic,
                            "False for a custom table (make it minimalistic with spec.minimalistic)")
        return arch
    validation.check_choice("arch", arch, ARCH_NAMES)
    if minimalistic:
        if not arch.startswith("v3"):
            validation.fail("minimalistic", minimalistic,
                            f"False for {arch!r} (only MobileNetV3 has minimalistic variants)")
        return ARCHITECTURES[f"{arch}-minimalistic"]
    return ARCHITECTURES[arch]


def _has_attention(arch):
    return any(isinstance(row, MobileMQA) for row in arch.rows)


def _total_stride(arch):
    total = 1
    for row in arch.rows:
        total *= getattr(row, "stride", 1)
    return total


def _input_shape(arch, input_shape, input_tensor, include_top, flavor):
    if input_shape is not None:
        return input_shape
    if input_tensor is not None and flavor.is_keras_tensor(input_tensor):
        return tuple(input_tensor.shape[1:])
    if (include_top or _has_attention(arch)) and arch.default_size:  # attention reshapes need a fixed size
        return (arch.default_size, arch.default_size, 3)
    return (None, None, 3)


def create_model(arch: str | Architecture, *, input_shape: tuple | None = None, alpha: float = 1.0,
                 minimalistic: bool = False, depth_multiplier: int = 1, include_top: bool = True,
                 weights: str | None = None, input_tensor=None, pooling: str | None = None,
                 classes: int = 1000, classifier_activation="softmax", dropout_rate: float = 0.0,
                 include_preprocessing: bool | None = None, output_stride: int | None = None,
                 bn_momentum: float | None = None, name: str | None = None, flavor: str = "keras"):
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
    if weights == "imagenet" and arch in V4_ARCHITECTURES.values():
        validation.fail("weights", weights, "None or a path: no Keras ImageNet file exists for "
                        f"{arch.name}; timm's .safetensors weights load from a path (see load_timm_weights)")
    if weights == "imagenet" and depth_multiplier != 1:
        validation.fail("depth_multiplier", depth_multiplier, '1 with weights="imagenet"')
    validation.check_choice("pooling", pooling, validation.POOLING)
    validation.check_choice("output_stride", output_stride, validation.OUTPUT_STRIDES)
    if output_stride is not None and output_stride > _total_stride(arch):
        reachable = tuple(s for s in validation.OUTPUT_STRIDES if s is None or s <= _total_stride(arch))
        validation.fail("output_stride", output_stride,
                        f"one of {reachable}: the table {arch.name!r} only reaches stride {_total_stride(arch)}")
    classes = validation.check_top(include_top, weights, classes, classifier_activation)
    dropout_rate = validation.check_dropout(dropout_rate)
    bn_momentum = validation.check_bn_momentum(bn_momentum)
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
        bn_momentum=bn_momentum,
    )
    if weights == "imagenet":
        weights = resolve_imagenet(arch, alpha, input_shape, include_top)
    if weights is not None and str(weights).endswith(".safetensors"):
        load_timm_weights(model, weights)
    elif weights is not None:
        load_weights(model, weights)
    return model


def MobileNetV1(input_shape: tuple | None = None, alpha: float = 1.0, depth_multiplier: int = 1,
                dropout: float = 1e-3, include_top: bool = True, weights: str | None = "imagenet",
                input_tensor=None, pooling: str | None = None, classes: int = 1000,
                classifier_activation="softmax", include_preprocessing: bool = False,
                output_stride: int | None = None, name: str | None = None, flavor: str = "keras"):
    return create_model(
        "v1", input_shape=input_shape, alpha=alpha, depth_multiplier=depth_multiplier,
        dropout_rate=dropout, include_top=include_top, weights=weights, input_tensor=input_tensor,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, output_stride=output_stride, name=name,
        flavor=flavor,
    )


MobileNet = MobileNetV1


def MobileNetV2(input_shape: tuple | None = None, alpha: float = 1.0, include_top: bool = True,
                weights: str | None = "imagenet", input_tensor=None, pooling: str | None = None,
                classes: int = 1000, classifier_activation="softmax", dropout_rate: float = 0.0,
                include_preprocessing: bool = False, output_stride: int | None = None,
                name: str | None = None, flavor: str = "keras"):
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


def MobileNetV3Large(input_shape: tuple | None = None, alpha: float = 1.0, minimalistic: bool = False,
                     include_top: bool = True, weights: str | None = "imagenet", input_tensor=None,
                     classes: int = 1000, pooling: str | None = None, dropout_rate: float = 0.2,
                     classifier_activation="softmax", include_preprocessing: bool = True,
                     output_stride: int | None = None, name: str = "MobileNetV3Large", flavor: str = "keras"):
    return _v3("v3-large", input_shape, alpha, minimalistic, include_top, weights, input_tensor,
               classes, pooling, dropout_rate, classifier_activation, include_preprocessing,
               output_stride, name, flavor)


def MobileNetV3Small(input_shape: tuple | None = None, alpha: float = 1.0, minimalistic: bool = False,
                     include_top: bool = True, weights: str | None = "imagenet", input_tensor=None,
                     classes: int = 1000, pooling: str | None = None, dropout_rate: float = 0.2,
                     classifier_activation="softmax", include_preprocessing: bool = True,
                     output_stride: int | None = None, name: str = "MobileNetV3Small", flavor: str = "keras"):
    return _v3("v3-small", input_shape, alpha, minimalistic, include_top, weights, input_tensor,
               classes, pooling, dropout_rate, classifier_activation, include_preprocessing,
               output_stride, name, flavor)


def _v4(arch, input_shape, alpha, include_top, weights, input_tensor, pooling, classes,
        classifier_activation, dropout_rate, include_preprocessing, output_stride, name, flavor):
    return create_model(
        arch, input_shape=input_shape, alpha=alpha, include_top=include_top, weights=weights,
        input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate,
        include_preprocessing=include_preprocessing, output_stride=output_stride, name=name, flavor=flavor,
    )


def _v4_builder(arch, function_name, summary):
    def builder(input_shape: tuple | None = None, alpha: float = 1.0, include_top: bool = True,
                weights: str | None = None, input_tensor=None, pooling: str | None = None,
                classes: int = 1000, classifier_activation="softmax", dropout_rate: float = 0.0,
                include_preprocessing: bool = False, output_stride: int | None = None,
                name: str | None = None, flavor: str = "keras"):
        return _v4(arch, input_shape, alpha, include_top, weights, input_tensor, pooling, classes,
                   classifier_activation, dropout_rate, include_preprocessing, output_stride, name, flavor)

    builder.__name__ = builder.__qualname__ = function_name
    builder.__doc__ = _doc(summary, _COMMON + ("dropout_rate", "include_preprocessing", "output_stride",
                                               "name", "flavor"))
    return builder


_COMMON = ("input_shape", "alpha", "include_top", "weights", "input_tensor", "pooling", "classes",
           "classifier_activation")
create_model.__doc__ = _doc(
    "Build any MobileNet from a name or a table, with `weights=None` by default.\n\n"
    "`include_preprocessing=None` means the architecture's keras.applications default (False for V1/V2, "
    "True for V3).",
    ("arch",) + _COMMON[:2] + ("minimalistic", "depth_multiplier") + _COMMON[2:]
    + ("dropout_rate", "include_preprocessing", "output_stride", "bn_momentum", "name", "flavor"))
MobileNetV1.__doc__ = _doc(
    "MobileNetV1 (arXiv 1704.04861), layer for layer keras.applications.MobileNet. Takes [-1, 1] pixels "
    "(see `preprocess_input`), or [0, 255] with include_preprocessing=True.",
    _COMMON[:2] + ("depth_multiplier", "dropout") + _COMMON[2:]
    + ("include_preprocessing", "output_stride", "name", "flavor"))
MobileNetV2.__doc__ = _doc(
    "MobileNetV2 (arXiv 1801.04381), layer for layer keras.applications.MobileNetV2. Takes [-1, 1] "
    "pixels (see `preprocess_input`), or [0, 255] with include_preprocessing=True.",
    _COMMON + ("dropout_rate", "include_preprocessing", "output_stride", "name", "flavor"))
for _builder, _paper in ((MobileNetV3Large, "MobileNetV3-Large"), (MobileNetV3Small, "MobileNetV3-Small")):
    _builder.__doc__ = _doc(
        f"{_paper} (arXiv 1905.02244), layer for layer keras.applications.{_builder.__name__}. Takes "
        "[0, 255] pixels (include_preprocessing=True, the default), or [-1, 1] without it.",
        _COMMON[:2] + ("minimalistic",) + _COMMON[2:]
        + ("dropout_rate", "include_preprocessing", "output_stride", "name", "flavor"))

_V4_DOC = ("{paper} (arXiv 2404.10518), as Model Garden and timm build it; default input {size}x{size}. "
           "Takes [-1, 1] pixels, or [0, 255] with include_preprocessing=True (timm's ImageNet weights expect "
           "ImageNet mean/std normalization instead; see load_timm_weights). No ImageNet file is downloaded: "
           "weights is None or a path (a timm .safetensors file).")
MobileNetV4ConvSmall = _v4_builder("v4-conv-small", "MobileNetV4ConvSmall",
                                   _V4_DOC.format(paper="MobileNetV4-Conv-S", size=224))
MobileNetV4ConvMedium = _v4_builder("v4-conv-medium", "MobileNetV4ConvMedium",
                                    _V4_DOC.format(paper="MobileNetV4-Conv-M", size=256))
MobileNetV4ConvLarge = _v4_builder("v4-conv-large", "MobileNetV4ConvLarge",
                                   _V4_DOC.format(paper="MobileNetV4-Conv-L", size=384))
MobileNetV4HybridMedium = _v4_builder("v4-hybrid-medium", "MobileNetV4HybridMedium",
                                      _V4_DOC.format(paper="MobileNetV4-Hybrid-M", size=256))
MobileNetV4HybridLarge = _v4_builder("v4-hybrid-large", "MobileNetV4HybridLarge",
                                     _V4_DOC.format(paper="MobileNetV4-Hybrid-L", size=384))
_MG_DOC = ("{paper} from TF Model Garden's table (official/vision/modeling/backbones/mobilenet.py), from the "
           "same blocks as MobileNetV4. Takes [-1, 1] pixels, or [0, 255] with include_preprocessing=True.")
MobileNetEdgeTPU = _v4_builder("edgetpu", "MobileNetEdgeTPU", _MG_DOC.format(paper="MobileNet-EdgeTPU"))
MobileNetMultiAVG = _v4_builder("multi-avg", "MobileNetMultiAVG",
                                _MG_DOC.format(paper="MobileNet-MultiHardware-AVG (arXiv 2008.08178)"))
MobileNetMultiMAX = _v4_builder("multi-max", "MobileNetMultiMAX",
                                _MG_DOC.format(paper="MobileNet-MultiHardware-MAX (arXiv 2008.08178)"))
MobileNetMultiAVGSeg = _v4_builder("multi-avg-seg", "MobileNetMultiAVGSeg",
                                   _MG_DOC.format(paper="MobileNet-MultiAVG for segmentation (last stage halved)"))
MobileNetMultiMAXSeg = _v4_builder("multi-max-seg", "MobileNetMultiMAXSeg",
                                   _MG_DOC.format(paper="MobileNet-MultiMAX for segmentation (last stage halved)"))
