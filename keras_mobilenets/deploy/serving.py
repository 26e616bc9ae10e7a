"""SavedModel export for TF Serving: integer version folders, pixel and image-bytes signatures.

Each export is written to a hidden temporary folder inside `base_dir`, reloaded and checked in a fresh
Python process, and only then renamed to `base_dir/<version>/`: a failure leaves no version folder behind
and never touches the existing ones.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass

import numpy as np

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
    """Labels from a list or a one-label-per-line file; their number must equal `classes` when given."""
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        with open(labels, encoding="utf-8") as handle:
            labels = [line.rstrip("\n") for line in handle if line.strip()]
    labels = tuple(str(label) for label in labels)
    if classes is not None and len(labels) != classes:
        raise ValueError(f"labels has {len(labels)} entries; the model has {classes} classes")
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


def _header_size(data):
    """(height, width) read from a JPEG/PNG/GIF/BMP header before decoding; (0, 0) for other formats."""
    import tensorflow as tf

    def unsigned(start, length, big_endian):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
        weights = 256 ** tf.range(length, dtype=tf.int64)
        return tf.reduce_sum(raw * (tf.reverse(weights, [0]) if big_endian else weights))

    def png():
        return tf.stack([unsigned(20, 4, True), unsigned(16, 4, True)])

    def gif():
        return tf.stack([unsigned(8, 2, False), unsigned(6, 2, False)])

    def bmp():
        height = unsigned(22, 4, False)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # top-down BMPs store -height
        return tf.stack([height, unsigned(18, 4, False)])

    magic = tf.strings.substr(data, 0, 4)
    return tf.case([
        (tf.io.is_jpeg(data), lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
        (tf.equal(magic, b"\x89PNG"), png),
        (tf.equal(magic, b"GIF8"), gif),
        (tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp),
    ], default=lambda: tf.zeros([2], tf.int64))


def decode_image_bytes(data, height, width, max_bytes=MAX_IMAGE_BYTES, max_side=MAX_IMAGE_SIDE):
    """Encoded image bytes -> float32 (height, width, 3) in [0, 255]; bad input fails this request only."""
    import tensorflow as tf

    size = tf.strings.length(data)
    checks = [
        tf.debugging.assert_greater(size, 0, message="empty image bytes"),
        tf.debugging.assert_less_equal(size, max_bytes, message=f"image larger than {max_bytes} bytes"),
    ]
    with tf.control_dependencies(checks):
        dims = _header_size(data)
    with tf.control_dependencies([tf.debugging.assert_less_equal(
            tf.reduce_max(dims), tf.constant(max_side, tf.int64),
            message=f"image side larger than {max_side} pixels (decompression-bomb guard)")]):
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
    return tf.ensure_shape(image, (height, width, 3))


def _serving_functions(model, table, top_k):
    """The three signature functions, sharing one prediction path."""
    import tensorflow as tf

    height, width = _image_size(model)
    softmax = not ends_in_softmax(model)
    classes = int(model.outputs[0].shape[-1])
    k = min(top_k, classes)

    def predict(images):
        scores = tf.cast(model(preprocess_input(images, model=model), training=False), tf.float32)
        if softmax:
            scores = tf.nn.softmax(scores)
        top_scores, top_ids = tf.math.top_k(scores, k=k)
        outputs = {"probabilities": scores, "top_k_ids": top_ids, "top_k_scores": top_scores}
        if table is not None:
            outputs["top_k_labels"] = table.lookup(tf.cast(top_ids, tf.int64))
        return outputs

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
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(labels) + "\n")
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
    expected = specs["serving_default"][0](tf.constant(images))["probabilities"].numpy()
    np.savez(path, images=images, probabilities=expected)


def verify(path, sample):
    """Load the SavedModel at `path` with tf.saved_model.load and compare all signatures with `sample`."""
    import tensorflow as tf

    data = np.load(sample)
    images, expected = data["images"], data["probabilities"]
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
        got = outputs["probabilities"].numpy()
        if not np.allclose(got, expected, atol=1e-5):
            raise AssertionError(f"{name} differs from the in-memory model by "
                                 f"{np.abs(got - expected).max():.3g} on the sample batch")


def _verify_in_fresh_process(path, sample):
    result = subprocess.run([sys.executable, "-m", "keras_mobilenets.deploy.serving", path, sample],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the export at {path} failed its check in a fresh process:\n"
                           f"{result.stderr[-3000:]}")


def export_saved_model(model, base_dir, version=None, labels=None, overwrite=False, top_k=5):
    """Export `model` to `base_dir/<version>/` for TF Serving; returns an `ExportResult`.

    `version` defaults to the next free integer. Signatures: "serving_default" (float32 [0, 255] images
    of the model's size), "serving_uint8" (uint8 images) and "serving_bytes" (encoded JPEG/PNG/GIF/BMP
    bytes, decoded and resized in-graph). Outputs: "probabilities", "top_k_ids", "top_k_scores", and
    "top_k_labels" when `labels` (a list or a one-per-line file, stored as an asset) are given.
    """
    classes = int(model.outputs[0].shape[-1])
    _image_size(model)
    labels = read_labels(labels, classes)
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
    token = uuid.uuid4().hex[:8]
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
    """Rename the checked export into place; an old version is only removed once the new one is there."""
    if os.path.exists(final):
        if not overwrite:
            raise FileExistsError(f"{final} appeared during the export; not overwriting it")
        retired = os.path.join(os.path.dirname(final), f"{_TMP_PREFIX}old-{os.path.basename(final)}-{token}")
        os.rename(final, retired)
        os.rename(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, final)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        verify(sys.argv[1], sys.argv[2])
    except AssertionError as error:
        print(error, file=sys.stderr)
        sys.exit(1)
