"""timm's published MobileNetV4 weights, read from a .safetensors file without PyTorch.

timm publishes ImageNet weights on the Hugging Face Hub, e.g. `timm/mobilenetv4_conv_small.e2400_r224_in1k`
(file `model.safetensors`; also `mobilenetv4_conv_medium.e500_r256_in1k`,
`mobilenetv4_hybrid_medium.ix_e550_r256_in1k`, `mobilenetv4_conv_large.e600_r384_in1k`, ...). Download
the file yourself (`huggingface_hub.hf_hub_download(repo_id, "model.safetensors")` or the web page) and
build the model at width 1.0 with the file's resolution and `weights=<path>`, or call `load_timm_weights`.
timm's models take ImageNet mean/std-normalized RGB, ((x / 255) - (0.485, 0.456, 0.406)) /
(0.229, 0.224, 0.225), not [-1, 1].

Our layers carry timm's module names (nets/blocks_v4.py), so the mapping is by name: block i of the table
is timm's `blocks.<stage>.<j>`, a new stage starting at each stride change and at the last 1x1 conv.
"""

import numpy as np

from keras_mobilenets.extras import require
from keras_mobilenets.nets.builder import block_info

_V4_KINDS = ("conv_norm_act", "uib", "fused_ib", "mobile_mqa")
# our layer-name suffix -> timm module path inside a block
_SUFFIXES = {
    "conv_norm_act": {"conv": "conv", "conv_bn": "bn1"},
    "fused_ib": {"conv_exp": "conv_exp", "conv_exp_bn": "bn1", "conv_pwl": "conv_pwl", "conv_pwl_bn": "bn2"},
    "uib": {"dw_start": "dw_start.conv", "dw_start_bn": "dw_start.bn", "pw_exp": "pw_exp.conv",
            "pw_exp_bn": "pw_exp.bn", "dw_mid": "dw_mid.conv", "dw_mid_bn": "dw_mid.bn",
            "pw_proj": "pw_proj.conv", "pw_proj_bn": "pw_proj.bn", "layer_scale": "layer_scale.gamma"},
    "mobile_mqa": {"norm": "norm", "query_proj": "attn.query.proj", "output_proj": "attn.output.proj",
                   "layer_scale": "layer_scale.gamma",
                   **{f"{kv}_{part}": f"attn.{kv}.{part}" for kv in ("key", "value")
                      for part in ("down_conv", "norm", "proj")}},
}
_TOP = {"stem_conv": "conv_stem", "stem_conv_bn": "bn1", "head_conv": "conv_head", "head_bn": "norm_head",
        "predictions": "classifier"}
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_IGNORED = ("num_batches_tracked",)


def _weight_name(weight):
    return getattr(weight, "path", weight.name).split(":")[0].rsplit("/", 1)[-1]


def _module_paths(model):
    """{our layer name: timm module path} for every weighted layer of a MobileNetV4 model."""
    paths = {}
    stage, j, previous = -1, 0, None
    records = block_info(model)
    numbered = [r for r in records if r.index is not None]
    for record in records:
        if record.index is None:
            previous = record.stride * record.dilation
            continue
        if record.kind not in _V4_KINDS:
            raise ValueError(f"model {model.name!r} has a {record.kind!r} block: timm weights exist only for "
                             "MobileNetV4 tables (blocks conv_norm_act, uib, fused_ib, mobile_mqa).")
        nominal = record.stride * record.dilation
        if nominal != previous or (record is numbered[-1] and record.kind == "conv_norm_act"):
            stage, j = stage + 1, 0
        else:
            j += 1
        previous = nominal
        prefix = f"block_{record.index}_"
        for name in record.layers:
            suffix = name[len(prefix):]
            if name.startswith(prefix) and suffix in _SUFFIXES[record.kind]:
                paths[name] = f"blocks.{stage}.{j}.{_SUFFIXES[record.kind][suffix]}"
    for layer in model.layers:
        if layer.name in _TOP:
            paths[layer.name] = _TOP[layer.name]
    return paths


