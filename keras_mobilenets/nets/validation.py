"""Argument checks shared by every builder: each bad value gets a ValueError naming the argument,
the value received and what is allowed."""

import math
import numbers
import os

POOLING = (None, "avg", "max")
OUTPUT_STRIDES = (None, 8, 16, 32)
MIN_SIZE = 32


def fail(argument, value, allowed):
    raise ValueError(f"{argument}={value!r} is not allowed: {argument} must be {allowed}.")


MAX_ALPHA = 10.0  # 7x the widest published model (V2 1.4); alpha=1e9 asked for 3.2e10 stem filters


def check_alpha(alpha):
    """A positive number up to MAX_ALPHA; `alpha=1` means 1.0."""
    allowed = (f"a positive number up to {MAX_ALPHA:g} (the width multiplier, e.g. 0.35, 0.5, 1.0; the papers "
               "use 0.25 to 1.4)")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        fail("alpha", alpha, allowed)
    if not math.isfinite(alpha) or not 0 < alpha <= MAX_ALPHA:
        fail("alpha", alpha, allowed)
    return float(alpha)


def check_positive_int(argument, value, allowed):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(argument, value, allowed)
    return int(value)


def check_choice(argument, value, choices):
    if value not in choices:
        fail(argument, value, f"one of {choices}")
    return value


def check_input_shape(input_shape, weights):
    """(height, width, channels): sizes None or >= 32; 3 channels with pretrained weights."""
    allowed = "a tuple (height, width, channels) with height and width None or >= 32"
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        fail("input_shape", input_shape, allowed)
    height, width, channels = input_shape
    for size in (height, width):
        if size is not None and (not isinstance(size, numbers.Integral) or size < MIN_SIZE):
            fail("input_shape", input_shape, allowed)
    if weights is not None and channels != 3:
        fail("input_shape", input_shape,
             "3 channels (RGB) when weights are loaded; use weights=None for other channel counts")
    check_positive_int("input_shape", channels, "a tuple whose channel count is a positive integer")
    return tuple(input_shape)


def check_weights(weights):
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return os.fspath(weights)
    fail("weights", weights, 'None, "imagenet" or the path of an existing weights file (.h5 / .weights.h5)')


def check_top(include_top, weights, classes, classifier_activation):
    """classes and classifier_activation must fit pretrained weights when the top is loaded too."""
    classes = check_positive_int("classes", classes, "a positive integer")
    if weights is not None and include_top:
        if weights == "imagenet" and classes != 1000:
            fail("classes", classes, '1000 with weights="imagenet" and include_top=True')
        if classifier_activation not in (None, "softmax"):
            fail("classifier_activation", classifier_activation,
                 'None or "softmax" when pretrained weights and the top are loaded')
    return classes


def check_dropout(dropout_rate):
    if isinstance(dropout_rate, bool) or not isinstance(dropout_rate, numbers.Real) \
            or not 0 <= dropout_rate < 1:
        fail("dropout_rate", dropout_rate, "a number in [0, 1)")
    return float(dropout_rate)


def check_bn_momentum(bn_momentum):
    if bn_momentum is not None and (isinstance(bn_momentum, bool) or not isinstance(bn_momentum, numbers.Real)
                                    or not 0 <= bn_momentum < 1):
        fail("bn_momentum", bn_momentum, "a number in [0, 1), or None for the architecture's own")
    return bn_momentum
