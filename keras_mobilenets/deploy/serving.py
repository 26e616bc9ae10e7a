"""SavedModel export for TF Serving: integer version folders, pixel and image-bytes signatures.

Each export is written to a hidden temporary folder inside `base_dir`, reloaded and checked in a fresh
Python process, and only then renamed to `base_dir/<version>/`: a failure leaves no version folder behind
and never touches the existing ones. An overwrite moves the old version aside until the new one is in
place; the next export (or `recover`) puts back or deletes what a kill left.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass

import numpy as np

from keras_mobilenets.fileio import check_label, write_atomic
from keras_mobilenets.nets.detection.config import is_detector  # (Predictor imports it from here too)
from keras_mobilenets.nets.flavors import flavor_of
from keras_mobilenets.nets.preprocessing import preprocess_input

SIGNATURES = ("serving_default", "serving_uint8", "serving_bytes")
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_SIDE = 8192
_TMP_PREFIX = ".tmp-export-"


@dataclass(frozen=True)
class ExportResult:
    path: str
    version: int
    signatures: tuple
    labels: tuple | None


def rest_request_body(encoded_images, signature_name="serving_bytes"):
    """A TF Serving REST predict body (row "instances" format) sending encoded images as {"b64": ...}."""
    import base64
    import json

    instances = [{"b64": base64.b64encode(data).decode("ascii")} for data in encoded_images]
    return json.dumps({"signature_name": signature_name, "instances": instances})


def versions(base_dir):
    """The integer version folders TF Serving would see in `base_dir`, sorted."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(name) for name in os.listdir(base_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(base_dir, name)))


def read_labels(labels, classes=None):
    """Labels from a list or a one-label-per-line file; their number must equal `classes` when given.

    Each label is checked with `check_label`; a file may end with blank lines, but a blank line between
    labels is refused (skipping it would shift every later label).
    """
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        with open(labels, encoding="utf-8", newline="") as handle:
            lines = handle.read().split("\n")
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        while lines and not lines[-1].strip():
            lines.pop()
        for number, line in enumerate(lines, start=1):
            check_label(line, what=f"{os.fspath(labels)} line {number}")
        labels = lines
    elif isinstance(labels, (bytes, dict)) or not hasattr(labels, "__iter__"):
        raise ValueError(f"labels={labels!r} is not allowed: give a list of class names or the path of a "
                         "one-name-per-line file") from None
    labels = tuple(check_label(label) for label in labels)
    if classes is not None and len(labels) != classes:
        raise ValueError(f"labels has {len(labels)} entries; the model has {classes} classes") from None
    return labels


def _image_size(model):
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or None in shape[1:3] or shape[3] != 3:
        raise ValueError(
            f"export needs a model with a fixed RGB input size; model {model.name!r} has input shape "
            f"{shape}: build it with e.g. input_shape=(224, 224, 3)"
        )
    return shape[1], shape[2]


def ends_in_softmax(model):
    """True when the model's last layer already applies softmax (else its outputs are logits)."""
    layer = model.layers[-1]
    layer = getattr(layer, "layer", layer)  # tfmot's wrappers keep the wrapped layer in .layer
    activation = layer.get_config().get("activation")
    if isinstance(activation, dict):  # tfmot's QuantizeAwareActivation keeps the name in its config
        activation = activation.get("config", {}).get("activation")
    return activation == "softmax"


# The one rule both sides apply before decoding (the serving graph in tf ops, Predictor in Python):
# the bytes are non-empty and at most MAX_IMAGE_BYTES, the header is one of IMAGE_FORMATS, and the
# width and height it declares are both in [1, MAX_IMAGE_SIDE]. The header fields read per format:
#   JPEG  ff d8 ff ...   the first SOFn segment (baseline, progressive, lossless, arithmetic)
#   PNG   89 PNG ...     IHDR: width, height (big-endian uint32 at 16, 20)
#   GIF   GIF8...        logical screen: width, height (little-endian uint16 at 6, 8)
#   BMP   BM ...         width, |height| (little-endian int32 at 18, 22; height < 0 is top-down)
#   WebP  RIFF....WEBP   VP8 (14-bit sizes at 26, 28), VP8L (14-bit size - 1 after 0x2f at 20),
#                        VP8X (24-bit canvas size - 1 at 24, 27)
# Everything else tf.io.decode_image may try (JPEG XL, unknown bytes) is refused.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
_UNKNOWN, _MALFORMED = -1, 0  # header_size codes in place of a height


