"""The block registry: table rows name a block, the registry maps that name to the function that builds it.

A block function has the signature `block(x, row, ctx) -> x`: `x` is the symbolic input tensor, `row` the
table row, `ctx` the builder's context (flavor layers, width scaling, strides, naming, options).
"""

BLOCKS = {}


def register_block(name, function=None, *, overwrite=False):
    """Register `function` as the block called `name`; usable as `@register_block("name")`.

    Re-registering an existing name needs `overwrite=True`, so built-in blocks are not replaced by accident.
    """

    def add(fn):
        if not isinstance(name, str) or not name:
            raise ValueError(f"block name must be a non-empty string; received {name!r}")
        if name in BLOCKS and not overwrite:
            raise ValueError(
                f"a block named {name!r} is already registered; pass overwrite=True to replace it"
            )
        BLOCKS[name] = fn
        return fn

    return add if function is None else add(function)


def get_block(name):
    """Return the block function registered as `name`, or a ValueError listing the registered names."""
    try:
        return BLOCKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown block {name!r} in the architecture table; registered blocks: {sorted(BLOCKS)}. "
            "Add one with keras_mobilenets.register_block."
        ) from None


def registered_blocks():
    return tuple(sorted(BLOCKS))
