"""Quantization-aware training with tensorflow-model-optimization, for every MobileNet variant.

tfmot only wraps tf_keras (Keras 2) models, and it knows nothing of hard-swish, hard-sigmoid, the
squeeze-excite Multiply or an in-model Rescaling. `quantize_model` copies one of our Keras 3 models into
the same flat graph of tf_keras layers (same names, same weights), then applies tfmot with output
quantizers for those layers, so tfmot's Conv+BN(+ReLU) folding still happens everywhere else.
"""

import inspect

import numpy as np

from keras_mobilenets.flavors import flavor_of, get_flavor

OUTPUT_QUANTIZED = ("HardSwish", "HardSigmoid", "Multiply", "Rescaling")


def _tfmot():
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("quantization needs tensorflow-model-optimization and tf-keras: "
                          "pip install 'tensorflow-model-optimization>=0.8' tf-keras") from error
    return tfmot


def _layer_class(flavor, class_name):
    custom = {"HardSwish": flavor.HardSwish, "HardSigmoid": flavor.HardSigmoid}
    if class_name in custom:
        return custom[class_name]
    cls = getattr(flavor.keras.layers, class_name, None)
    if cls is None:
        raise ValueError(f"layer class {class_name!r} has no tf_keras counterpart; quantize_model takes "
                         "models made of built-in layers and keras_mobilenets' own layers")
    return cls


def _config_for(cls, config):
    """A Keras 3 layer config made acceptable to the tf_keras class (dtype as a name, no new keys)."""
    config = dict(config)
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        config["dtype"] = dtype.get("config", {}).get("name", "float32")
    allowed = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            allowed |= set(inspect.signature(klass.__init__).parameters)
    allowed |= {"name", "trainable", "dtype"}
    # initializers, regularizers and constraints serialize differently and do not matter here: the
    # weights are copied and QAT fine-tuning is short
    return {k: v for k, v in config.items() if k in allowed
            and not k.endswith(("_initializer", "_regularizer", "_constraint"))}


def _inbound(layer_config):
    """Names of the layers feeding one layer, from a Keras 3 functional config (one call per layer)."""
    nodes = layer_config.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise ValueError(f"layer {layer_config['name']!r} is called more than once; quantize_model "
                         "takes flat graphs where every layer is used once")
    names = []

    def walk(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                names.append(value["config"]["keras_history"][0])
            else:
                for item in value.values():
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for node in nodes:
        walk(node.get("args", []))
    return names


def to_tf_keras(model):
    """The same flat graph as tf_keras layers with the same names and weights (outputs agree)."""
    if flavor_of(model).name == "tf_keras":
        return model
    flavor = get_flavor("tf_keras")
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    tensors = {}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        source = by_name[name]
        if entry["class_name"] == "InputLayer":
            tensors[name] = flavor.keras.Input(shape=tuple(source.output.shape[1:]), name=name)
            continue
        cls = _layer_class(flavor, entry["class_name"])
        layer = cls(**_config_for(cls, source.get_config()))
        inputs = [tensors[n] for n in _inbound(entry)]
        tensors[name] = layer(inputs if len(inputs) > 1 else inputs[0])
        layer.set_weights(source.get_weights())
    inputs = [tensors[spec[0]] for spec in _as_list(config["input_layers"])]
    outputs = [tensors[spec[0]] for spec in _as_list(config["output_layers"])]
    rebuilt = flavor.keras.Model(inputs if len(inputs) > 1 else inputs[0],
                                 outputs if len(outputs) > 1 else outputs[0], name=model.name)
    rebuilt.block_info = getattr(model, "block_info", ())
    return rebuilt


def _as_list(specs):
    return [specs] if specs and isinstance(specs[0], str) else list(specs)


def quantize_scope():
    """The custom objects a QAT model needs to be reloaded (tfmot's quantize_scope plus our layers)."""
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    flavor = get_flavor("tf_keras")
    return tfmot.quantization.keras.quantize_scope({
        "HardSwish": flavor.HardSwish, "HardSigmoid": flavor.HardSigmoid,
        "Default8BitOutputQuantizeConfig": configs.Default8BitOutputQuantizeConfig})


def quantize_model(model):
    """A tfmot QAT model (tf_keras) of one of our Keras 3 (or tf_keras) models, weights copied.

    Conv/Depthwise + BatchNorm (+ ReLU) are folded by tfmot's default 8-bit scheme; hard-swish,
    hard-sigmoid, the squeeze-excite Multiply and Rescaling get 8-bit output quantizers.
    """
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    source = to_tf_keras(model)
    keras2 = get_flavor("tf_keras").keras
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotated(layer):
        if type(layer).__name__ in OUTPUT_QUANTIZED:
            return annotate(layer, configs.Default8BitOutputQuantizeConfig())
        if type(layer).__name__ == "InputLayer":
            return layer
        return annotate(layer)

    marked = keras2.models.clone_model(source, clone_function=annotated)
    with quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(marked)
    qat.block_info = getattr(model, "block_info", ())
    return qat


def float_outputs(model, images):
    """Run a Keras model of either flavor on a numpy batch, in inference mode."""
    return np.asarray(model(images, training=False))
