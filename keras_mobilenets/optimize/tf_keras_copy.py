"""A Keras 3 model copied into the same flat graph of tf_keras layers (same names, same weights), the
flavor tfmot needs; optionally with every BatchNorm folded into the conv before it (per-tensor QAT)."""

import dataclasses
import inspect

import numpy as np

from keras_mobilenets.nets.builder import block_info, set_block_info
from keras_mobilenets.nets.flavors import flavor_of, get_flavor


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
    """Names of the layers feeding one layer, from a functional config of either flavor (one call per layer)."""
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
        if isinstance(node, list):  # tf_keras: [[layer name, node index, tensor index, kwargs], ...]
            names.extend(item[0] for item in node)
        else:
            walk(node.get("args", []))
    return names


FOLDABLE = ("Conv2D", "DepthwiseConv2D")


def _fold_pairs(config):
    """{conv name: BatchNorm name} for every Conv2D/DepthwiseConv2D whose only consumer is a BatchNorm."""
    kinds = {entry["config"]["name"]: entry["class_name"] for entry in config["layers"]}
    consumers = {}
    for entry in config["layers"]:
        for name in _inbound(entry):
            consumers.setdefault(name, []).append(entry)
    pairs = {}
    for name, kind in kinds.items():
        users = consumers.get(name, [])
        if kind in FOLDABLE and len(users) == 1 and users[0]["class_name"] == "BatchNormalization":
            pairs[name] = users[0]["config"]["name"]
    return pairs


def _folded_weights(conv, batch_norm):
    """Kernel and bias of `conv` followed by `batch_norm` (inference statistics) as one conv."""
    gamma, beta, mean, variance = (np.asarray(w) for w in batch_norm.get_weights())
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    weights = [np.asarray(w) for w in conv.get_weights()]
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros_like(mean)
    if type(conv).__name__ == "DepthwiseConv2D":  # output channel c * depth_multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    return [kernel, (bias - mean) * scale + beta]


def to_tf_keras(model, fold_batch_norm=False):
    """The same flat graph as tf_keras layers with the same names and weights (outputs agree).

    `fold_batch_norm=True` merges each BatchNorm into the Conv2D/DepthwiseConv2D before it (the conv
    keeps its name and gets a bias; BatchNorm's inference statistics are frozen into the weights), the
    graph per-tensor int8 QAT needs: TFLite cannot fold a per-channel BatchNorm scale into one weight scale.
    """
    if flavor_of(model).name == "tf_keras" and not fold_batch_norm:
        return model
    flavor = get_flavor("tf_keras")
    config = model.get_config()
    pairs = _fold_pairs(config) if fold_batch_norm else {}
    folded = {bn: conv for conv, bn in pairs.items()}
    by_name = {layer.name: layer for layer in model.layers}
    tensors = {}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        source = by_name[name]
        if entry["class_name"] == "InputLayer":
            tensors[name] = flavor.keras.Input(shape=tuple(source.output.shape[1:]), name=name)
            continue
        if name in folded:
            tensors[name] = tensors[folded[name]]
            continue
        cls = _layer_class(flavor, entry["class_name"])
        layer_config = _config_for(cls, source.get_config())
        if name in pairs:
            layer_config["use_bias"] = True
            weights = _folded_weights(source, by_name[pairs[name]])
        else:
            weights = source.get_weights()
        layer = cls(**layer_config)
        inputs = [tensors[n] for n in _inbound(entry)]
        tensors[name] = layer(inputs if len(inputs) > 1 else inputs[0])
        layer.set_weights(weights)
    inputs = [tensors[spec[0]] for spec in _as_list(config["input_layers"])]
    outputs = [tensors[spec[0]] for spec in _as_list(config["output_layers"])]
    rebuilt = flavor.keras.Model(inputs if len(inputs) > 1 else inputs[0],
                                 outputs if len(outputs) > 1 else outputs[0], name=model.name)
    set_block_info(rebuilt, (  # a folded BatchNorm's place goes to its conv
        dataclasses.replace(info, output=folded.get(info.output, info.output),
                            layers=tuple(n for n in info.layers if n not in folded))
        for info in block_info(model, required=False)))
    return rebuilt


def _as_list(specs):
    return [specs] if specs and isinstance(specs[0], str) else list(specs)
