"""Width scaling: the one place where alpha turns a paper's channel count into a layer's filters."""

import numbers

WIDTH_RULES = ("int", "int_divisible", "divisible", "fixed", "grow_only")


def make_divisible(value, divisor=8, min_value=None):
    """Round `value` to a multiple of `divisor`, never more than 10% down (slim / keras.applications)."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels, alpha, rule):
    """Scale a paper channel count by the width multiplier `alpha` under one of `WIDTH_RULES`.

    - "int": int(c * alpha), MobileNetV1.
    - "int_divisible": make_divisible(int(c * alpha)), MobileNetV2 blocks.
    - "divisible": make_divisible(c * alpha), MobileNetV2 stem and MobileNetV3.
    - "fixed": c, whatever alpha (MobileNetV3 stem).
    - "grow_only": c for alpha <= 1, else make_divisible(c * alpha) (the 1280 / 1024 heads).
    A channel count that is not a positive integer, or one that alpha scales to no filters, is a ValueError.
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ValueError(f"channels={channels!r} is not allowed: a table's channel counts must be positive "
                         "integers.")
    filters = _scale(channels, alpha, rule)
    if filters < 1:
        raise ValueError(f"alpha={alpha!r} is not allowed here: it scales a layer of {channels} channels to "
                         f"{filters} filters (rule {rule!r}); use an alpha of at least {1 / channels:g}.")
    return filters


def _scale(channels, alpha, rule):
    if rule == "int":
        return int(channels * alpha)
    if rule == "int_divisible":
        return make_divisible(int(channels * alpha))
    if rule == "divisible":
        return make_divisible(channels * alpha)
    if rule == "fixed":
        return channels
    if rule == "grow_only":
        return make_divisible(channels * alpha) if alpha > 1.0 else channels
    raise ValueError(f"width rule must be one of {WIDTH_RULES}; received {rule!r}")
