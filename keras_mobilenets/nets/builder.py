"""One builder loop: an `Architecture` table + options -> a flat functional Keras graph.

The same loop emits a Keras 3 model (flavor "keras") or a tf_keras model (flavor "tf_keras").
"""

from dataclasses import dataclass, replace

from keras_mobilenets.nets import blocks as _builtin_blocks  # noqa: F401  (registers the built-in blocks)
from keras_mobilenets.nets.channels import scale_channels
from keras_mobilenets.nets.flavors import get_flavor
from keras_mobilenets.nets.registry import get_block

_ACTIVATION_SUFFIX = {"relu": "relu", "relu6": "relu", "hard_swish": "hard_swish"}


@dataclass(frozen=True)
class BuildOptions:
    """Everything besides the table that shapes the graph. Validated by `validation.py` beforehand."""

    alpha: float = 1.0
    depth_multiplier: int = 1
    include_top: bool = True
    pooling: str | None = None
    classes: int = 1000
    classifier_activation: object = "softmax"
    dropout_rate: float = 0.0
    include_preprocessing: bool = False
    output_stride: int | None = None
    bn_momentum: float | None = None  # None: the table's own


@dataclass(frozen=True)
class BlockInfo:
    """Where one table row ended up in the graph (like timm's feature_info, for every row)."""

    index: int | None
    kind: str
    output: str
    stride: int
    dilation: int
    channels: int
    layers: tuple = ()
    part: str = "backbone"  # "head" for the layers a task (detection) adds on top of a backbone


class BuildContext:
    """What a block function may use: the flavor's layers, width scaling, stride bookkeeping, naming."""

    def __init__(self, arch, flavor, options):
        self.arch = arch
        self.flavor = flavor
        self.layers = flavor.layers
        self.options = options
        self.stride = 1
        self.dilation = 1
        self.block_index = None
        self.base_channels = None

    def channels(self, paper_channels, rule=None):
        """Filters for a layer the paper gives `paper_channels`, under the table's width rule."""
        return scale_channels(paper_channels, self.options.alpha, rule or self.arch.width)

    def next_stride(self, stride):
        """(stride, dilation) for a layer with nominal `stride`; past output_stride, strides become dilation."""
        if stride == 1:
            return 1, self.dilation
        target = self.options.output_stride
        if target is not None and self.stride >= target:
            rate = self.dilation
            self.dilation *= stride
            return 1, rate
        self.stride *= stride
        return stride, self.dilation

    def batch_norm(self, name):
        momentum = self.options.bn_momentum
        return self.layers.BatchNormalization(
            axis=-1, epsilon=1e-3, momentum=self.arch.bn_momentum if momentum is None else momentum, name=name
        )

    def activation(self, kind, base, name=None):
        """An activation layer named `name`, or `<base>_<relu|hard_swish>`."""
        name = name or f"{base}_{_ACTIVATION_SUFFIX[kind]}"
        if kind == "relu6":
            return self.layers.ReLU(6.0, name=name)
        if kind == "relu":
            return self.layers.ReLU(name=name)
        return self.flavor.HardSwish(name=name)


def expand_rows(rows):
    """Unroll repeated rows (V2's n): the first repeat keeps the stride, the rest have stride 1."""
    for row in rows:
        repeats = getattr(row, "repeats", 1)
        for r in range(repeats):
            yield row if repeats == 1 else replace(row, repeats=1, stride=row.stride if r == 0 else 1)


def _paper_channels(row, previous):
    filters = getattr(row, "filters", None)
    if filters is not None:
        return filters
    expand = getattr(row, "expand", None)
    return previous * expand if expand and previous else previous


def build(arch, input_shape=(None, None, 3), input_tensor=None, name=None, flavor="keras", **options):
    """Build `arch` as a functional model. Arguments are assumed valid (see `validation.py`)."""
    options = BuildOptions(**options)
    flavor = get_flavor(flavor)
    rows = list(expand_rows(arch.rows))
    functions = [get_block(row.block) for row in rows]  # unknown blocks fail before any layer exists
    classifier = get_block(arch.classifier.block) if options.include_top else None

    if input_tensor is None or not flavor.is_keras_tensor(input_tensor):
        inputs = flavor.input(input_shape, tensor=input_tensor)
    else:
        inputs = input_tensor
    x = inputs
    if options.include_preprocessing:
        x = flavor.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="rescaling")(x)

    ctx = BuildContext(arch, flavor, options)
    records = []
    index = arch.first_block_index
    for row, function in zip(rows, functions):
        numbered = getattr(row, "numbered", True)
        ctx.block_index = index if numbered else None
        x = function(x, row, ctx)
        records.append(BlockInfo(ctx.block_index, row.block, flavor.layer_of(x).name, ctx.stride,
                                 ctx.dilation, int(x.shape[-1])))
        ctx.base_channels = _paper_channels(row, ctx.base_channels)
        index += numbered

    if options.include_top:
        x = classifier(x, arch.classifier, ctx)
    elif options.pooling == "avg":
        x = flavor.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif options.pooling == "max":
        x = flavor.layers.GlobalMaxPooling2D(name="max_pool")(x)

    model_inputs = inputs if input_tensor is None else flavor.source_inputs(input_tensor)
    rows_in = inputs.shape[1]
    model = flavor.model(model_inputs, x, name=name or arch.name.format(alpha=options.alpha, rows=rows_in))
    set_block_info(model, _assign_layers(model, records))
    return model


def block_info(model, required=True):
    """The per-row `BlockInfo` the builder attached to `model`; without any, a ValueError saying how to
    get it (or `()` with required=False)."""
    info = getattr(model, "block_info", None)
    if not info and not required:
        return ()
    if not info:
        raise ValueError(
            f"model {model.name!r} has no block_info: it was not built by keras_mobilenets in this "
            "process (block boundaries are not saved with a model). Rebuild it with the same arguments "
            "and load the weights into it."
        )
    return info


def set_block_info(model, records):
    """Attach per-row `BlockInfo` records to `model` (a copy of a model carries its source's records:
    `set_block_info(copy, block_info(source, required=False))`)."""
    model.block_info = tuple(records)
    return model


def _assign_layers(model, records):
    """Give every layer to the block whose output comes next in topological order."""
    outputs = {record.output: i for i, record in enumerate(records)}
    members = [[] for _ in records]
    current = 0
    for layer in model.layers:
        if current < len(records):
            members[current].append(layer.name)
        if layer.name in outputs:
            current = outputs[layer.name] + 1
    return tuple(replace(record, layers=tuple(names)) for record, names in zip(records, members))