def header_size(data):
    """(height, width) declared by the header of JPEG/PNG/GIF/BMP/WebP `data`, read without decoding.

    (-1, -1) for any other format, a 0 for a header that is cut short or malformed. The Python side of
    the rule; `_header_size_tf` is the same in tf ops for the serving graph.
    """
    data = bytes(data)
    padded = data + bytes(32)

    def unsigned(start, length, big_endian=False):
        return int.from_bytes(padded[start:start + length], "big" if big_endian else "little")

    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        ok = len(data) >= 24 and data[12:16] == b"IHDR"
        return (unsigned(20, 4, True), unsigned(16, 4, True)) if ok else (_MALFORMED, _MALFORMED)
    if data[:4] == b"GIF8":
        return (unsigned(8, 2), unsigned(6, 2)) if len(data) >= 10 else (_MALFORMED, _MALFORMED)
    if data[:2] == b"BM":
        height, width = unsigned(22, 4), unsigned(18, 4)
        height = 2 ** 32 - height if height >= 2 ** 31 else height
        ok = len(data) >= 26 and width < 2 ** 31
        return (height, width) if ok else (_MALFORMED, _MALFORMED)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
            return unsigned(28, 2) & 0x3FFF, unsigned(26, 2) & 0x3FFF
        if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
            bits = unsigned(21, 4)
            return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
        if chunk == b"VP8X" and len(data) >= 30:
            return unsigned(27, 3) + 1, unsigned(24, 3) + 1
        return _MALFORMED, _MALFORMED
    return _UNKNOWN, _UNKNOWN


def _jpeg_size(data):
    """(height, width) of the first SOFn segment, walking the markers the way libjpeg does."""
    sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    position = 2
    while True:
        while position < len(data) and data[position] != 0xFF:  # libjpeg skips stray bytes too
            position += 1
        while position < len(data) and data[position] == 0xFF:  # fill bytes
            position += 1
        if position + 2 >= len(data):
            return _MALFORMED, _MALFORMED
        marker = data[position]
        position += 1
        if marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return _MALFORMED, _MALFORMED
        length = int.from_bytes(data[position:position + 2], "big")
        if marker in sof:
            if length < 8 or position + 7 > len(data):
                return _MALFORMED, _MALFORMED
            return (int.from_bytes(data[position + 3:position + 5], "big"),
                    int.from_bytes(data[position + 5:position + 7], "big"))
        if length < 2:
            return _MALFORMED, _MALFORMED
        position += length


def check_image_bytes(data, max_bytes=MAX_IMAGE_BYTES, max_side=MAX_IMAGE_SIDE):
    """Refuse `data` (ValueError saying why) unless the rule above lets it be decoded; (height, width)."""
    if not data:
        raise ValueError("empty image bytes")
    if len(data) > max_bytes:
        raise ValueError(f"image larger than {max_bytes} bytes ({len(data)} bytes)")
    height, width = header_size(data)
    if height == _UNKNOWN:
        raise ValueError(f"Unknown image file format: only {', '.join(IMAGE_FORMATS)} are accepted")
    if min(height, width) < 1:
        raise ValueError("malformed image header: no valid width and height")
    if max(height, width) > max_side:
        raise ValueError(f"image side larger than {max_side} pixels ({width}x{height}; "
                         "decompression-bomb guard)")
    return height, width


