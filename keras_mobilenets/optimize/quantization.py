"""Quantization-aware training with tensorflow-model-optimization, for every MobileNet variant.

tfmot only wraps tf_keras (Keras 2) models, and it knows nothing of hard-swish, hard-sigmoid, the
squeeze-excite Multiply or an in-model Rescaling. `quantize_model` copies one of our Keras 3 models into
the same flat graph of tf_keras layers (same names, same weights), then applies tfmot with output
quantizers for those layers, so tfmot's Conv+BN(+ReLU) folding still happens everywhere else.
"""

import dataclasses
import functools
import inspect
import os

import numpy as np

from keras_mobilenets.nets.builder import block_info, set_block_info
from keras_mobilenets.nets.flavors import flavor_of, get_flavor

OUTPUT_QUANTIZED = ("Multiply",)
HOOKED = ("HardSwish", "HardSigmoid", "QuantizableRescaling")
HOOKS = ("activation", "scaled_activation")  # identity attributes our layers call inside, in this order


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


@functools.cache
def _quantizable_rescaling():
    """tf_keras Rescaling with an `activation` hook after the scale, so QAT can fake-quant x * scale and
    TFLite's MUL and ADD both run in int8 (a plain Rescaling leaves them float)."""
    keras2 = get_flavor("tf_keras").keras

    class QuantizableRescaling(keras2.layers.Rescaling):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.activation = keras2.activations.linear

        def call(self, inputs):
            scale = self.scale
            offset = self.offset
            return self.activation(keras2.backend.cast(inputs, self.compute_dtype) * scale) + offset

    return QuantizableRescaling


@functools.cache
def _hook_config():
    """QuantizeConfig for layers with inner identity hooks (`HOOKS`: HardSwish's ReLU6(x + 3) and x / 6,
    HardSigmoid's ReLU6(x + 3), QuantizableRescaling's x * scale): a fake-quant on each hook and on the
    output, so every TFLite op the layer becomes gets int8 ranges."""
    tfmot = _tfmot()
    base = tfmot.quantization.keras.QuantizeConfig
    quantizers = tfmot.quantization.keras.quantizers

    def hooks(layer):
        return [name for name in HOOKS if hasattr(layer, name)]

    class HookQuantizeConfig(base):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return [(getattr(layer, name), quantizers.MovingAverageQuantizer(8, False, False, False))
                    for name in hooks(layer)]

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            for name, quantized in zip(hooks(layer), quantize_activations):
                setattr(layer, name, quantized)

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(8, False, False, False)]

        def get_config(self):
            return {}

    return HookQuantizeConfig


def quantize_scope():
    """The custom objects a QAT model needs to be reloaded (tfmot's quantize_scope plus our layers)."""
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    flavor = get_flavor("tf_keras")
    return tfmot.quantization.keras.quantize_scope({
        "HardSwish": flavor.HardSwish, "HardSigmoid": flavor.HardSigmoid,
        "Default8BitOutputQuantizeConfig": configs.Default8BitOutputQuantizeConfig,
        "HookQuantizeConfig": _hook_config(), "QuantizableRescaling": _quantizable_rescaling()})


