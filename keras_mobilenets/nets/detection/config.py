"""What a built detector is, as data that survives saving: `DetectorConfig` and `detector_config(model)`;
`is_detector(model)`, the one test of "is this a detector" every room asks.

`SSDLite` attaches the config as `model.detector_config`. A model reloaded from a .keras / SavedModel file
has lost that attribute; `detector_config` then reads it back from the graph itself (input size, map sizes
and anchors per location from the predictor convs, classes from the class predictor), which names the preset
whose anchor pattern it shows. For a custom anchor scheme, keep `config.to_json()` next to the model file and
use `DetectorConfig.from_json`.
"""

import json
import re
from dataclasses import asdict, dataclass

from keras_mobilenets.nets.detection.spec import DETECTORS, AnchorSpec


@dataclass(frozen=True)
class DetectorConfig:
    """A detector's outputs and anchors: enough to encode targets, decode boxes and convert to TFLite."""

    num_classes: int
    input_shape: tuple
    feature_map_sizes: tuple
    anchors_per_location: tuple
    anchor_spec: AnchorSpec
    score_converter: str = "sigmoid"
    box_scales: tuple = (10.0, 10.0, 5.0, 5.0)
    head: str = "ssdlite"
    preset: str = "paper"
    backbone: str | None = None
    alpha: float | None = None
    reduced_tail: bool = False

    @property
    def num_anchors(self):
        return sum(r * c * a for (r, c), a in zip(self.feature_map_sizes, self.anchors_per_location))

    def to_dict(self):
        return asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        spec = dict(data.pop("anchor_spec"))
        spec["aspect_ratios"] = tuple(spec["aspect_ratios"])
        data["anchor_spec"] = AnchorSpec(**spec)
        for key in ("input_shape", "box_scales", "anchors_per_location"):
            data[key] = tuple(data[key])
        data["feature_map_sizes"] = tuple(tuple(s) for s in data["feature_map_sizes"])
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


_PREDICTOR = re.compile(r"predictor_(\d+)_(box|class)_conv$")


def is_detector(model):
    """Whether `model` is an SSD detector: built by `SSDLite` (its `box_encodings` output), reloaded from a
    file, or wrapped by `optimize.quantize_model` (which keeps the config as an attribute)."""
    return getattr(model, "detector_config", None) is not None or any(
        layer.name == "box_encodings" for layer in model.layers)


def detector_config(model):
    """The `DetectorConfig` of a detector built by `SSDLite`, from its attribute or read off its graph."""
    config = getattr(model, "detector_config", None)
    if config is not None:
        return config
    convs = {}
    for layer in model.layers:
        match = _PREDICTOR.match(layer.name)
        if match:
            convs[(int(match.group(1)), match.group(2))] = tuple(layer.output.shape[1:])
    maps = sorted({index for index, _ in convs})
    if not maps or maps != list(range(len(maps))):
        raise ValueError(f"model {model.name!r} has no SSD predictor layers named predictor_<i>_box_conv; "
                         "pass the DetectorConfig of the model (DetectorConfig.from_json) instead.")
    sizes = tuple(convs[(i, "box")][:2] for i in maps)
    per_location = tuple(convs[(i, "box")][2] // 4 for i in maps)
    num_classes = convs[(0, "class")][2] // per_location[0] - 1
    head = "ssdlite" if any(layer.name == "predictor_0_box_depthwise" for layer in model.layers) else "ssd"
    for (kind, preset), spec in DETECTORS.items():
        if kind == head and tuple(spec.anchors.per_location(len(maps))) == per_location:
            return DetectorConfig(
                num_classes=num_classes, input_shape=tuple(model.inputs[0].shape[1:]),
                feature_map_sizes=sizes, anchors_per_location=per_location, anchor_spec=spec.anchors,
                score_converter=spec.score_converter, box_scales=spec.box_scales, head=head, preset=preset)
    raise ValueError(f"model {model.name!r} has {per_location} anchors per location, which no preset "
                     "makes; pass its DetectorConfig (DetectorConfig.from_json) instead.")
