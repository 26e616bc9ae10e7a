"""The one place tensorflow-model-optimization is imported, and predicates on what it made, so no
module outside `optimize` needs to know tfmot's class names."""


def tfmot():
    """The tfmot package, or an ImportError naming the pip install line."""
    try:
        import tensorflow_model_optimization
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("quantization and pruning need tensorflow-model-optimization and tf-keras: "
                          "pip install 'keras-mobilenets[optimize]'") from None
    return tensorflow_model_optimization


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
