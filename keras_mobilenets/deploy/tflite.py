"""TFLite conversion in every mode, through a SavedModel, ending in a parity report run with LiteRT.

Modes: float32, float16, dynamic (dynamic-range weights), int8 (full-integer post-training quantization
with a representative dataset) and qat-int8 (a `quantize_model` model). The file is written only after
the report passes: below `min_top1_agreement` the call raises and nothing is left at `path`.

int8 weights get one range per output channel. `per_channel=False` gives one per tensor: a smaller file
where the per-channel tables weigh (each channel of a weight and of its int32 bias carries a float32 scale
and an int64 zero point; 28% of a 10-class V2 0.35 int8 file). For int8 (PTQ) the converter does it, at
some accuracy risk; a qat-int8 file follows its QAT model, so per tensor there means
`quantize_model(model, per_channel=False)` (BatchNorm folded, then trained with per-tensor fake-quants).
"""

import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from keras_mobilenets.fileio import write_atomic
from keras_mobilenets.extras import require

MODES = ("float32", "float16", "dynamic", "int8", "qat-int8")
INT8_MODES = ("int8", "qat-int8")  # integer files: int8/uint8 input and output, per-tensor weights
IO_TYPES = ("float32", "int8", "uint8")


class ParityError(ValueError):
    """The converted model disagrees with its source more than allowed; carries the report."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclass
class TFLiteReport:
    path: str
    mode: str
    size_bytes: int
    max_abs_diff: float
    top1_agreement: float
    samples: int
    non_int8_ops: list = field(default_factory=list)
    conversion_seconds: float = 0.0

    def __str__(self):
        ops = ", ".join(self.non_int8_ops) if self.non_int8_ops else "none"
        return (f"{self.mode}: {self.size_bytes / 1e6:.2f} MB, top-1 agreement {self.top1_agreement:.4f} "
                f"on {self.samples} images, max |diff| {self.max_abs_diff:.4f}, non-int8 ops: {ops}, "
                f"converted in {self.conversion_seconds:.1f} s")


def _images(source, limit):
    """Up to `limit` [0, 255] float32 images from an array or a (pixels, label) batched dataset."""
    if source is None:
        return None
    if isinstance(source, np.ndarray):
        return source[:limit].astype(np.float32)
    batches, count = [], 0
    for item in source:
        pixels = item[0] if isinstance(item, (tuple, list)) else item
        batches.append(np.asarray(pixels, np.float32))
        count += len(batches[-1])
        if count >= limit:
            break
    return np.concatenate(batches)[:limit]


def _classifier_endpoint(model):
    """A classifier's serving function: probabilities."""
    def serve(images):
        return {"probabilities": model(images, training=False)}

    return serve


def _saved_model(model, folder, endpoint=_classifier_endpoint):
    """Write a SavedModel whose serving_default, `endpoint(model)`, takes one [0, 255] image (batch 1).

    Keras 3 goes through keras.export.ExportArchive (plain tf.saved_model.save would leave its weights
    as variables in the TFLite file), tf_keras (QAT) models through tf.saved_model.save.
    """
    import tensorflow as tf

    from keras_mobilenets.nets.flavors import flavor_of

    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    spec = tf.TensorSpec([1, height, width, channels], tf.float32, name="images")
    serve = endpoint(model)

    if flavor_of(model).name == "keras":
        import keras

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve, input_signature=[spec])
        archive.write_out(folder, verbose=False)
        return folder
    # only the variables are tracked: tracking the tf_keras model itself would make the save trace every
    # layer's call for Keras metadata the converter never reads (most of a QAT conversion's time)
    module = tf.Module()
    module.variables_list = list(model.variables)
    module.serve = tf.function(serve, input_signature=[spec])
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    return folder


