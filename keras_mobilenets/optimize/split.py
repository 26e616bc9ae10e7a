"""The MobileNetV2 paper's t-way split (Section 5), as a model transform for memory-bound inference.

An inverted residual block expand -> depthwise -> project is computed in t channel groups: group g runs
its slice of the expansion 1x1 conv, of the depthwise conv and of their BatchNorms and activations, then
its partial projection (the projection kernel's rows for those channels). The partial projections are
summed one Add at a time (acc = acc + p_g), and the residual is added once. Only one group's slice of
the expanded tensor needs to exist at a time, which is what lets a microcontroller run the block in far
less memory than the expanded tensor.

The projection's BatchNorm is folded into the partial convs (scale into every group's kernel, shift as
the first group's bias): a BatchNorm after the sum would survive int8 conversion as MUL + ADD and cost
one more tensor. Everything else is the original layers' own weights, sliced; the result is a flat
functional graph of built-in layers (plus our activation layers), so it converts like the original.

Blocks with squeeze-excite stay whole (the excitation needs every channel of the depthwise output before
any projection can start). A first block without an expansion conv takes the stem conv before it as its
expansion (the paper's Section 5 treats the first layer so), when the stem feeds nothing else.
"""

import numbers

import numpy as np

from keras_mobilenets.nets.builder import _assign_layers, block_info, set_block_info
from keras_mobilenets.nets.flavors import flavor_of


def _roles(model, record, previous=None):
    """The layers of one inverted residual block by role, or None when the block cannot be split.

    A block without an expansion conv takes the conv before it (the stem) as its expansion, as the V2
    paper's Section 5 does for the first layer, when that conv's output feeds nothing else.
    """
    layers = [model.get_layer(name) for name in record.layers]
    kinds = [type(layer).__name__ for layer in layers]
    if "Multiply" in kinds or "GlobalAveragePooling2D" in kinds:
        return None  # squeeze-excite: the excitation needs every channel before any projection
    if kinds.count("Conv2D") == 1 and previous is not None and previous.kind == "conv_bn":
        stem = [model.get_layer(name) for name in previous.layers[-3:]]
        if [type(layer).__name__ for layer in stem[:2]] != ["Conv2D", "BatchNormalization"]:
            return None
        if len(stem[2]._outbound_nodes) != 1 or stem[0].groups != 1:
            return None
        layers = stem + layers
    elif kinds.count("Conv2D") != 2 or kinds[0] != "Conv2D":
        return None
    expand, expand_bn, expand_act = layers[0:3]
    rest = layers[3:]
    pad = rest.pop(0) if type(rest[0]).__name__ == "ZeroPadding2D" else None
    if len(rest) < 5:
        return None
    depthwise, depthwise_bn, depthwise_act, project, project_bn = rest[:5]
    add = rest[5] if len(rest) > 5 else None
    expected = ("Conv2D", "BatchNormalization", None, "DepthwiseConv2D", "BatchNormalization", None,
                "Conv2D", "BatchNormalization")
    found = [expand, expand_bn, expand_act, depthwise, depthwise_bn, depthwise_act, project, project_bn]
    if any(kind and type(layer).__name__ != kind for kind, layer in zip(expected, found)):
        return None
    if expand.use_bias or project.use_bias or depthwise.use_bias or depthwise.depth_multiplier != 1:
        return None
    return dict(expand=expand, expand_bn=expand_bn, expand_act=expand_act, pad=pad, depthwise=depthwise,
                depthwise_bn=depthwise_bn, depthwise_act=depthwise_act, project=project,
                project_bn=project_bn, add=add)


def _plans(model):
    """{block output name: roles} of every splittable block."""
    records = block_info(model)
    found = {}
    for i, record in enumerate(records):
        if record.kind == "inverted_residual":
            roles = _roles(model, record, records[i - 1] if i else None)
            if roles:
                found[record.output] = roles
    return found


def splittable_blocks(model):
    """{block output layer name: expanded channels} for every block `split_blocks` can split."""
    return {name: int(roles["expand"].filters) for name, roles in _plans(model).items()}


def _size(tensor):
    return int(np.prod([int(d) for d in tensor.shape[1:]]))


