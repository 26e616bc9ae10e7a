"""Magnitude pruning with tfmot on the tf_keras copy of a model, and stripping it back to plain layers."""

from keras_mobilenets.nets.builder import block_info, set_block_info
from keras_mobilenets.nets.flavors import get_flavor
from keras_mobilenets.optimize.tf_keras_copy import to_tf_keras
from keras_mobilenets.optimize.tfmot import PRUNE_WRAPPERS
from keras_mobilenets.optimize.tfmot import tfmot as _tfmot


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
        if type(layer).__name__ in PRUNE_WRAPPERS:
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