@functools.cache
def _scheme(per_channel):
    """tfmot's default 8-bit scheme (weights per channel, or per tensor), mended for Conv + ReLU.

    tfmot's layout transform gives a Conv2D/DepthwiseConv2D followed directly by a ReLU no quantize
    config at all (LayerReLUQuantize: meant to keep a fake-quant out from between them, it drops the
    weights' fake-quant too), and the converter then quantizes those weights per channel itself. That hits
    the squeeze-excite's first conv (bias, then ReLU) and every conv of a BatchNorm-folded graph. A second
    pass gives such convs back their weight quantizer, with no fake-quant on their output.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_aware_activation
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
        default_8bit_quantize_layout_transform as layout,
        default_8bit_quantize_scheme as scheme,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
        model_transformer,
        transforms,
    )

    class ConvReLUWeights(transforms.Transform):
        def pattern(self):
            return transforms.LayerPattern("ReLU", inputs=[transforms.LayerPattern("Conv2D|DepthwiseConv2D")])

        def replacement(self, match_layer):
            conv = match_layer.input_layers[0]
            if isinstance(conv.metadata.get("quantize_config"), configs.NoOpQuantizeConfig):
                conv.layer["config"]["activation"] = {"class_name": "NoOpActivation", "config": {}}
                conv.metadata["quantize_config"] = None  # the registry's config for the layer
            return match_layer

        def custom_objects(self):
            return {"NoOpActivation": quantize_aware_activation.NoOpActivation}

    class Layout(layout.Default8BitQuantizeLayoutTransform):
        def apply(self, model, layer_quantize_map):
            model, layer_quantize_map = super().apply(model, layer_quantize_map)
            return model_transformer.ModelTransformer(
                model, [ConvReLUWeights()], set(layer_quantize_map), layer_quantize_map).transform()

    class Scheme(scheme.Default8BitQuantizeScheme):
        def get_layout_transformer(self):
            return Layout()

    return Scheme(disable_per_axis=not per_channel)


def quantize_model(model, per_channel=True):
    """A tfmot QAT model (tf_keras) of one of our Keras 3 (or tf_keras) models, weights copied.

    Conv/Depthwise + BatchNorm (+ ReLU) are fused by tfmot's default 8-bit scheme; hard-swish,
    hard-sigmoid and Rescaling get fake-quants on their inner hooks and outputs, the squeeze-excite
    Multiply on its output. Weights get one int8 range per output channel; `per_channel=False` gives one
    per tensor (a smaller TFLite file: no per-channel scale tables) on a graph whose BatchNorms are folded
    into the convs first (`to_tf_keras(fold_batch_norm=True)`), their statistics frozen.
    """
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    if per_channel not in (True, False):
        raise ValueError(f"per_channel={per_channel!r} is not allowed: pass True or False")
    source = to_tf_keras(model, fold_batch_norm=not per_channel)
    keras2 = get_flavor("tf_keras").keras
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotated(layer):
        if type(layer).__name__ == "Rescaling":
            layer = _quantizable_rescaling().from_config(layer.get_config())
        if type(layer).__name__ == "HardSwish":  # the form XNNPACK runs in int8, with both hooks
            layer = type(layer).from_config({**layer.get_config(), "for_int8": True})
        if type(layer).__name__ in HOOKED:
            return annotate(layer, _hook_config()())
        if type(layer).__name__ in OUTPUT_QUANTIZED:
            return annotate(layer, configs.Default8BitOutputQuantizeConfig())
        if type(layer).__name__ == "InputLayer":
            return layer
        return annotate(layer)

    marked = keras2.models.clone_model(source, clone_function=annotated)
    with quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(marked, scheme=_scheme(per_channel))
    set_block_info(qat, block_info(model, required=False))
    return qat


# ----------------------------------------------------------------------- QAT range warm-up + fine-tuning


def _range_slots(qat_model):
    """(set quantizer, its range variables, the quantizer) for every activation/output range of a QAT model."""
    slots = []
    for layer in qat_model.layers:
        kind = type(layer).__name__
        if kind == "QuantizeLayer" and layer.quantizer:
            slots.append((lambda q, l=layer: setattr(l, "quantizer", q), layer.quantizer_vars, layer.quantizer))
        if kind not in ("QuantizeWrapper", "QuantizeWrapperV2"):
            continue
        for activation in layer._quantize_activations:  # tfmot keeps these on the wrapper, unexported
            for name in ("_pre_activation_vars", "_post_activation_vars"):
                if hasattr(activation, name):
                    slots.append((lambda q, a=activation: setattr(a, "quantizer", q), getattr(activation, name),
                                  activation.quantizer))
        if layer._output_quantizers:
            slots.append((lambda q, qs=layer._output_quantizers: qs.__setitem__(0, q),
                          layer._output_quantizer_vars, layer._output_quantizers[0]))
    return slots


def calibrate(qat_model, images, batches=8):
    """Set every weight range of a QAT model to its weights, then every activation range to the min/max
    seen on `images` (its warm-up).

    tfmot starts each range at [-6, 6] and moves it by 0.1% of the gap per training step (an EMA with
    decay 0.999), so a short QAT fine-tune would quantize with ranges that have little to do with the
    activations. This is PTQ's calibration done on the QAT graph: inference mode (BatchNorm statistics and
    dropout untouched), `batches` batches of [0, 255] images (a pipeline or an array). Returns the
    number of activation ranges set.
    """
    import tensorflow as tf

    tfmot = _tfmot()
    base = tfmot.quantization.keras.quantizers.AllValuesQuantizer

    class Calibrating(base):
        """Min/max over everything seen, updated even though the model runs in inference mode."""

        def __call__(self, inputs, training, weights, **kwargs):
            return super().__call__(inputs, True, weights, **kwargs)

    slots = _range_slots(qat_model)
    if not slots:
        raise ValueError(f"model {qat_model.name!r} has no quantization ranges: pass the model "
                         "quantize_model returned")
    set_weight_ranges(qat_model)  # the activations seen below come from the quantized weights
    for put, variables, _ in slots:
        variables["min_var"].assign(tf.zeros_like(variables["min_var"]))
        variables["max_var"].assign(tf.zeros_like(variables["max_var"]))
        put(Calibrating(num_bits=8, per_axis=False, symmetric=False, narrow_range=False))
    try:
        run = tf.function(lambda x: qat_model(x, training=False))
        if isinstance(images, np.ndarray):
            images = tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(32)
        seen = 0
        for item in images.take(batches):
            run(item[0] if isinstance(item, (tuple, list)) else item)
            seen += 1
        if not seen:
            raise ValueError("calibrate needs at least one batch of images")
    finally:
        for put, _, original in slots:
            put(original)
    for _, variables, _ in slots:  # a tensor that was 0 on every image: an empty range makes NaN
        low, high = variables["min_var"], variables["max_var"]
        high.assign(tf.maximum(high, low + 1e-3))
    return len(slots)


def set_weight_ranges(qat_model):
    """Set every weight's int8 range to the weights' present min/max (what the converter will use).

    tfmot's weight quantizers start at [-6, 6] per channel and record the weights' range only when called
    in training mode, so a QAT model that has not trained yet (or whose weights changed after its last
    training step) evaluates and converts with ranges that do not fit its weights. Returns the number of
    weights set.
    """
    count = 0
    for layer in qat_model.layers:
        for weight, quantizer, variables in getattr(layer, "_weight_vars", ()):
            quantizer(weight, True, weights=variables)
            count += 1
    return count


def fine_tune_qat(model, data, out_dir, epochs=2, learning_rate=1e-4, calibration_batches=8, verbose=1,
                  per_channel=True):
    """QAT of a trained Keras 3 classifier on `data` (an ImageData): wrap, calibrate the ranges, fit.

    `per_channel=False`: one weight range per tensor (see `quantize_model`), for a smaller int8 file.

    The fit is `training.fit` (checkpoints, BackupAndRestore resume, CSV history, early stopping) on
    every layer with BatchNorm frozen, a small constant-then-cosine learning rate and no label smoothing.
    With a validation split the calibrated model counts as epoch 0: when the fit's best epoch has a higher
    validation cross-entropy, the calibrated weights are kept (a QAT fit can lose to calibration alone).
    Cross-entropy rather than accuracy: on a small split accuracy moves in whole images (0.56 points for
    180), and on digits it kept the calibrated model in 10 of 12 runs although 1-3 QAT epochs gained up
    to 2.2 test points. Returns the `FitResult`; its `.model` is the QAT model holding the best weights.
    """
    from keras_mobilenets.train import recipe as training

    qat = quantize_model(model, per_channel=per_channel)
    calibrate(qat, data.train, calibration_batches)
    calibrated = None
    if data.validation is not None:
        calibrated = cross_entropy(qat, data.validation)
        snapshot = training.weights_file(qat, out_dir, "calibrated")
        os.makedirs(out_dir, exist_ok=True)
        qat.save_weights(snapshot)
    recipe = training.Recipe(epochs=epochs, freeze_backbone=False, train_batchnorm=False,
                             learning_rate=learning_rate, warmup_epochs=0.0, label_smoothing=0.0,
                             tensorboard=False)
    result = training.fit(qat, data, out_dir, recipe, verbose=verbose)
    set_weight_ranges(qat)  # the last training step recorded the ranges of the weights before its update
    if calibrated is not None and (result.best is None or cross_entropy(qat, data.validation) > calibrated):
        qat.load_weights(snapshot)
        accuracy = training.evaluate(qat, data.validation, data.class_names)["accuracy"]
        result = dataclasses.replace(result, best_weights=snapshot, best=accuracy)
    return result


def cross_entropy(model, dataset):
    """Mean cross-entropy of a softmax classifier on (pixels, integer label) batches, in inference mode."""
    total, count = 0.0, 0
    for images, labels in dataset:
        probabilities = np.asarray(model(images, training=False))
        picked = probabilities[np.arange(len(probabilities)), np.asarray(labels)]
        total += float(-np.log(np.maximum(picked, 1e-7)).sum())
        count += len(picked)
    return total / max(count, 1)


# ------------------------------------------------------------------------------------------ pruning

PRUNABLE = ("Conv2D", "Dense")


def prune_model(model, target_sparsity=0.5, end_step=1000, begin_step=0, frequency=100,
                initial_sparsity=0.0, layer_types=PRUNABLE):
    """tfmot magnitude pruning (PolynomialDecay schedule) on the tf_keras copy of `model`.

    Only kernels of `layer_types` are pruned (by default the 1x1 and full convolutions and the classifier,
    where nearly all of a MobileNet's weights are; depthwise kernels are tiny and sensitive). Train the
    result with `pruning_callbacks()` (tfmot needs its step callback), then `strip_pruning`.
    """
    from keras_mobilenets.train.recipe import _check_int

    tfmot = _tfmot()
    if not 0 <= initial_sparsity <= target_sparsity < 1:
        raise ValueError(f"target_sparsity={target_sparsity!r}, initial_sparsity={initial_sparsity!r} are not "
                         "allowed: need 0 <= initial_sparsity <= target_sparsity < 1")
    for name, value, low in (("begin_step", begin_step, 0), ("end_step", end_step, begin_step + 1),
                             ("frequency", frequency, 1)):
        _check_int(name, value, low)
    sparsity = tfmot.sparsity.keras
    schedule = sparsity.PolynomialDecay(initial_sparsity=initial_sparsity, final_sparsity=target_sparsity,
                                        begin_step=begin_step, end_step=end_step, frequency=frequency)
    source = to_tf_keras(model)
    keras2 = get_flavor("tf_keras").keras

    def wrapped(layer):
        if type(layer).__name__ in layer_types:
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruned = keras2.models.clone_model(source, clone_function=wrapped)
    set_block_info(pruned, block_info(model, required=False))
    return pruned


def pruning_callbacks(log_dir=None):
    """The callbacks a pruned model's fit needs: tfmot's step counter (and its TensorBoard summaries)."""
    sparsity = _tfmot().sparsity.keras
    callbacks = [sparsity.UpdatePruningStep()]
    if log_dir:
        callbacks.append(sparsity.PruningSummaries(log_dir=log_dir))
    return callbacks


def strip_pruning(pruned, into=None):
    """The pruned model without its wrappers (tf_keras), or its weights copied `into` a Keras 3 model of
    the same graph (e.g. the model you pruned), ready for export and TFLite."""
    for layer in pruned.layers:
        if type(layer).__name__ == "PruneLowMagnitude":
            # weights = weights * mask: the optimizer moves pruned weights between re-masks, and a best
            # checkpoint restored by fit may have been written before the epoch's last re-mask
            layer.pruning_obj.weight_mask_op()
    stripped = _tfmot().sparsity.keras.strip_pruning(pruned)
    if into is None:
        return stripped
    by_name = {layer.name: layer for layer in stripped.layers}
    for layer in into.layers:
        if layer.weights:
            if layer.name not in by_name:
                raise ValueError(f"into: layer {layer.name!r} is not in the pruned model; pass the model "
                                 "that was pruned")
            layer.set_weights(by_name[layer.name].get_weights())
    return into
