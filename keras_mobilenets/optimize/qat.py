"""Quantization-aware training with tensorflow-model-optimization, for every MobileNet variant.

tfmot only wraps tf_keras (Keras 2) models, and it knows nothing of hard-swish, hard-sigmoid, the
squeeze-excite Multiply or an in-model Rescaling. `quantize_model` copies one of our Keras 3 models into
the same flat graph of tf_keras layers (same names, same weights), then applies tfmot with output
quantizers for those layers, so tfmot's Conv+BN(+ReLU) folding still happens everywhere else.
"""

import dataclasses
import functools
import os

import numpy as np

from keras_mobilenets.nets.builder import block_info, set_block_info
from keras_mobilenets.nets.detection.config import detector_config, is_detector
from keras_mobilenets.nets.flavors import get_flavor
from keras_mobilenets.optimize.int8_form import int8_layer
from keras_mobilenets.optimize.tf_keras_copy import to_tf_keras
from keras_mobilenets.optimize.tfmot import tfmot as _tfmot

OUTPUT_QUANTIZED = ("Multiply", "Dot")  # SE's scale; Mobile MQA's two matmuls (not in tfmot's registry)
_FOLDED_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")  # a BatchNorm after these is folded by tfmot
HOOKED = ("HardSwish", "HardSigmoid", "QuantizableRescaling", "QuantizableBatchNormalization")
HOOKS = ("activation", "scaled_activation")  # identity attributes our layers call inside, in this order


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
def _quantizable_batch_norm():
    """tf_keras BatchNormalization computed as (x * scale) + offset from its moving statistics (frozen, as
    in a folded graph) with an `activation` hook after the product: Mobile MQA's input norm follows an Add,
    so tfmot has no conv to fold it into, and a plain BatchNorm left TFLite's MUL and ADD in float."""
    import tensorflow as tf

    keras2 = get_flavor("tf_keras").keras

    class QuantizableBatchNormalization(keras2.layers.BatchNormalization):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.activation = keras2.activations.linear

        def call(self, inputs, training=None):
            scale = self.gamma * tf.math.rsqrt(self.moving_variance + self.epsilon)
            return self.activation(inputs * scale) + (self.beta - self.moving_mean * scale)

    return QuantizableBatchNormalization


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
        "HookQuantizeConfig": _hook_config(), "QuantizableRescaling": _quantizable_rescaling(),
        "QuantizableBatchNormalization": _quantizable_batch_norm()})


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


def _standalone_batch_norm(layer):
    """A BatchNormalization that follows no conv (Mobile MQA's input norm): tfmot's registry has no
    config for it; it becomes a QuantizableBatchNormalization."""
    if type(layer).__name__ != "BatchNormalization":
        return False
    inbound = layer.inbound_nodes[0].inbound_layers
    return type(inbound).__name__ not in _FOLDED_INTO


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
        if _standalone_batch_norm(layer):
            weights = layer.get_weights()
            layer = _quantizable_batch_norm().from_config(layer.get_config())
            layer.build(weights[0].shape[:0] + (None,) * 3 + weights[0].shape)
            layer.set_weights(weights)
        layer = int8_layer(layer)  # hard-swish's int8 form, whose two hooks get fake-quants
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
    if is_detector(model):
        qat.detector_config = detector_config(model)  # tfmot's "quant_" names hide the graph's own
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


def qat_recipe(epochs, learning_rate):
    """The QAT fit's recipe (classifier, segmentation model and detector alike): every layer trainable,
    BatchNorm frozen, no warm-up, no label smoothing, no TensorBoard."""
    from keras_mobilenets.train import recipe as training

    return training.Recipe(epochs=epochs, freeze_backbone=False, train_batchnorm=False,
                           learning_rate=learning_rate, warmup_epochs=0.0, label_smoothing=0.0, tensorboard=False)


