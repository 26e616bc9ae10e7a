"""The papers' numbers from the code: parameters, multiply-accumulates and peak activation memory."""

import math
from dataclasses import dataclass, field

from keras_mobilenets.nets.features import block_info as _block_info

_MAC_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass(frozen=True)
class BlockProfile:
    """One row of the per-block table: a table row of the architecture, or the classifier."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    output_bytes: int
    part: str = "backbone"
    trainable_params: int = 0


@dataclass(frozen=True)
class Profile:
    """`kernel_params` counts conv and dense kernels only, as the papers' "M params" do."""

    params: int
    trainable_params: int
    kernel_params: int
    macs: int
    peak_activation_bytes: int
    bytes_per_element: int
    blocks: list = field(default_factory=list)

    def table(self):
        """The per-block table and the totals, as printed by `keras-mobilenets profile`."""
        lines = [f"{'block':<28}{'kind':<22}{'output':>16}{'params':>12}{'MACs':>14}{'out bytes':>12}"]
        for b in self.blocks:
            shape = "x".join(str(d) for d in b.output_shape)
            lines.append(f"{b.name:<28}{b.kind:<22}{shape:>16}{b.params:>12,}{b.macs:>14,}"
                         f"{b.output_bytes:>12,}")
        parts = self.parts()
        if len(parts) > 1:
            for part, (params, trainable, macs) in parts.items():
                lines.append(f"{part} params {params:,} (trainable {trainable:,}); MACs {macs:,} "
                             f"({macs / 1e6:.1f}M)")
        lines.append(f"total params {self.params:,} (trainable {self.trainable_params:,}); "
                     f"MACs {self.macs:,} ({self.macs / 1e6:.1f}M); peak activation memory "
                     f"{self.peak_activation_bytes:,} bytes at {8 * self.bytes_per_element}-bit")
        return "\n".join(lines)

    def parts(self):
        """{part: (params, trainable params, MACs)}: "backbone", and "head" for what a task adds on top."""
        totals = {}
        for b in self.blocks:
            params, trainable, macs = totals.get(b.part, (0, 0, 0))
            totals[b.part] = (params + b.params, trainable + b.trainable_params, macs + b.macs)
        return totals


def layer_macs(layer):
    """Multiply-accumulates of one Conv2D / DepthwiseConv2D / Dense layer for one image (0 for others)."""
    kind = type(layer).__name__
    if kind not in _MAC_LAYERS:
        return 0
    out_shape = tuple(layer.output.shape)
    in_channels = layer.input.shape[-1]
    if kind == "Dense":
        return math.prod(out_shape[1:-1]) * in_channels * out_shape[-1]
    kh, kw = layer.kernel_size
    spatial = out_shape[1] * out_shape[2]
    if kind == "DepthwiseConv2D":
        return spatial * kh * kw * in_channels * layer.depth_multiplier
    return spatial * kh * kw * (in_channels // getattr(layer, "groups", 1)) * out_shape[-1]


def _elements(shape):
    return math.prod(d for d in shape[1:])


def _hidden_layers(records, by_name):
    """Layers whose outputs never exist between operators under the V2 paper's Section 5 model.

    An inverted-residual block is one operator: only its output is materialized. A block without an
    expand conv takes the preceding conv as its expansion (the paper's trick for the first layer).
    Explicit zero padding belongs to the strided conv after it (TF's 'SAME'), so it is never counted.
    """
    hidden = {name for name, layer in by_name.items() if type(layer).__name__ == "ZeroPadding2D"}
    for i, record in enumerate(records):
        if record.kind != "inverted_residual":
            continue
        hidden.update(name for name in record.layers if name != record.output)
        first_weighted = next(by_name[n] for n in record.layers if by_name[n].weights)
        if type(first_weighted).__name__ == "DepthwiseConv2D" and i and records[i - 1].kind == "conv_bn":
            hidden.update(records[i - 1].layers[1:] if i == 1 else records[i - 1].layers)
    return hidden


def _weight_name(weight):
    """The last part of a Keras 3 path or a tf_keras name ("block_1_depthwise/depthwise_kernel:0")."""
    return getattr(weight, "path", weight.name).split(":")[0].rsplit("/", 1)[-1]


def profile(model, bytes_per_element=2):
    """Parameters, MACs (Conv2D, DepthwiseConv2D, Dense; SE convs included) and peak activation bytes.

    Peak memory follows the V2 paper (Section 5): the largest tensor that must exist between operators,
    at `bytes_per_element` bytes (16-bit by default); layers outside blocks count one by one.
    """
    if any(None in tuple(t.shape[1:]) for t in model.inputs):
        raise ValueError(
            f"profile needs a fixed input size; model {model.name!r} has input shape "
            f"{tuple(model.inputs[0].shape)}: build it with e.g. input_shape=(224, 224, 3)"
        )
    records = _block_info(model)
    by_name = {layer.name: layer for layer in model.layers}
    hidden = _hidden_layers(records, by_name)
    peak = max(_elements(t.shape) for t in model.inputs)
    for layer in model.layers:
        if layer.name not in hidden and type(layer).__name__ != "InputLayer":
            peak = max(peak, _elements(layer.output.shape))

    blocks = []
    groups = [(r.output, r.kind, r.layers, getattr(r, "part", "backbone")) for r in records]
    top = tuple(layer.name for layer in model.layers
                if layer.name not in {n for r in records for n in r.layers})
    if top:
        groups.append((top[-1], "classifier", top, "backbone"))
    for name, kind, members, part in groups:
        layers = [by_name[n] for n in members]
        out_shape = tuple(by_name[name].output.shape[1:])
        blocks.append(BlockProfile(
            name=name, kind=kind, output_shape=out_shape,
            params=sum(layer.count_params() for layer in layers),
            macs=sum(layer_macs(layer) for layer in layers),
            output_bytes=math.prod(out_shape) * bytes_per_element,
            part=part,
            trainable_params=sum(math.prod(w.shape) for layer in layers for w in layer.trainable_weights),
        ))
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    kernels = sum(math.prod(w.shape) for w in model.weights if _weight_name(w).endswith("kernel"))
    return Profile(
        params=model.count_params(),
        trainable_params=int(trainable),
        kernel_params=int(kernels),
        macs=sum(b.macs for b in blocks),
        peak_activation_bytes=int(peak) * bytes_per_element,
        bytes_per_element=bytes_per_element,
        blocks=blocks,
    )
