"""The two Keras flavors one builder emits: Keras 3 (the public models) and tf_keras (what tfmot needs).

Blocks never import a Keras package themselves; they receive a `Flavor` and build with its layers.
"""

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType

from keras_mobilenets.extras import require
from keras_mobilenets.nets.layers import define_activation_layers

FLAVORS = ("keras", "tf_keras")


@dataclass(frozen=True)
class Flavor:
    """One Keras implementation: its module, and our custom layers defined against it."""

    name: str
    keras: ModuleType
    HardSigmoid: type
    HardSwish: type

    @property
    def layers(self):
        return self.keras.layers

    def model(self, inputs, outputs, name=None):
        return self.keras.Model(inputs, outputs, name=name)

    def input(self, shape, tensor=None):
        if tensor is None:
            return self.keras.Input(shape=shape)
        return self.keras.Input(shape=shape, tensor=tensor)

    def is_keras_tensor(self, value):
        return self.keras.backend.is_keras_tensor(value)

    def layer_of(self, tensor):
        """The layer that produced a symbolic tensor."""
        history = tensor._keras_history
        return history.operation if self.name == "keras" else history.layer

    def source_inputs(self, tensor):
        return self.keras.utils.get_source_inputs(tensor)


def flavor_of(model):
    """The `Flavor` a built model belongs to."""
    return get_flavor(flavor_of_layer(model))


@functools.cache
def get_flavor(name="keras"):
    """Return the `Flavor` for "keras" (Keras 3, default) or "tf_keras" (Keras 2, for tfmot)."""
    if name not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}; received flavor={name!r}")
    if name == "keras":
        keras = importlib.import_module("keras")
        relu6 = keras.ops.relu6
        register = keras.saving.register_keras_serializable
    else:
        keras = require("tf_keras", "optimize")
        import tensorflow as tf

        relu6 = tf.nn.relu6
        register = keras.utils.register_keras_serializable
    hard_sigmoid, hard_swish = define_activation_layers(keras, relu6, register)
    return Flavor(name=name, keras=keras, HardSigmoid=hard_sigmoid, HardSwish=hard_swish)


def unwrapped(layer):
    """The layer a Keras `Wrapper` holds (tfmot's QAT and pruning wrappers are Wrappers), else `layer`."""
    wrapper = get_flavor(flavor_of_layer(layer)).layers.Wrapper
    return layer.layer if isinstance(layer, wrapper) else layer


def flavor_of_layer(layer):
    """"tf_keras" or "keras": the package a layer's class comes from."""
    return "tf_keras" if any(c.__module__.startswith("tf_keras") for c in type(layer).__mro__) else "keras"
