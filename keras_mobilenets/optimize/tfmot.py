"""The one place tensorflow-model-optimization is imported, and predicates on what it made, so no
module outside `optimize` needs to know tfmot's class names."""

from keras_mobilenets.extras import require


def tfmot():
    """The tfmot package, or an ImportError naming the pip install line."""
    return require("tensorflow_model_optimization", "optimize")


QAT_WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2")
PRUNE_WRAPPERS = ("PruneLowMagnitude",)


def _wrapped_by(model, wrappers):
    return any(type(layer).__name__ in wrappers for layer in model.layers)


def is_quantized(model):
    """Whether `model` carries tfmot's QAT wrappers (made by `quantize_model`)."""
    return _wrapped_by(model, QAT_WRAPPERS)


def is_pruned(model):
    """Whether `model` carries tfmot's pruning wrappers (made by `prune_model`, before `strip_pruning`)."""
    return _wrapped_by(model, PRUNE_WRAPPERS)