def _peak(roles, t):
    """The most tensor elements alive at one op of a block computed in `t` groups, group by group, with
    ADDs that write over their dying input (`deploy.micro.plan_offline`): the block's input lives
    throughout (every group's expansion reads it, the residual adds it), the running sum from the second
    group on, and one group's slices of the expansion and of the depthwise output. (The converter folds a
    ZeroPadding2D into the depthwise conv's padding: no tensor of its own.)"""
    source, expanded = _size(roles["expand"].input), _size(roles["expand"].output)
    depthwise, output = _size(roles["depthwise"].output), _size(roles["project"].output)
    if t == 1:  # one group: no running sum; the input lives on only for a residual
        kept = source if roles["add"] is not None else 0
        return max(source + expanded, kept + expanded + depthwise, kept + depthwise + output)
    return int(np.ceil(source + output + max((expanded + depthwise) / t, depthwise / t + output)))


def block_peaks(model, t=1):
    """{block output layer name: the most tensor elements alive at one of its ops} for every splittable
    block computed in `t` groups (int8: bytes), as TFLite Micro holds them in the order and with the
    in-place ADDs of `deploy.micro.plan_offline`. The largest was the recording allocator's planned head
    for V2 0.35/96 at t=1 and t=4 and 1.0/224 at t=4 (ops outside the blocks can set it higher)."""
    plans = _plans(model)
    return {name: _peak(roles, _check_t(t, int(roles["expand"].filters), name)) for name, roles in plans.items()}


def needed_t(model, t):
    """{block output layer name: t} for `split_blocks`: each block gets the smallest number of groups (at
    most `t`) that keeps it within the peak the worst block reaches in `t` groups.

    Only the blocks that set the peak need splitting: every further group adds ops, and TFLite Micro pays
    per op and per output channel in persistent memory (per-channel multipliers, node structs), so a
    split of the late blocks, whose tensors are small, costs arena without lowering the peak."""
    plans = _plans(model)
    target = max(block_peaks(model, t).values(), default=0)
    return {name: next(k for k in range(1, t + 1) if _peak(roles, k) <= target) for name, roles in plans.items()}


def _check_t(t, expanded, where):
    allowed = f"an integer from 1 to the block's expanded channels ({expanded} for {where})"
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 1 <= t <= expanded:
        raise ValueError(f"t={t!r} is not allowed: t must be {allowed}")
    return int(t)


def _copy(layer, name, weights=None, **changes):
    """A new layer like `layer` named `name`, with config `changes` and `weights` set after building."""
    config = {**layer.get_config(), "name": name, **changes}
    return type(layer).from_config(config), weights


def _call(made, x, order):
    """Call a copied layer on `x`, set its weights, and note its name in the execution `order`."""
    layer, weights = made
    order.append(layer.name)
    y = layer(x)
    if weights is not None:
        layer.set_weights(weights)
    return y


def _bn_slice(bn, sl, name):
    gamma, beta, mean, var = _bn_full(bn)
    if not (bn.scale and bn.center):
        raise ValueError(f"{bn.name!r}: a BatchNormalization without scale or center cannot be split")
    return _copy(bn, name, [gamma[sl], beta[sl], mean[sl], var[sl]])


def _bn_full(bn):
    """gamma, beta, mean, variance of a BatchNormalization, with 1 / 0 for a missing scale / center."""
    weights = [np.asarray(w) for w in bn.get_weights()]
    channels = weights[-1].shape[0]
    gamma = weights.pop(0) if bn.scale else np.ones(channels, np.float32)
    beta = weights.pop(0) if bn.center else np.zeros(channels, np.float32)
    return gamma, beta, weights[0], weights[1]