def _header_size_tf(data):
    """`header_size` in tf ops: int64 [height, width] (a JPEG's from libjpeg's header reader)."""
    import tensorflow as tf

    padded = tf.strings.join([data, tf.constant(bytes(32))])
    size = tf.strings.length(data, unit="BYTE")

    def unsigned(start, length, big_endian=False):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, start, length), tf.uint8), tf.int64)
        weights = 256 ** tf.range(length, dtype=tf.int64)
        return tf.reduce_sum(raw * (tf.reverse(weights, [0]) if big_endian else weights))

    def part(start, length):
        return tf.strings.substr(padded, start, length)

    def sized(ok, height, width):
        return tf.where(ok, tf.stack([height, width]), tf.constant([_MALFORMED, _MALFORMED], tf.int64))

    def png():
        return sized((size >= 24) & tf.equal(part(12, 4), b"IHDR"), unsigned(20, 4, True),
                     unsigned(16, 4, True))

    def gif():
        return sized(size >= 10, unsigned(8, 2), unsigned(6, 2))

    def bmp():
        height, width = unsigned(22, 4), unsigned(18, 4)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # top-down BMPs store -height
        return sized((size >= 26) & (width < 2 ** 31), height, width)

    def webp():
        chunk, bits = part(12, 4), unsigned(21, 4)
        return tf.case([
            (tf.equal(chunk, b"VP8 ") & (size >= 30) & tf.equal(part(23, 3), b"\x9d\x01\x2a"),
             lambda: tf.stack([unsigned(28, 2) % 16384, unsigned(26, 2) % 16384])),
            (tf.equal(chunk, b"VP8L") & (size >= 25) & tf.equal(part(20, 1), b"\x2f"),
             lambda: tf.stack([bits // 16384 % 16384 + 1, bits % 16384 + 1])),
            (tf.equal(chunk, b"VP8X") & (size >= 30),
             lambda: tf.stack([unsigned(27, 3) + 1, unsigned(24, 3) + 1])),
        ], default=lambda: tf.constant([_MALFORMED, _MALFORMED], tf.int64))

    return tf.case([
        (tf.equal(part(0, 3), b"\xff\xd8\xff"),
         lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
        (tf.equal(part(0, 8), b"\x89PNG\r\n\x1a\n"), png),
        (tf.equal(part(0, 4), b"GIF8"), gif),
        (tf.equal(part(0, 2), b"BM"), bmp),
        (tf.equal(part(0, 4), b"RIFF") & tf.equal(part(8, 4), b"WEBP"), webp),
    ], default=lambda: tf.constant([_UNKNOWN, _UNKNOWN], tf.int64))


def decode_image_bytes(data, height, width, max_bytes=MAX_IMAGE_BYTES, max_side=MAX_IMAGE_SIDE):
    """Encoded image bytes -> float32 (height, width, 3) in [0, 255]; bad input fails this request only.

    The header is checked by `check_image_bytes`' rule, in tf ops, before anything is decoded.
    """
    import tensorflow as tf

    size = tf.strings.length(data)
    checks = [
        tf.debugging.assert_greater(size, 0, message="empty image bytes"),
        tf.debugging.assert_less_equal(size, max_bytes, message=f"image larger than {max_bytes} bytes"),
    ]
    with tf.control_dependencies(checks):
        dims = _header_size_tf(data)
    rules = [  # checked one after the other, so the message names the first rule broken
        lambda: tf.debugging.assert_none_equal(dims[0], tf.constant(_UNKNOWN, tf.int64), message=(
            f"Unknown image file format: only {', '.join(IMAGE_FORMATS)} are accepted")),
        lambda: tf.debugging.assert_greater_equal(
            tf.reduce_min(dims), tf.constant(1, tf.int64),
            message="malformed image header: no valid width and height"),
        lambda: tf.debugging.assert_less_equal(
            tf.reduce_max(dims), tf.constant(max_side, tf.int64),
            message=f"image side larger than {max_side} pixels (decompression-bomb guard)"),
    ]
    checked = []
    for rule in rules:
        with tf.control_dependencies(checked):
            checked = [rule()]
    with tf.control_dependencies(checked):
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
    return tf.ensure_shape(image, (height, width, 3))


DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
MAX_DETECTIONS = 100


def num_classes(model):
    """Classes a classifier scores, or objects a detector finds (its class output less the background)."""
    if is_detector(model):
        return int(model.get_layer("class_logits").output.shape[-1]) - 1
    return int(model.outputs[0].shape[-1])


def _detector_predict(model, table, max_detections):
    """Detections with NMS in the graph, as the Object Detection API's serving outputs: detection_boxes
    (normalized ymin, xmin, ymax, xmax), detection_classes (0-based, float), detection_scores,
    num_detections, and detection_labels (the class names) when there are labels."""
    import tensorflow as tf

    from keras_mobilenets.nets.detection import decode_detections, detector_config, ssd_anchors

    config = detector_config(model)
    anchors = tf.constant(ssd_anchors(config))
    height, width = _image_size(model)

    def predict(images):
        count = tf.shape(images)[0]  # the empty-batch guard of the classifier's path (see there)
        images = tf.concat([images, tf.zeros((1, height, width, 3), images.dtype)], 0)[:tf.maximum(count, 1)]
        box_encodings, logits = model(images, training=False)
        found = decode_detections(box_encodings[:count], logits[:count], anchors, max_detections=max_detections,
                                  score_converter=config.score_converter, box_scales=config.box_scales)
        outputs = dict(found)
        outputs["num_detections"] = tf.cast(outputs["num_detections"], tf.float32)
        if table is not None:
            outputs["detection_labels"] = table.lookup(tf.cast(outputs["detection_classes"], tf.int64))
        return outputs

    return predict


def is_segmenter(model):
    """Whether `model` scores every pixel (LRASPP, DeepLabV3): a 4-D output as wide and high as its input."""
    from keras_mobilenets.train.segmentation_training import is_segmenter as per_pixel

    return per_pixel(model)


def _segmenter_predict(model):
    """"class_map" (int32 [B, H, W], at the input size) and "probabilities" ([B, H, W, classes])."""
    import tensorflow as tf

    height, width = _image_size(model)
    softmax = not ends_in_softmax(model)

    def predict(images):
        count = tf.shape(images)[0]  # the empty-batch guard of the classifier's path (see there)
        images = tf.concat([images, tf.zeros((1, height, width, 3), images.dtype)], 0)[:tf.maximum(count, 1)]
        scores = tf.cast(model(preprocess_input(images, model=model), training=False), tf.float32)[:count]
        scores = tf.nn.softmax(scores) if softmax else scores
        return {"class_map": tf.argmax(scores, axis=-1, output_type=tf.int32), "probabilities": scores}

    return predict


def _serving_functions(model, table, top_k):
    """The three signature functions, sharing one prediction path."""
    import tensorflow as tf

    height, width = _image_size(model)
    if is_detector(model):
        predict = _detector_predict(model, table, MAX_DETECTIONS)
        return _signatures(predict, height, width)
    if is_segmenter(model):
        return _signatures(_segmenter_predict(model), height, width)
    softmax = not ends_in_softmax(model)
    classes = int(model.outputs[0].shape[-1])
    k = min(top_k, classes)

    def predict(images):
        # TF's fused conv + BatchNorm kernels fail on an empty batch: run one blank image, keep none
        # (concat and slice, not tf.cond: the graph keeps its static shapes and still converts to TFLite)
        count = tf.shape(images)[0]
        images = tf.concat([images, tf.zeros((1, height, width, 3), images.dtype)], 0)[:tf.maximum(count, 1)]
        scores = tf.cast(model(preprocess_input(images, model=model), training=False), tf.float32)[:count]
        if softmax:
            scores = tf.nn.softmax(scores)
        top_scores, top_ids = tf.math.top_k(scores, k=k)
        outputs = {"probabilities": scores, "top_k_ids": top_ids, "top_k_scores": top_scores}
        if table is not None:
            outputs["top_k_labels"] = table.lookup(tf.cast(top_ids, tf.int64))
        return outputs

    return _signatures(predict, height, width)


def _signatures(predict, height, width):
    """{name: (function, input spec)} of the float, uint8 and image-bytes signatures around `predict`."""
    import tensorflow as tf

    def from_float(images):
        return predict(images)

    def from_uint8(images):
        return predict(tf.cast(images, tf.float32))

    def from_bytes(image_bytes):
        images = tf.map_fn(lambda data: decode_image_bytes(data, height, width), image_bytes,
                           fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32))
        return predict(images)

    specs = {
        "serving_default": (from_float, tf.TensorSpec((None, height, width, 3), tf.float32, "images")),
        "serving_uint8": (from_uint8, tf.TensorSpec((None, height, width, 3), tf.uint8, "images")),
        "serving_bytes": (from_bytes, tf.TensorSpec((None,), tf.string, "image_bytes")),
    }
    return specs


def _label_table(labels, folder):
    import tensorflow as tf

    if labels is None:
        return None
    path = os.path.join(folder, "labels.txt")
    write_atomic(path, "\n".join(labels) + "\n")
    initializer = tf.lookup.TextFileInitializer(
        path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE)
    return tf.lookup.StaticHashTable(initializer, default_value="")


def _write(model, path, labels, top_k):
    """Write the SavedModel: Keras 3 through keras.export.ExportArchive, tf_keras through tf.saved_model."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        table = _label_table(labels, scratch)
        specs = _serving_functions(model, table, top_k)
        if flavor_of(model).name == "keras":
            import keras

            archive = keras.export.ExportArchive()
            archive.track(model)
            if table is not None:
                archive.track(table)
            for name, (function, spec) in specs.items():
                archive.add_endpoint(name, function, input_signature=[spec])
            archive.write_out(path, verbose=False)
        else:
            module = tf.Module()
            module.model, module.table = model, table
            signatures = {name: tf.function(function, input_signature=[spec])
                          for name, (function, spec) in specs.items()}
            module.serving_functions = signatures
            tf.saved_model.save(module, path, signatures=signatures)


def _expected_outputs(model, path, top_k):
    """A sample batch and the in-memory model's outputs on it, for the check in a fresh process."""
    import tensorflow as tf

    height, width = _image_size(model)
    images = np.random.default_rng(0).uniform(0, 255, (2, height, width, 3)).round().astype("float32")
    specs = _serving_functions(model, None, top_k)
    outputs = specs["serving_default"][0](tf.constant(images))
    names = ("detection_boxes", "detection_scores") if is_detector(model) else \
        ("class_map", "probabilities") if is_segmenter(model) else ("probabilities",)
    np.savez(path, images=images, **{name: outputs[name].numpy() for name in names})


def verify(path, sample):
    """Load the SavedModel at `path` with tf.saved_model.load and compare all signatures with `sample`."""
    import tensorflow as tf

    data = np.load(sample)
    images = data["images"]
    expected = {name: data[name] for name in data.files if name != "images"}
    loaded = tf.saved_model.load(path)
    missing = [name for name in SIGNATURES if name not in loaded.signatures]
    if missing:
        raise AssertionError(f"signatures {missing} missing from {path}")
    encoded = tf.stack([tf.io.encode_png(tf.cast(image, tf.uint8)) for image in images])
    results = {
        "serving_default": loaded.signatures["serving_default"](images=tf.constant(images)),
        "serving_uint8": loaded.signatures["serving_uint8"](images=tf.cast(images, tf.uint8)),
        "serving_bytes": loaded.signatures["serving_bytes"](image_bytes=encoded),
    }
    for name, outputs in results.items():
        for key, want in expected.items():
            got = outputs[key].numpy()
            if got.shape != want.shape or not np.allclose(got, want, atol=1e-4):
                difference = np.abs(got - want).max() if got.shape == want.shape else f"shape {got.shape}"
                raise AssertionError(f"{name} {key} differs from the in-memory model by {difference} on the "
                                     "sample batch")


_VERIFY = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
           "from keras_mobilenets.deploy.serving import _main; sys.exit(_main(sys.argv[2:]))")


def _child_sys_path():
    """This process' import path for a child run with `python -I`: the folder our package was imported
    from first, then sys.path without the working directory (nothing there may stand in for a module)."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cwd = os.path.realpath(os.getcwd())
    paths = [package_root]
    for entry in sys.path:
        entry = os.path.abspath(entry or os.curdir)
        if os.path.realpath(entry) != cwd and entry not in paths:
            paths.append(entry)
    return paths


def _verify_in_fresh_process(path, sample):
    """Run `verify` in a new interpreter, isolated (-I: no working directory, PYTHONPATH or user site
    on its path) with this process' package and dependencies put on its path explicitly."""
    import json

    result = subprocess.run([sys.executable, "-I", "-c", _VERIFY, json.dumps(_child_sys_path()), path, sample],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the export at {path} failed its check in a fresh process:\n"
                           f"{result.stderr[-3000:]}")


def saved_model_cli_command():
    """The argv prefix that runs TensorFlow's saved_model_cli: the script next to this interpreter,
    else the one on PATH, else `python -m tensorflow.python.tools.saved_model_cli`."""
    beside = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("saved_model_cli")
    if found:
        return [found]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def export_saved_model(model, base_dir, version=None, labels=None, overwrite=False, top_k=5):
    """Export `model` to `base_dir/<version>/` for TF Serving; returns an `ExportResult`.

    `version` defaults to the next free integer. Signatures: "serving_default" (float32 [0, 255] images
    of the model's size), "serving_uint8" (uint8 images) and "serving_bytes" (encoded JPEG/PNG/GIF/BMP/
    WebP bytes, header-checked by `check_image_bytes`' rule, decoded and resized in-graph). Outputs:
    "probabilities", "top_k_ids", "top_k_scores", and "top_k_labels" when `labels` (a list or a
    one-per-line file, stored as an asset) are given. A detector (`SSDLite`) gets the same three signatures
    returning "detection_boxes" (normalized ymin, xmin, ymax, xmax), "detection_classes" (0-based),
    "detection_scores", "num_detections" (NMS in the graph, up to MAX_DETECTIONS) and "detection_labels".
    A segmentation model (`LRASPP`, `DeepLabV3`) gets them returning "class_map" (int32 class ids
    [batch, height, width] at the input size) and "probabilities" ([batch, height, width, classes]).
    """
    classes = num_classes(model)
    _image_size(model)
    labels = read_labels(labels, classes)
    recover(base_dir)
    if version is None:
        version = (versions(base_dir) or [0])[-1] + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version={version!r} is not allowed: version must be a positive integer")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k={top_k!r} is not allowed: top_k must be a positive integer")
    final = os.path.join(base_dir, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace version {version}")
    os.makedirs(base_dir, exist_ok=True)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = os.path.join(base_dir, f"{_TMP_PREFIX}{version}-{token}")
    try:
        _write(model, staging, labels, top_k)
        sample = f"{staging}.npz"
        try:
            _expected_outputs(model, sample, top_k)
            _verify_in_fresh_process(staging, sample)
        finally:
            if os.path.exists(sample):
                os.remove(sample)
        _place(staging, final, overwrite, token)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(final, version, SIGNATURES, labels)


def _place(staging, final, overwrite, token):
    """Rename the checked export into place; an old version is only removed once the new one is there.

    A kill between the two renames leaves the old version aside; `recover` puts it back.
    """
    if os.path.exists(final):
        if not overwrite:
            raise FileExistsError(f"{final} appeared during the export; not overwriting it")
        retired = os.path.join(os.path.dirname(final), f"{_TMP_PREFIX}old-{os.path.basename(final)}-{token}")
        os.rename(final, retired)
        os.rename(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, final)


# .tmp-export-[old-]<version>-<pid>-<hex>[.npz]; names from before the pid was added have none
_LEFTOVER = re.compile(r"^\.tmp-export-(old-)?(\d+)-(?:(\d+)-)?[0-9a-f]+(\.npz)?$")


def _alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(base_dir):
    """Undo what a killed export left in `base_dir`: a version moved aside by an overwrite that never
    got its replacement is put back; other leftovers of dead processes are deleted. Returns what was
    done, one line each (exports still running in a live process are left alone)."""
    if not os.path.isdir(base_dir):
        return []
    done = []
    names = sorted(os.listdir(base_dir), key=lambda name: not name.startswith(f"{_TMP_PREFIX}old-"))
    for name in names:  # asides first: a version is restored before its staging copy is deleted
        match = _LEFTOVER.match(name)
        if not match or _alive(int(match.group(3)) if match.group(3) else None):
            continue
        path = os.path.join(base_dir, name)
        final = os.path.join(base_dir, match.group(2))
        if match.group(1) and not match.group(4) and not os.path.exists(final):
            os.rename(path, final)
            done.append(f"restored version {match.group(2)} that an interrupted overwrite had moved aside")
        else:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
            done.append(f"removed {name} left by an interrupted export")
    return done


def _main(argv):
    """`verify` from the command line: exit status 1 with the reason when the export differs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        verify(argv[0], argv[1])
    except AssertionError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
