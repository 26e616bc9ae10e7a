"""The one place that decides how a layer is written for an int8 file (PTQ and QAT alike).

Hard-swish: TFLite fuses x * ReLU6(x + 3) / 6 into one HARD_SWISH op, which XNNPACK runs only in float,
so int8 files take the layer's `for_int8` form ReLU6(x + 3) * (x / 6), which stays ADD, MUL, MUL in int8
(see nets.layers.HardSwish). Float files keep the fused op, the fastest in float.
"""

from keras_mobilenets.nets.flavors import flavor_of


def int8_layer(layer):
    """`layer` as an int8 file computes it: a new HardSwish in the int8 form, any other layer itself."""
    if type(layer).__name__ == "HardSwish" and not layer.for_int8:
        return type(layer).from_config({**layer.get_config(), "for_int8": True})
    return layer


def int8_form(model):
    """`model` as an int8 file computes it, without touching `model`: a functional copy that shares
    every layer (so every weight) except the hard-swish layers, which are new ones in the int8 form."""
    if all(int8_layer(layer) is layer for layer in model.layers):
        return model
    return flavor_of(model).keras.models.clone_model(model, clone_function=int8_layer)
