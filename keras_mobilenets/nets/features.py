"""Multi-scale features for detection and segmentation: which layer gives which stride (timm's feature_info)."""

from dataclasses import dataclass

from keras_mobilenets.nets.builder import block_info, set_block_info
from keras_mobilenets.nets.flavors import flavor_of

FEATURE_STRIDES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class FeatureInfo:
    """The last layer at one output stride: its name, channels, and the table row (block) it ends."""

    stride: int
    channels: int
    layer: str
    block_index: int | None


def feature_info(model):
    """FeatureInfo for every stride the model reaches, in increasing stride order.

    With output_stride 8 or 16 the deepest entry is at that stride and is the network's last block.
    """
    last = {}
    for record in block_info(model):
        last[record.stride] = record
    return [FeatureInfo(stride, r.channels, r.output, r.index) for stride, r in sorted(last.items())]


def feature_extractor(model, strides=FEATURE_STRIDES, name=None):
    """A multi-output model (same flavor, same layers and weights) giving the features at `strides`."""
    available = {info.stride: info for info in feature_info(model)}
    missing = [s for s in strides if s not in available]
    if missing or not strides:
        raise ValueError(
            f"strides={tuple(strides)!r} is not allowed: this model has features at strides "
            f"{tuple(sorted(available))} (output_stride limits the deepest one)."
        )
    outputs = [model.get_layer(available[s].layer).output for s in strides]
    extractor = flavor_of(model).model(model.input, outputs, name=name or f"{model.name}_features")
    set_block_info(extractor, block_info(model))
    extractor.feature_info = [available[s] for s in strides]
    return extractor
