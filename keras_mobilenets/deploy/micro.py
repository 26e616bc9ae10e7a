"""TFLite Micro: int8 files it runs, a check before it sees them, its outputs, and its arena, measured.

TFLite Micro (the `tflite-micro` wheel's Python interpreter, the same C++ runtime as on a Cortex-M) has
no exceptions for some failures: a softmax whose input scale is degenerate (an untrained net's, near
1e-8) fails a CHECK and aborts the whole process. `check_file` reads the flatbuffer first and refuses, with
a ValueError naming the op and the layer, what the runtime would abort on or lacks; `run_micro(...,
isolate=True)` runs it in a child process, where an abort becomes a `MicroAbortError`. A too small arena
raises RuntimeError in the runtime itself, which `smallest_arena` uses to search the arena size.

The arena holds every tensor the memory planner places (offline, by lifetimes in operator order) plus
the persistent structures (per-node data, per-channel quantization multipliers, scratch buffers); see the
README's "Microcontrollers" section for how it compares with the V2 paper's Section 5 figure.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from keras_mobilenets.extras import require

# Builtin ops registered by the tflite-micro wheel's interpreter (read from its Register_* symbols, 0.dev
# builds of 2025); any other builtin gets "Didn't find op for builtin opcode" from the runtime.
SUPPORTED_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS
BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE
DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV
FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D
LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D
MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX
REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2
SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK
VAR_HANDLE WHILE ZEROS_LIKE
""".split())

# Softmax int8: TFLite Micro computes beta * input_scale * 2^(31 - 5) and CHECKs that it exceeds 1
# (QuantizeMultiplierGreaterThanOne), so a smaller input scale aborts the process.
_SOFTMAX_MIN_SCALED = 1.0
_ALIGNMENT = 16  # TFLite Micro aligns every arena buffer to 16 bytes


class MicroAbortError(RuntimeError):
    """TFLite Micro ended the (child) process instead of returning an error."""


def _schema():
    return require("tflite_micro.tensorflow.lite.micro.python.schema_py_generated", "micro")


def _runtime():
    return require("tflite_micro.python.tflite_micro.runtime", "micro")


