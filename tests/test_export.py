"""SavedModel export for TF Serving: signatures checked in a new process, REST b64 bodies, atomicity."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import randomize_batchnorm, resize

import keras_mobilenets as km
from keras_mobilenets.deploy import serving as export_module
from keras_mobilenets.deploy.serving import decode_image_bytes, export_saved_model, rest_request_body

SIZE = 96
LABELS = [f"class_{i}" for i in range(10)]


def _model(flavor="keras"):
    model = km.MobileNetV3Small(weights=None, input_shape=(SIZE, SIZE, 3), classes=10, flavor=flavor)
    return randomize_batchnorm(model, seed=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    base = tmp_path_factory.mktemp("serving") / "mobilenet"
    result = export_saved_model(model, str(base), labels=LABELS)
    return model, base, result


def jpegs(photos):
    return [tf.io.encode_jpeg(p.astype("uint8"), quality=90).numpy() for p in photos]


LOAD_AND_RUN = """
import sys, numpy as np, tensorflow as tf
data = np.load(sys.argv[2], allow_pickle=False)
sigs = tf.saved_model.load(sys.argv[1]).signatures
out = dict(
    float=sigs["serving_default"](images=tf.constant(data["images"]))["probabilities"].numpy(),
    uint8=sigs["serving_uint8"](images=tf.constant(data["images"].astype("uint8")))["probabilities"].numpy(),
    bytes=sigs["serving_bytes"](image_bytes=tf.constant(list(data["jpegs"])))["probabilities"].numpy(),
    labels=sigs["serving_bytes"](image_bytes=tf.constant(list(data["jpegs"])))["top_k_labels"].numpy().astype(str),
)
np.savez(sys.argv[3], **out)
"""


def test_signatures_in_a_new_process_match_the_keras_model(exported, photos, tmp_path):
    model, base, result = exported
    assert result.path == os.path.join(str(base), "1") and result.version == 1
    images = resize(photos, SIZE).round()
    encoded = jpegs(resize(photos, 160))
    np.savez(tmp_path / "in.npz", images=images, jpegs=np.array(encoded, dtype=object).astype(bytes))
    subprocess.run([sys.executable, "-c", LOAD_AND_RUN, result.path, tmp_path / "in.npz",
                    tmp_path / "out.npz"], check=True)
    out = np.load(tmp_path / "out.npz")
    expected = model(km.preprocess_input(images), training=False).numpy()
    np.testing.assert_allclose(out["float"], expected, atol=1e-5)
    np.testing.assert_allclose(out["uint8"], expected, atol=1e-5)
    decoded = np.stack([decode_image_bytes(tf.constant(e), SIZE, SIZE).numpy() for e in encoded])
    expected_bytes = model(km.preprocess_input(decoded), training=False).numpy()
    np.testing.assert_allclose(out["bytes"], expected_bytes, atol=1e-5)
    best = np.argsort(-expected_bytes, axis=1)[:, :5]
    assert out["labels"].tolist() == [[LABELS[i] for i in row] for row in best]


def test_rest_b64_body_decoded_like_tf_serving(exported, photos):
    import base64

    model, _, result = exported
    encoded = jpegs(resize(photos, 128))
    body = json.loads(rest_request_body(encoded))
    assert body["signature_name"] == "serving_bytes"
    # TF Serving's row format: each instance's {"b64": ...} becomes one DT_STRING element of the batch.
    batch = tf.constant([base64.b64decode(instance["b64"]) for instance in body["instances"]])
    signature = tf.saved_model.load(result.path).signatures[body["signature_name"]]
    got = signature(image_bytes=batch)["probabilities"].numpy()
    decoded = np.stack([decode_image_bytes(tf.constant(e), SIZE, SIZE).numpy() for e in encoded])
    np.testing.assert_allclose(got, model(km.preprocess_input(decoded), training=False), atol=1e-5)


def test_saved_model_cli_show_and_run(exported, tmp_path):
    _, _, result = exported
    np.save(tmp_path / "images.npy", np.full((1, SIZE, SIZE, 3), 128.0, np.float32))
    show = subprocess.run(["saved_model_cli", "show", "--dir", result.path, "--all"],
                          capture_output=True, text=True, check=True).stdout
    for name in ("serving_default", "serving_uint8", "serving_bytes", "top_k_labels", "image_bytes"):
        assert name in show
    run = subprocess.run(
        ["saved_model_cli", "run", "--dir", result.path, "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}"],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "probabilities" in run.stdout and "top_k_labels" in run.stdout


def test_labels_are_stored_as_an_asset(exported):
    _, _, result = exported
    with open(os.path.join(result.path, "assets", "labels.txt")) as handle:
        assert handle.read().split() == LABELS


@pytest.mark.parametrize("bad,message", [
    (b"this is not an image", "Unknown image file format"),
    (b"", "empty image bytes"),
    ("truncated", "Invalid JPEG data|corrupt|truncated|Premature"),
    ("huge", "decompression-bomb guard"),
])
def test_bad_requests_fail_alone(exported, photos, bad, message):
    _, _, result = exported
    signature = tf.saved_model.load(result.path).signatures["serving_bytes"]
    good = jpegs(resize(photos, 128))[0]
    if bad == "truncated":
        bad = good[: len(good) // 2]
    elif bad == "huge":
        bad = tf.io.encode_png(tf.zeros((10000, 10000, 3), tf.uint8)).numpy()
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(image_bytes=tf.constant([bad]))
    assert signature(image_bytes=tf.constant([good]))["probabilities"].shape == (1, 10)


def test_tf_keras_models_export_too(tmp_path, photos):
    legacy = _model("tf_keras")
    result = export_saved_model(legacy, str(tmp_path / "legacy"))
    images = resize(photos, SIZE).round()
    got = tf.saved_model.load(result.path).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(got["probabilities"].numpy(),
                               legacy(km.preprocess_input(images), training=False).numpy(), atol=1e-5)
    assert "top_k_labels" not in got


def test_qat_models_export_without_a_second_softmax(tmp_path, photos):
    import tensorflow_model_optimization as tfmot

    legacy = randomize_batchnorm(km.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3), classes=4,
                                                alpha=0.35, flavor="tf_keras"), seed=3)
    head = legacy.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(3).normal(0, 3, kernel.shape), bias])  # confident outputs
    qat = tfmot.quantization.keras.quantize_model(legacy)
    result = export_saved_model(qat, str(tmp_path / "qat"))
    images = resize(photos, SIZE).round()
    got = tf.saved_model.load(result.path).signatures["serving_default"](images=tf.constant(images))
    expected = qat(km.preprocess_input(images), training=False).numpy()
    np.testing.assert_allclose(got["probabilities"].numpy(), expected, atol=1e-5)
    # The check above can tell one softmax from two: a second one would move these outputs visibly.
    assert np.abs(tf.nn.softmax(expected).numpy() - expected).max() > 0.05


def _snapshot(base):
    return {name: sorted(os.listdir(os.path.join(base, name))) for name in sorted(os.listdir(base))}


def test_versions_overwrite_and_atomic_failure(tmp_path, monkeypatch):
    base = str(tmp_path / "model")
    model = _model()
    assert export_saved_model(model, base).version == 1  # checked in a fresh process, as users get it

    def written(path, sample):  # the later exports: versioning is what is tested, not the check again
        assert tf.saved_model.contains_saved_model(path)

    monkeypatch.setattr(export_module, "_verify_in_fresh_process", written)
    assert export_saved_model(model, base, version=7).version == 7
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, base, version=7)
    before = _snapshot(base)
    with open(os.path.join(base, "7", "saved_model.pb"), "rb") as handle:
        original = handle.read()

    def broken_check(path, sample):
        assert os.path.isdir(path)  # the export was fully written when the failure strikes
        raise RuntimeError("injected failure during the check")

    monkeypatch.setattr(export_module, "_verify_in_fresh_process", broken_check)
    for kwargs in ({}, {"version": 7, "overwrite": True}):
        with pytest.raises(RuntimeError, match="injected"):
            export_saved_model(model, base, **kwargs)
        assert _snapshot(base) == before  # no partial folder, no temporary left, v7 untouched
    with open(os.path.join(base, "7", "saved_model.pb"), "rb") as handle:
        assert handle.read() == original
    monkeypatch.setattr(export_module, "_verify_in_fresh_process", written)
    assert export_saved_model(model, base).version == 8
    assert export_saved_model(model, base, version=1, overwrite=True).version == 1
    assert sorted(os.listdir(base)) == ["1", "7", "8"]


def test_export_rejects_bad_arguments(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="labels has 3 entries; the model has 10 classes"):
        export_saved_model(model, str(tmp_path / "m"), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="version=0 is not allowed"):
        export_saved_model(model, str(tmp_path / "m"), version=0)
    open_size = km.MobileNetV2(weights=None, include_top=True, input_shape=None, classes=3)
    assert not os.path.exists(tmp_path / "m")
    assert open_size.inputs[0].shape[1] == 224