def convert(model, mode="float32", representative=None, input_type="float32", output_type="float32",
            representative_count=100, per_channel=True, endpoint=_classifier_endpoint, custom_ops=False):
    """TFLite flatbuffer bytes of `model` in `mode` (see the module docstring).

    `endpoint(model)` gives the serving function converted (default: the classifier's probabilities);
    `custom_ops` lets the converter keep ops it has no builtin for (a detector's post-processing op).
    """
    import tensorflow as tf

    from keras_mobilenets import optimize

    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed: mode must be one of {MODES}")
    if not per_channel and mode not in INT8_MODES:
        # per-tensor dynamic-range weights moved V3-Small's probabilities by up to 0.93
        raise ValueError(f"per_channel=False is not allowed with mode={mode!r}: per-tensor weights are "
                         "offered for mode 'int8' and 'qat-int8'")
    for name, value in (("input_type", input_type), ("output_type", output_type)):
        if value not in IO_TYPES:
            raise ValueError(f"{name}={value!r} is not allowed: {name} must be one of {IO_TYPES}")
        if value != "float32" and mode not in INT8_MODES:
            raise ValueError(f"{name}={value!r} is not allowed with mode={mode!r}: integer inputs and "
                             "outputs need mode 'int8' or 'qat-int8'")
    is_qat = optimize.is_quantized(model)
    if mode == "qat-int8" and not is_qat:
        raise ValueError("mode='qat-int8' is not allowed for a model without QAT wrappers: use "
                         "keras_mobilenets.optimize.quantize_model first, or mode='int8' for PTQ")
    if mode == "qat-int8" and not per_channel and _per_axis(model):
        raise ValueError("per_channel=False with mode='qat-int8' needs a QAT model with one weight range "
                         "per tensor: the converter keeps the model's own fake-quants, so make it with "
                         "quantize_model(model, per_channel=False)")
    images = _images(representative, representative_count)
    if mode == "int8" and images is None:
        raise ValueError("mode='int8' needs representative: [0, 255] images (array or pipeline) that "
                         "calibrate the activation ranges")
    if mode == "int8":
        model = optimize.int8_form(model)  # a copy: the caller's model stays as it is
    with tempfile.TemporaryDirectory() as folder:
        converter = tf.lite.TFLiteConverter.from_saved_model(_saved_model(model, folder, endpoint),
                                                             signature_keys=["serving_default"])
        converter.allow_custom_ops = custom_ops
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            converter.representative_dataset = lambda: ([image[None]] for image in images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter._experimental_disable_per_channel = not per_channel  # the converter's own switch
        if mode in INT8_MODES:
            converter.inference_input_type = getattr(tf, input_type)
            converter.inference_output_type = getattr(tf, output_type)
        return converter.convert()


def _per_axis(qat_model):
    """Whether any weight of a QAT model is fake-quantized per channel."""
    return any(getattr(quantizer, "per_axis", False) for layer in qat_model.layers
               for _, quantizer, _ in getattr(layer, "_weight_vars", ()))


def per_tensor(interpreter):
    """Whether every quantized tensor of a TFLite file has one scale (no per-channel tables)."""
    return all(len(detail["quantization_parameters"]["scales"]) <= 1
               for detail in interpreter.get_tensor_details())


def run_tflite(content, images, num_threads=2):
    """Float outputs of a TFLite model (bytes or path) on [0, 255] images, one at a time, with LiteRT."""
    interpreter = plain_interpreter(content, num_threads)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        interpreter.set_tensor(source["index"], quantize_input(image[None], source))
        interpreter.invoke()
        outputs.append(dequantize_output(interpreter.get_tensor(target["index"]), target)[0])
    return np.stack(outputs), interpreter


def plain_interpreter(content, num_threads=2):
    """A LiteRT interpreter of a TFLite file (bytes or path), tensors allocated, without the default
    XNNPACK delegate, so the op list (`non_int8_ops`) shows the file's own ops."""
    litert = require("ai_edge_litert.interpreter", "deploy")
    kwargs = {"model_content": content} if isinstance(content, bytes) else {"model_path": content}
    interpreter = litert.Interpreter(
        num_threads=num_threads,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, **kwargs)
    interpreter.allocate_tensors()
    return interpreter


def quantize_input(array, detail):
    """[0, 255] float pixels as an input tensor of `detail` (LiteRT's tensor details) takes them:
    rounded with the tensor's scale and zero point when it is int8 / uint8, unchanged when float."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return np.asarray(array, dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(array, np.float32) / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(array, detail):
    """float32 values of an output tensor of `detail`: (q - zero point) * scale when it is int8 / uint8
    (a uint8 softmax otherwise reads 0-255, not probabilities)."""
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        return array.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((array.astype(np.float32) - zero) * scale).astype(np.float32)


def non_int8_ops(interpreter):
    """"OP (output tensor name)" for each op that computes in float (QUANTIZE/DEQUANTIZE excluded)."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # LiteRT's only op listing
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        floats = [tensors[i]["name"] for i in op["outputs"] if i in tensors and tensors[i]["dtype"] == np.float32]
        if floats:
            found.append(f"{op['op_name']} ({floats[0]})")
    return found


def export_tflite(model, path, mode="float32", representative=None, sample=None, input_type="float32",
                  output_type="float32", min_top1_agreement=0.98, num_threads=2, overwrite=False,
                  reference=None, per_channel=True):
    """Convert, compare with `reference` (default: `model`) on `sample`, write `path`; a TFLiteReport.

    `sample` and `representative`: [0, 255] images (arrays or our pipelines). Without `sample` the
    representative images are used. The call raises `ParityError` (and writes nothing) when top-1
    agreement is below `min_top1_agreement`.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it")
    if not 0 <= min_top1_agreement <= 1:
        raise ValueError(f"min_top1_agreement={min_top1_agreement!r} is not allowed: must be in [0, 1]")
    images = _images(sample if sample is not None else representative, 64)
    if images is None:
        raise ValueError("export_tflite needs sample (or representative) images for the parity report")
    started = time.perf_counter()
    content = convert(model, mode, representative, input_type, output_type, per_channel=per_channel)
    seconds = time.perf_counter() - started
    expected = np.asarray((reference or model)(images, training=False))
    actual, interpreter = run_tflite(content, images, num_threads)
    quantized = mode in INT8_MODES
    report = TFLiteReport(
        path=path, mode=f"{mode} per-tensor" if quantized and per_tensor(interpreter) else mode,
        size_bytes=len(content),
        max_abs_diff=float(np.abs(actual - expected).max()),
        top1_agreement=float((actual.argmax(-1) == expected.argmax(-1)).mean()), samples=len(images),
        non_int8_ops=non_int8_ops(interpreter) if quantized else [],
        conversion_seconds=round(seconds, 2))
    if report.top1_agreement < min_top1_agreement:
        raise ParityError(f"TFLite {mode} top-1 agreement {report.top1_agreement:.4f} is below "
                          f"min_top1_agreement={min_top1_agreement}; nothing written. {report}", report)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    write_atomic(path, content)  # the user's umask, like every other file (mkstemp would give 0600)
    return report


@dataclass
class PruningReport:
    sparsity: float
    layer_sparsity: dict
    dense_gzip_bytes: int
    pruned_gzip_bytes: int

    def __str__(self):
        return (f"sparsity {self.sparsity:.3f} over {len(self.layer_sparsity)} pruned kernels; gzipped "
                f"float32 TFLite {self.dense_gzip_bytes / 1e6:.2f} MB dense -> "
                f"{self.pruned_gzip_bytes / 1e6:.2f} MB pruned "
                f"({self.pruned_gzip_bytes / self.dense_gzip_bytes:.2f}x)")


def pruning_report(dense, stripped, layer_types=None):
    """Sparsity of the pruned kernels and the gzip-compressed float32 TFLite size, dense vs pruned."""
    import gzip

    from keras_mobilenets.optimize import PRUNABLE

    layer_types = PRUNABLE if layer_types is None else layer_types
    layer_sparsity, zeros, total = {}, 0, 0
    for layer in stripped.layers:
        if type(layer).__name__ in layer_types:
            kernel = np.asarray(layer.kernel)
            layer_sparsity[layer.name] = float((kernel == 0).mean())
            zeros += int((kernel == 0).sum())
            total += kernel.size
    sizes = [len(gzip.compress(convert(m, "float32"), 9)) for m in (dense, stripped)]
    return PruningReport(zeros / max(1, total), layer_sparsity, *sizes)