def _op_names(schema):
    return {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def operators(content):
    """[(op name, output tensor name, op object)] of the main subgraph of a TFLite file, in run order."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    names = _op_names(schema)
    graph = model.subgraphs[0]
    found = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = f"CUSTOM {code.customCode.decode() if code.customCode else ''}".strip()
        out = graph.tensors[op.outputs[0]].name.decode() if len(op.outputs) else ""
        if "/" not in out and len(op.inputs):  # a graph output takes the signature's name
            out = f"{graph.tensors[op.inputs[0]].name.decode()} (the model's output)"
        found.append((name, out, op, graph))
    return found


def _layer(tensor_name):
    """The Keras layer in a converter's tensor name ("serving_default_images:0", "model/block_1_expand/...")."""
    parts = [p for p in tensor_name.split(";")[0].split("/") if p]
    layer = parts[1] if len(parts) > 2 else parts[0] if parts else tensor_name
    return layer[:-2] if layer.endswith("_1") and len(parts) > 2 else layer  # Keras 3's call suffix


def check_file(content):
    """Raise a ValueError naming the op and its layer for what TFLite Micro lacks or would abort on."""
    problems = []
    for name, out, op, graph in operators(content):
        if name not in SUPPORTED_OPS:
            problems.append(f"op {name} (layer {_layer(out)!r}, tensor {out!r}) is not in TFLite Micro")
        elif name == "SOFTMAX":
            tensor = graph.tensors[op.inputs[0]]
            q = tensor.quantization
            scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
            beta = op.builtinOptions.beta if op.builtinOptions is not None else 1.0
            if scale is not None and beta * scale * 2.0 ** 26 <= _SOFTMAX_MIN_SCALED:
                problems.append(
                    f"op SOFTMAX (layer {_layer(out)!r}) has input scale {scale:.3g}: TFLite Micro needs "
                    f"beta * scale > {2.0 ** -26:.3g} and would abort the process (an untrained or "
                    "degenerate classifier; convert with classifier_activation=None for logits)")
    if problems:
        raise ValueError("this TFLite file cannot run on TFLite Micro: " + "; ".join(problems))
    return content


def micro_model(arch="v2", alpha=0.35, resolution=96, channels=3, minimalistic=False, classes=1000):
    """A MobileNet as a microcontroller runs it: logits (no softmax), no Rescaling layer inside.

    Without the Rescaling the int8 input's own scale and zero point do the [0, 255] -> [-1, 1] mapping
    (pixel - 128, near enough), instead of a MUL and an ADD whose outputs are two more input-sized tensors
    in the arena. `channels=1` gives the grayscale input of TFLite Micro's person-detection example.
    """
    from keras_mobilenets.nets.models import create_model

    return create_model(arch, input_shape=(resolution, resolution, channels), alpha=alpha,
                        minimalistic=minimalistic, classes=classes, classifier_activation=None,
                        include_preprocessing=False)


def model_inputs(model, pixels):
    """[0, 255] pixels as `model` takes them ([-1, 1] without a Rescaling layer inside); a 3-channel
    photo becomes gray (the channel mean) for a 1-channel model."""
    from keras_mobilenets.nets.preprocessing import includes_preprocessing

    pixels = np.asarray(pixels, np.float32)
    if model.inputs[0].shape[-1] == 1 and pixels.shape[-1] == 3:
        pixels = pixels.mean(-1, keepdims=True)
    return pixels if includes_preprocessing(model) else pixels / 127.5 - 1.0


def convert_micro(model, representative, per_channel=True, representative_count=100):
    """Int8 TFLite bytes (int8 input and output) that TFLite Micro runs, checked with `check_file`.

    The conversion is `deploy.tflite.convert` in mode "int8"; `representative` are images as the model
    takes them (see `model_inputs`).
    """
    from keras_mobilenets.deploy.tflite import convert

    content = convert(model, "int8", representative, input_type="int8", output_type="int8",
                      representative_count=representative_count, per_channel=per_channel)
    return check_file(content)


@contextlib.contextmanager
def _captured_stderr():
    """Capture file descriptor 2 (TFLite Micro's MicroPrintf writes there, below Python): yields a list
    that holds the text after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    text = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def _quantize(images, detail):
    scale = float(detail["quantization_parameters"]["scales"][0])
    zero = int(detail["quantization_parameters"]["zero_points"][0])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(np.asarray(images, np.float32) / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(values, detail):
    scale = float(detail["quantization_parameters"]["scales"][0])
    zero = int(detail["quantization_parameters"]["zero_points"][0])
    return (values.astype(np.float32) - zero) * scale


def _interpreter(content, arena_size):
    runtime = _runtime()
    return runtime.Interpreter.from_bytes(content, arena_size=int(arena_size))


def runtime_interpreter(content, arena_size=None):
    """TFLite Micro's own Python interpreter on a checked file (for timing or direct use)."""
    check_file(content)
    arena_size = default_arena(content) if arena_size is None else arena_size
    _check_arena(content, arena_size)
    return _interpreter(content, arena_size)


def default_arena(content):
    """A generous arena for runs that do not measure it: ten times the file, at least 4 MB."""
    return max(4 << 20, 10 * len(content))


def run_micro(content, images, arena_size=None, isolate=False, raw=False, check=True):
    """TFLite Micro's outputs for images as the model takes them, one at a time: float (dequantized), or
    the int8 values with raw=True. isolate=True runs it in a child process (an abort there is a
    MicroAbortError); check=False skips `check_file`."""
    if check:
        check_file(content)
    arena_size = default_arena(content) if arena_size is None else arena_size
    _check_arena(content, arena_size)
    images = np.asarray(images, np.float32)
    if isolate:
        return _run_child(content, images, arena_size, raw)
    with _captured_stderr() as log:
        try:
            interpreter = _interpreter(content, arena_size)
            source, target = interpreter.get_input_details(0), interpreter.get_output_details(0)
            outputs = []
            for image in images:
                interpreter.set_input(_quantize(image[None], source), 0)
                interpreter.invoke()
                value = interpreter.get_output(0)
                outputs.append(value[0] if raw else _dequantize(value, target)[0])
        except RuntimeError as error:
            failed = error
        else:
            failed = None
    if failed is not None:
        raise RuntimeError(f"TFLite Micro failed with arena_size={arena_size}: {failed} "
                           f"({log[0].strip()[-400:]})") from None
    return np.stack(outputs)


_CHILD = r"""
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
path, arena, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
images = np.load(path + ".in.npy")
it = runtime.Interpreter.from_bytes(open(path, "rb").read(), arena_size=arena)
src, dst = it.get_input_details(0), it.get_output_details(0)
def params(d):
    q = d["quantization_parameters"]
    return float(q["scales"][0]), int(q["zero_points"][0])
s, z = params(src); info = np.iinfo(src["dtype"])
out = []
for image in images:
    it.set_input(np.clip(np.round(image[None] / s + z), info.min, info.max).astype(src["dtype"]), 0)
    it.invoke()
    v = it.get_output(0)
    s2, z2 = params(dst)
    out.append(v[0] if raw else (v[0].astype(np.float32) - z2) * s2)
np.save(path + ".out.npy", np.stack(out))
if len(sys.argv) > 4:
    it.print_allocations()
"""


def _child(content, images, arena_size, raw=False, allocations=False):
    """Run `_CHILD` on the file; (outputs, stderr text)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as f:
            f.write(content)
        np.save(path + ".in.npy", images)
        command = [sys.executable, "-c", _CHILD, path, str(int(arena_size)), "1" if raw else "0"]
        done = subprocess.run(command + (["allocations"] if allocations else []), capture_output=True,
                              text=True)
        if done.returncode < 0 or done.returncode > 128:
            raise MicroAbortError(f"TFLite Micro aborted the child process (exit {done.returncode}): "
                                  f"{done.stderr.strip()[-600:]}")
        if done.returncode:
            raise RuntimeError(f"TFLite Micro failed with arena_size={arena_size}: "
                               f"{done.stderr.strip()[-600:]}")
        return np.load(path + ".out.npy"), done.stderr


def _run_child(content, images, arena_size, raw):
    return _child(content, images, arena_size, raw)[0]


def offline_plan_bytes(content):
    """The bytes an offline memory plan (`plan_offline`) places tensors in; 0 for a file without one.
    TFLite Micro does not check them against the arena: a smaller arena crashes the process."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    for metadata in model.metadata or []:
        if metadata.name == b"OfflineMemoryAllocation":
            plan = np.frombuffer(model.buffers[metadata.buffer].data.tobytes(), np.int32)[3:]
            graph = model.subgraphs[0]
            return max((int(o) + _nbytes(graph.tensors[i]) for i, o in enumerate(plan) if o >= 0), default=0)
    return 0


def _check_arena(content, arena_size):
    needed = offline_plan_bytes(content)
    if arena_size < needed:
        raise RuntimeError(f"TFLite Micro failed with arena_size={arena_size}: the file's offline memory "
                           f"plan alone needs {needed} bytes")


def fits(content, arena_size):
    """Whether TFLite Micro allocates and invokes the model in `arena_size` bytes (in this process)."""
    if arena_size < offline_plan_bytes(content):
        return False
    with _captured_stderr():
        try:
            interpreter = _interpreter(content, arena_size)
            detail = interpreter.get_input_details(0)
            interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
            interpreter.invoke()
        except RuntimeError:
            return False
    return True


def smallest_arena(content, resolution=_ALIGNMENT, high=None):
    """The smallest arena_size (to `resolution` bytes) with which TFLite Micro allocates and invokes the
    model: a bisection over `fits`. The file is checked first (`check_file`), and the first run happens
    in a child process, so a file the runtime would abort on raises instead."""
    check_file(content)
    high = default_arena(content) if high is None else int(high)
    _child(content, _zeros_input(content), high)  # an abort stays in the child
    low = max(0, offline_plan_bytes(content) - 1)  # does not fit
    while not fits(content, high):
        low, high = high, high * 2
        if high > 1 << 31:
            raise RuntimeError("TFLite Micro did not fit the model in 2 GB of arena")
    while high - low > resolution:
        middle = (low + high) // 2
        if fits(content, middle):
            high = middle
        else:
            low = middle
    return high


def _zeros_input(content):
    """One black [0, 255] image of the file's input shape."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    graph = model.subgraphs[0]
    return np.zeros(tuple(graph.tensors[graph.inputs[0]].shape), np.float32)


def recorded_allocations(content, arena_size=None):
    """The recording allocator's figures ("Arena allocation total / head / tail" and each kind of
    persistent data), in bytes, from `print_allocations` after one invoke in a child process."""
    arena_size = default_arena(content) if arena_size is None else arena_size
    check_file(content)
    _, text = _child(content, _zeros_input(content), arena_size, allocations=True)
    figures = {}
    for line in text.splitlines():
        if "[RecordingMicroAllocator]" not in line:
            continue
        body = line.split("]", 1)[1].strip()
        if body.startswith("Arena allocation"):
            kind, number = body[len("Arena allocation "):].split(" ", 1)
            figures[kind] = int(number.split()[0])
        elif body.startswith("'"):
            kind = body[1:body.index("'", 1)]
            figures[kind] = int(body.split(" used ")[1].split()[0])
    if "total" not in figures:
        raise RuntimeError(f"no recording allocator figures in TFLite Micro's output: {text[-400:]}")
    return figures


def litert_outputs(content, images, reference=True):
    """LiteRT's raw int8 outputs of the same file: with its reference kernels (the arithmetic TFLite
    Micro's kernels share) or, reference=False, its optimized ones (without XNNPACK)."""
    interpreter_module = require("ai_edge_litert.interpreter", "micro")
    kind = interpreter_module.OpResolverType
    interpreter = interpreter_module.Interpreter(
        model_content=content, num_threads=1,
        experimental_op_resolver_type=kind.BUILTIN_REF if reference else kind.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = source["quantization"]
    info = np.iinfo(source["dtype"])
    outputs = []
    for image in np.asarray(images, np.float32):
        quantized = np.clip(np.round(image[None] / scale + zero), info.min, info.max).astype(source["dtype"])
        interpreter.set_tensor(source["index"], quantized)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0])
    return np.stack(outputs)