def _layout(model):
    """[(timm key, layer, weight index, keras shape, to_timm, to_keras)] for every weight timm has."""
    entries = []
    paths = _module_paths(model)
    for layer in model.layers:
        path = paths.get(layer.name)
        if path is None:
            continue
        kind = type(layer).__name__
        for index, weight in enumerate(layer.weights):
            name = _weight_name(weight)
            shape = tuple(weight.shape)
            if kind == "BatchNormalization":
                key, to_timm, to_keras = f"{path}.{_BN[name]}", None, None
            elif path.endswith("layer_scale.gamma"):  # a 1x1 DepthwiseConv2D: (1, 1, C, 1) <-> (C,)
                key, to_timm, to_keras = path, (lambda w: w.reshape(-1)), (lambda w, s=shape: w.reshape(s))
            elif kind == "DepthwiseConv2D":  # (kh, kw, C, 1) <-> (C, 1, kh, kw)
                key, to_timm, to_keras = f"{path}.weight", (lambda w: w.transpose(2, 3, 0, 1)), \
                    (lambda w: w.transpose(2, 3, 0, 1))
            elif name == "kernel" and kind == "Conv2D":  # (kh, kw, in, out) <-> (out, in, kh, kw)
                key, to_timm, to_keras = f"{path}.weight", (lambda w: w.transpose(3, 2, 0, 1)), \
                    (lambda w: w.transpose(2, 3, 1, 0))
            elif name == "kernel":  # Dense: (in, out) <-> (out, in)
                key, to_timm, to_keras = f"{path}.weight", (lambda w: w.T), (lambda w: w.T)
            else:
                key, to_timm, to_keras = f"{path}.{name}", None, None
            entries.append((key, layer, index, shape, to_timm or (lambda w: w), to_keras or (lambda w: w)))
    return entries


def timm_state_dict(model):
    """This model's weights as numpy arrays under timm's key names and in PyTorch's layouts."""
    return {key: np.ascontiguousarray(to_timm(np.asarray(layer.weights[index].numpy())))
            for key, layer, index, _, to_timm, _ in _layout(model)}


def save_timm_weights(model, path):
    """Write `timm_state_dict(model)` to a .safetensors file (what `load_timm_weights` reads)."""
    require("safetensors", "timm")
    from safetensors.numpy import save_file

    save_file(timm_state_dict(model), str(path))
    return path


def load_timm_weights(model, path):
    """Load a timm MobileNetV4 .safetensors file into `model` (same variant, width 1.0).

    Every weight of the model must be in the file with the right shape, and every tensor of the file must
    have a place in the model (the head's and classifier's are skipped when the model has no top); the
    first key that does not fit raises a ValueError naming it.
    """
    require("safetensors", "timm")
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    layout = _layout(model)
    values = {}
    for key, layer, index, shape, _, to_keras in layout:
        if key not in tensors:
            raise ValueError(f"{path}: the file has no tensor {key!r}, which model {model.name!r} needs (for "
                             f"layer {layer.name!r}): is it a timm checkpoint of the same MobileNetV4 variant?")
        value = to_keras(tensors[key])
        if tuple(value.shape) != shape:
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(tensors[key].shape)}, which does not fit "
                             f"layer {layer.name!r} (needs {shape} in Keras layout): is the width (alpha) or "
                             "the variant different?")
        values.setdefault(layer.name, (layer, {}))[1][index] = value
    known = {entry[0] for entry in layout}
    has_top = any(layer.name == "predictions" for layer in model.layers)
    for key in tensors:
        if key in known or key.endswith(_IGNORED):
            continue
        if not has_top and key.split(".", 1)[0] in ("conv_head", "norm_head", "classifier"):
            continue
        raise ValueError(f"{path}: tensor {key!r} has no place in model {model.name!r}: is it a timm "
                         "checkpoint of the same MobileNetV4 variant?")
    for layer, by_index in values.values():
        layer.set_weights([by_index[i] for i in range(len(layer.weights))])
    return model
