"""Small serializable layers the papers need and Keras lacks as layers.

hard-sigmoid and hard-swish are written as layers (not tensor arithmetic) so the graph has no TFOpLambda
and tfmot can attach QuantizeConfigs to them. The same definitions are made once per Keras flavor.
"""


def define_activation_layers(keras_module, relu6, register):
    """Return (HardSigmoid, HardSwish) subclassing `keras_module.layers.Layer`.

    `relu6` is the flavor's elementwise ReLU6 and `register` its `register_keras_serializable`.
    """

    @register(package="keras_mobilenets")
    class HardSigmoid(keras_module.layers.Layer):
        """h-sigmoid(x) = ReLU6(x + 3) / 6 (MobileNetV3 paper, eq. 2).

        `activation` (identity) marks ReLU6(x + 3): QAT swaps in tfmot's fake-quant there, so both of
        TFLite's ops (ADD+RELU6, MUL) get int8 ranges.
        """

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.activation = keras_module.activations.linear

        def call(self, inputs):
            return self.activation(relu6(inputs + 3.0)) * (1.0 / 6.0)

        def compute_output_shape(self, input_shape):
            return input_shape

    @register(package="keras_mobilenets")
    class HardSwish(keras_module.layers.Layer):
        """h-swish(x) = x * ReLU6(x + 3) / 6 (MobileNetV3 paper, eq. 2).

        TFLite's converter fuses that formula into one HARD_SWISH op: the fastest in float, but XNNPACK
        runs it only in float, so in an int8 file each one falls back to TFLite's own kernel and splits
        the XNNPACK graph (int8 V3-Small ran 3.7x slower than float32). With `for_int8=True` the layer
        computes ReLU6(x + 3) * (x / 6) instead, which stays ADD, MUL, MUL (all int8 in XNNPACK); QAT puts
        fake-quants on its hooks `activation` (ReLU6(x + 3)) and `scaled_activation` (x / 6).
        """

        def __init__(self, for_int8=False, **kwargs):
            super().__init__(**kwargs)
            self.for_int8 = bool(for_int8)
            self.activation = keras_module.activations.linear
            self.scaled_activation = keras_module.activations.linear

        def call(self, inputs):
            if self.for_int8:
                return self.activation(relu6(inputs + 3.0)) * self.scaled_activation(inputs * (1.0 / 6.0))
            return inputs * (relu6(inputs + 3.0) / 6.0)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "for_int8": self.for_int8}

    return HardSigmoid, HardSwish