def parity_steps(content, images, reference=True, arena_size=None):
    """Largest |TFLite Micro - LiteRT| over the int8 outputs of one file, in quantization steps."""
    ours = run_micro(content, images, arena_size, raw=True).astype(np.int32)
    theirs = litert_outputs(content, images, reference).astype(np.int32)
    return int(np.abs(ours - theirs).max())


def live_peak(content):
    """(bytes, op index, op name, layer): the most tensor bytes alive at one op, each tensor alive from
    the op that writes it (or the start, for the input) to the last op that reads it. A lower bound on
    what the memory planner can reach in this op order without in-place ops; the arena's planned part
    ("head") sits at or a little above it."""
    ops = operators(content)
    graph = ops[0][3] if ops else None
    if graph is None:
        return 0, -1, "", ""
    first, last = {}, {}
    for index in graph.inputs:
        first[index] = 0
    for i, (_, _, op, _) in enumerate(ops):
        for index in op.outputs:
            first.setdefault(index, i)
            last[index] = max(last.get(index, i), i)
        for index in op.inputs:
            if index >= 0 and graph.tensors[index].buffer and _is_constant(graph, index):
                continue
            if index >= 0:
                last[index] = max(last.get(index, i), i)
    for index in graph.outputs:
        last[index] = len(ops) - 1
    best = (0, -1)
    for i in range(len(ops)):
        alive = sum(_nbytes(graph.tensors[t]) for t in first if first[t] <= i <= last.get(t, first[t]))
        best = max(best, (alive, i))
    name, out = ops[best[1]][0], ops[best[1]][1]
    return best[0], best[1], name, _layer(out)


