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
        """h-swish(x) = x * ReLU6(x + 3) / 6 (MobileNetV3 paper, eq. 2), computed as ReLU6(x + 3) * (x / 6).

        That order keeps TFLite's converter from fusing the ops into one HARD_SWISH op, which XNNPACK
        only runs in float: an int8 HARD_SWISH falls back to TFLite's own kernel and splits the XNNPACK
        graph at every activation (int8 V3-Small ran 3.7x slower than float32). The hooks `activation`
        (on ReLU6(x + 3)) and `scaled_activation` (on x / 6) are where QAT puts its fake-quants.
        """

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.activation = keras_module.activations.linear
            self.scaled_activation = keras_module.activations.linear

        def call(self, inputs):
            return self.activation(relu6(inputs + 3.0)) * self.scaled_activation(inputs * (1.0 / 6.0))

        def compute_output_shape(self, input_shape):
            return input_shape

    return HardSigmoid, HardSwish