def _split_block(x, roles, t, layers, order):
    """The split subgraph of one block on the new input `x`; returns the block's new output."""
    expand, depthwise, project = roles["expand"], roles["depthwise"], roles["project"]
    e_kernel = np.asarray(expand.get_weights()[0])
    d_kernel = np.asarray(depthwise.get_weights()[0])
    p_kernel = np.asarray(project.get_weights()[0])
    gamma, beta, mean, var = (w.astype(np.float64) for w in _bn_full(roles["project_bn"]))
    scale = gamma / np.sqrt(var + roles["project_bn"].epsilon)
    p_kernel = (p_kernel.astype(np.float64) * scale).astype(np.float32)
    p_bias = (beta - mean * scale).astype(np.float32)
    groups = np.array_split(np.arange(e_kernel.shape[-1]), t)
    total = None
    for g, channels in enumerate(groups):
        sl = slice(int(channels[0]), int(channels[-1]) + 1)
        size = sl.stop - sl.start
        y = _call(_copy(expand, f"{expand.name}_g{g}", [e_kernel[..., sl]], filters=size), x, order)
        y = _call(_bn_slice(roles["expand_bn"], sl, f"{roles['expand_bn'].name}_g{g}"), y, order)
        y = _call(_copy(roles["expand_act"], f"{roles['expand_act'].name}_g{g}"), y, order)
        if roles["pad"] is not None:
            y = _call(_copy(roles["pad"], f"{roles['pad'].name}_g{g}"), y, order)
        y = _call(_copy(depthwise, f"{depthwise.name}_g{g}", [d_kernel[:, :, sl, :]]), y, order)
        y = _call(_bn_slice(roles["depthwise_bn"], sl, f"{roles['depthwise_bn'].name}_g{g}"), y, order)
        y = _call(_copy(roles["depthwise_act"], f"{roles['depthwise_act'].name}_g{g}"), y, order)
        weights = [p_kernel[:, :, sl, :]] + ([p_bias] if g == 0 else [])
        y = _call(_copy(project, f"{project.name}_g{g}", weights, use_bias=g == 0), y, order)
        if total is None:
            total = y
        else:
            order.append(f"{project.name}_sum_{g}")
            total = layers.Add(name=f"{project.name}_sum_{g}")([total, y])
    return total


def _tensors(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def split_blocks(model, t=4):
    """A copy of `model` with every splittable inverted residual block computed in `t` channel groups.

    `t`: one int for all blocks, or a dict {block output layer name: t} (blocks not named stay whole;
    names from `splittable_blocks`). Each t must be between 1 and the block's expanded channels. t=1 keeps
    a block as it is. The float outputs equal the original's (up to float rounding).
    """
    splittable = splittable_blocks(model)
    if isinstance(t, dict):
        unknown = sorted(set(t) - set(splittable))
        if unknown:
            raise ValueError(f"t={t!r} is not allowed: {unknown} are not splittable blocks of "
                             f"{model.name!r}; choose among {sorted(splittable)}")
        per_block = {name: _check_t(value, splittable[name], name) for name, value in t.items()}
    else:
        smallest = min(splittable.values(), default=1)
        where = "the narrowest splittable block" if splittable else "a model without splittable blocks"
        _check_t(t, smallest, where)
        per_block = {name: int(t) for name in splittable}
    records = block_info(model)
    plans = {}  # first layer name -> (block output, roles, t)
    for name, roles in _plans(model).items():
        if per_block.get(name, 1) > 1:
            plans[roles["expand"].name] = (name, roles, per_block[name])
    flavor = flavor_of(model)
    layers = flavor.layers
    new = {}
    inputs = [flavor.input(tuple(i.shape[1:])) for i in model.inputs]
    for old, fresh in zip(model.inputs, inputs):
        new[id(old)] = fresh
    skip = set()
    order = []  # layer names in the order they are called: group by group
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or layer.name in skip:
            continue
        if layer.name in plans:
            output, roles, groups = plans[layer.name]
            x = new[id(layer.input)]
            y = _split_block(x, roles, groups, layers, order)
            if roles["add"] is not None:
                order.append(roles["add"].name)
                y = layers.Add(name=roles["add"].name)([x, y])
            new[id(model.get_layer(output).output)] = y
            skip.update(role.name for role in roles.values() if role is not None)
            continue
        args = [new[id(tensor)] for tensor in _tensors(layer.input)]
        clone = type(layer).from_config(layer.get_config())
        order.append(clone.name)
        y = clone(args if isinstance(layer.input, (list, tuple)) else args[0])
        clone.set_weights(layer.get_weights())
        new[id(layer.output)] = y
    outputs = [new[id(o)] for o in model.outputs]
    copy = flavor.model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                         name=f"{model.name}_split")
    copy.execution_order = tuple(order)
    names = {layer.name for layer in copy.layers}  # a stem taken into block 0 is no block of its own
    return set_block_info(copy, _assign_layers(copy, [r for r in records if r.output in names]))


def execution_order(model):
    """Layer names in the order a split model computes them: group by group, each group's expand,
    depthwise and partial projection before the next group's (what keeps only one group's slice of the
    expansion alive). Keras' own `model.layers` lists layers by depth, which interleaves the groups."""
    return list(getattr(model, "execution_order", None) or [layer.name for layer in model.layers])