_CONSTANTS = {}


def _is_constant(graph, index):
    return graph.tensors[index].buffer > 0 and index not in graph.inputs and not _written(graph, index)


def _written(graph, index):
    key = id(graph)
    if key not in _CONSTANTS:
        _CONSTANTS.clear()
        _CONSTANTS[key] = {i for op in graph.operators for i in op.outputs}
    return index in _CONSTANTS[key]


def _nbytes(tensor):
    sizes = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 9: 1, 7: 2, 10: 8}  # schema TensorType -> bytes per element
    return int(np.prod(tensor.shape)) * sizes.get(tensor.type, 4) if tensor.shape is not None else 0


@dataclass
class MicroReport:
    """One model on TFLite Micro: measured arena, the recording allocator's total, the V2 paper's Section 5
    peak at 8 bits, the int8 file's size and the model's MACs."""

    arena_bytes: int
    recorded_bytes: int
    predicted_peak_bytes: int
    file_bytes: int
    macs: int

    def line(self):
        return (f"arena_bytes={self.arena_bytes} predicted_peak_bytes={self.predicted_peak_bytes} "
                f"file_bytes={self.file_bytes}")


def measure(model, content, resolution=_ALIGNMENT):
    """MicroReport of an int8 file `content` converted from `model` (the profile is the model's own; for a
    split model, pass the unsplit one: the Section 5 figure does not depend on the split)."""
    from keras_mobilenets.analysis.profiling import profile

    prof = profile(model, bytes_per_element=1)
    arena = smallest_arena(content, resolution)
    recorded = recorded_allocations(content, arena)["total"]
    return MicroReport(arena, recorded, prof.peak_activation_bytes, len(content), prof.macs)