def fine_tune_qat(model, data, out_dir, epochs=2, learning_rate=1e-4, calibration_batches=8, verbose=1,
                  per_channel=True, task=None):
    """QAT of a trained Keras 3 classifier on `data` (an ImageData): wrap, calibrate the ranges, fit.

    `per_channel=False`: one weight range per tensor (see `quantize_model`), for a smaller int8 file.
    `task`: `recipe.fit`'s task hook for another kind of model (a segmentation model:
    `SegmentationTask`, its data a `from_segmentation_folder` result); the fit then uses the task's loss
    and monitor (validation mIoU), and "validation cross-entropy" below is the task's loss.

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
        calibrated = _validation_loss(qat, data, task)
        snapshot = training.weights_file(qat, out_dir, "calibrated")
        os.makedirs(out_dir, exist_ok=True)
        qat.save_weights(snapshot)
    result = training.fit(qat, data, out_dir, qat_recipe(epochs, learning_rate), verbose=verbose, task=task)
    set_weight_ranges(qat)  # the last training step recorded the ranges of the weights before its update
    if calibrated is not None and (result.best is None or _validation_loss(qat, data, task) > calibrated):
        qat.load_weights(snapshot)
        result = dataclasses.replace(result, best_weights=snapshot, best=_validation_score(qat, data, task))
    return result


def _validation_loss(model, data, task):
    """The mean loss of `model` on `data.validation`: a classifier's cross-entropy, or `task`'s loss
    (label smoothing 0) on its prepared targets, in inference mode."""
    if task is None:
        return cross_entropy(model, data.validation)
    loss = task.loss(get_flavor("tf_keras").keras, 0.0)
    total, count = 0.0, 0
    for images, targets in task.prepare(data.validation, data, False):
        total += float(loss(targets, model(images, training=False))) * len(images)
        count += len(images)
    return total / max(count, 1)


def _validation_score(model, data, task):
    """What `fit` monitors, on `data.validation`: a classifier's accuracy, or `task`'s first metric (a
    segmentation model: mIoU over the whole split)."""
    if task is None:
        from keras_mobilenets.train import recipe as training

        return training.evaluate(model, data.validation, data.class_names)["accuracy"]
    metric = task.metrics(get_flavor("tf_keras").keras)[0]
    for images, targets in task.prepare(data.validation, data, False):
        metric.update_state(targets, model(images, training=False))
    return float(metric.result())


def fine_tune_qat_detector(model, data, epochs=1, learning_rate=1e-4, calibration_batches=8, out_dir=None,
                           class_loss="focal", per_channel=True, verbose=1):
    """QAT of a trained Keras 3 SSDLite detector on `data` (a `from_detection_folder` DetectionData with a
    validation split): wrap (`quantize_model`), calibrate the ranges on the training images, then fit
    through the fake-quants for `epochs` with the detector's own SSD losses (`epochs=0`: calibration only).

    The fit is the classifier QAT's (`fine_tune_qat`): `recipe.fit` with the `DetectionTask` (targets
    encoded in tf.data, the SSD losses, validation mAP@.5 each epoch), every layer trainable, BatchNorm
    in inference mode (moving statistics kept), a small learning rate on the recipe's cosine schedule,
    Keras progress bars, checkpoints in `out_dir` (re-running the same call resumes; default: a temporary
    folder, removed after). The kept weights are those of the best validation mAP@.5, or the calibrated
    ones when no QAT epoch beats them. Returns the QAT model (tf_keras), weight ranges set to its final
    weights.
    """
    import tempfile

    from keras_mobilenets.train import recipe as training
    from keras_mobilenets.train.detection_training import DetectionTask, evaluate_detector

    qat = quantize_model(model, per_channel=per_channel)
    task = DetectionTask(qat.detector_config, class_loss, outputs=qat.output_names)
    if epochs:
        task.check(qat, data)  # (a validation split) before calibration takes its time
    calibrate(qat, data.train, calibration_batches)
    if not epochs:
        return qat  # calibration only
    with tempfile.TemporaryDirectory(prefix="qat-detector-") as scratch:
        out_dir = out_dir or scratch
        os.makedirs(out_dir, exist_ok=True)
        calibrated = evaluate_detector(qat, data.validation, data.records["validation"],
                                       data.class_names)[0]["map_50"] or 0.0
        snapshot = training.weights_file(qat, out_dir, "calibrated")
        qat.save_weights(snapshot)
        result = training.fit(qat, data, out_dir, qat_recipe(epochs, learning_rate), verbose=verbose, task=task)
        if result.best is None or result.best < calibrated:
            qat.load_weights(snapshot)  # calibration alone scored better than every QAT epoch
    set_weight_ranges(qat)  # the last training step recorded the ranges of the weights before its update
    return qat


def cross_entropy(model, dataset):
    """Mean cross-entropy of a softmax classifier on (pixels, integer label) batches, in inference mode."""
    total, count = 0.0, 0
    for images, labels in dataset:
        probabilities = np.asarray(model(images, training=False))
        picked = probabilities[np.arange(len(probabilities)), np.asarray(labels)]
        total += float(-np.log(np.maximum(picked, 1e-7)).sum())
        count += len(picked)
    return total / max(count, 1)