_UNITS = {"": 1, "B": 1, "KB": 1024, "KIB": 1024, "MB": 1024 ** 2, "MIB": 1024 ** 2}


def parse_size(argument, text):
    """Bytes from "262144", "256KB" or "1MB" (KB = KiB = 1024 bytes, as microcontroller SRAM and flash
    are sold); a ValueError naming `argument` for anything else, spaces and sizes below 1 byte included."""
    import re

    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise ValueError(f"{argument}={text!r} is not allowed: {argument} must be a positive size in bytes "
                         "without spaces, e.g. 262144, 256KB or 1MB (KB = 1024 bytes, MB = 1024 KB)")
    return int(float(match.group(1)) * _UNITS[unit])


def synthetic_images(model, count=8, seed=0):
    """`count` smooth random images in the model's input space ([-1, 1] without a Rescaling layer): enough
    to calibrate an untrained model's int8 ranges when only its memory and file size matter."""
    from keras_mobilenets.nets.preprocessing import includes_preprocessing

    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 8, 8, channels))
    rows = np.linspace(0, 7, height).astype(int)
    cols = np.linspace(0, 7, width).astype(int)
    pixels = coarse[:, rows][:, :, cols] + rng.normal(0, 16, (count, height, width, channels))
    pixels = np.clip(pixels, 0, 255).astype(np.float32)
    return pixels if includes_preprocessing(model) else pixels / 127.5 - 1.0


def measure_configuration(arch="v2", alpha=0.35, resolution=96, channels=3, minimalistic=False, t=1,
                          classes=1000, resolution_bytes=_ALIGNMENT, images=None, in_place=True):
    """(MicroReport, int8 file bytes) of one configuration: built (untrained: the arena and the file size
    do not depend on the weights), split in `t` groups, converted, checked, given an offline memory plan
    with in-place ADDs (`plan_offline`, unless in_place=False) and run on TFLite Micro."""
    from keras_mobilenets.optimize.split import split_blocks

    model = micro_model(arch, alpha, resolution, channels, minimalistic, classes)
    images = synthetic_images(model) if images is None else images
    converted = model if t == 1 else split_blocks(model, t)
    content = convert_micro(converted, images)
    if in_place:
        from keras_mobilenets.optimize.split import execution_order

        content = plan_offline(content, layer_order=execution_order(converted))
    report = measure(model, content, resolution_bytes)
    return report, content


def _first_fit(groups, span, order):
    """Offsets from placing the buffers in `order`, each at the lowest offset free over its lifetime."""
    placed, offset_of = [], {}
    for r in sorted(groups, key=order):
        size, (start, stop) = groups[r], span[r]
        offset = 0
        for low, high in sorted((o, o + s) for o, s, a, b in placed if a <= stop and start <= b):
            if offset + size <= low:
                break
            offset = max(offset, high)
        placed.append((offset, size, start, stop))
        offset_of[r] = offset
    return offset_of


def _reorder(graph, layer_order):
    """Run the ops in `layer_order` (Keras layer names, topological) as far as their data allows: Kahn's
    algorithm with each op's priority the position of the layer its output tensor names."""
    import heapq

    position = {name: i for i, name in enumerate(layer_order)}
    keys, previous = [], -1
    for j, op in enumerate(graph.operators):
        name = graph.tensors[op.outputs[0]].name.decode().split(";")[0]
        parts = [p for p in name.split("/") if p]
        layer = parts[1] if len(parts) > 2 else parts[0] if parts else ""
        key = position.get(layer[:-2] if layer.endswith("_1") else layer, position.get(layer, previous))
        keys.append((key, j))
        previous = key
    producer = {i: j for j, op in enumerate(graph.operators) for i in op.outputs}
    waiting = [{producer[i] for i in op.inputs if i in producer} for op in graph.operators]
    users = [[] for _ in graph.operators]
    for j, needs in enumerate(waiting):
        for k in needs:
            users[k].append(j)
    ready = [keys[j] for j, needs in enumerate(waiting) if not needs]
    heapq.heapify(ready)
    order = []
    while ready:
        _, j = heapq.heappop(ready)
        order.append(j)
        for k in users[j]:
            waiting[k].discard(j)
            if not waiting[k]:
                heapq.heappush(ready, keys[k])
    graph.operators = [graph.operators[j] for j in order]


def plan_offline(content, in_place=True, layer_order=None):
    """The file with an offline memory plan (TFLite Micro's "OfflineMemoryAllocation" metadata) in which
    each ADD whose input dies there writes over that input.

    TFLite Micro's own planner gives every tensor its own buffer for its lifetime, so the running sum of
    the t-way split (acc_g = acc_(g-1) + p_g) holds three block-output tensors at each ADD; TFLite Micro
    documents that an offline plan may overlap buffers whose data is not used at the same time, and its
    int8 ADD of equal shapes reads and writes element by element, so the output can take the dying
    input's place. The placement is the best of four greedy first-fit orders, on 16-byte offsets.

    `layer_order` (Keras layer names in the order to run them, e.g. `optimize.split.execution_order` of a
    split model) also reorders the ops: the converter follows the Keras graph's depth order, which runs
    every group's expansion, then every group's depthwise conv (V2 1.0/224 at t=16 held ten block
    outputs at once); the split model's own order keeps one group's tensors alive at a time.
    """
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    graph = model.subgraphs[0]
    if layer_order is not None:
        _reorder(graph, layer_order)
    names = _op_names(schema)
    produced = {i for op in graph.operators for i in op.outputs}
    planned = [i for i in range(len(graph.tensors)) if i in produced or i in list(graph.inputs)]
    end = len(graph.operators) - 1
    first = {i: 0 for i in graph.inputs}
    last = {}
    for j, op in enumerate(graph.operators):
        for i in op.outputs:
            first.setdefault(i, j)
            last[i] = max(last.get(i, j), j)
        for i in op.inputs:
            if i in first:
                last[i] = max(last.get(i, j), j)
    for i in graph.outputs:
        last[i] = end
    root = {i: i for i in planned}

    def find(i):
        while root[i] != i:
            i = root[i]
        return i

    span = {i: [first[i], last.get(i, first[i])] for i in planned}
    if in_place:
        keep = set(graph.inputs) | set(graph.outputs)
        for j, op in enumerate(graph.operators):
            code = model.operatorCodes[op.opcodeIndex]
            if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) != "ADD":
                continue
            out = op.outputs[0]
            for i in op.inputs:
                same = (i in root and i not in keep and last.get(i) == j and span[find(i)][1] == j
                        and list(graph.tensors[i].shape) == list(graph.tensors[out].shape)
                        and graph.tensors[i].type == graph.tensors[out].type)
                if same:
                    r = find(i)
                    root[out] = r
                    span[r][1] = span[out][1]
                    break
    groups = {}
    for i in planned:
        r = find(i)
        size = -(-_nbytes(graph.tensors[i]) // _ALIGNMENT) * _ALIGNMENT
        groups[r] = max(groups.get(r, 0), size)
    orders = (lambda r: (-groups[r], span[r][0]), lambda r: (span[r][0], -groups[r]),
              lambda r: (-(span[r][1] - span[r][0]), -groups[r]), lambda r: (-groups[r] * (span[r][1] - span[r][0]),))
    offset_of = min((_first_fit(groups, span, order) for order in orders),
                    key=lambda found: max(found[r] + groups[r] for r in groups))
    offsets = [offset_of[find(i)] if i in root else -1 for i in range(len(graph.tensors))]
    plan = np.array([1, 0, len(offsets)] + offsets, np.int32)
    buffer = schema.BufferT()
    buffer.data = plan.view(np.uint8)
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = "OfflineMemoryAllocation"
    metadata.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != b"OfflineMemoryAllocation"] + [metadata]
    import flatbuffers

    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
