"""Export and serving against kills, hostile images, hostile working directories and bad labels."""

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_mobilenets as km
from keras_mobilenets.deploy import serving as ex
from keras_mobilenets.deploy.tflite import export_tflite

SIZE = 32
LABELS = ["cat", " dog ", "bird"]  # outer spaces round-trip through labels.txt, so they are allowed
HOSTILE = """import os
open(os.path.join(os.path.dirname(__file__), "..", "HOSTILE_RAN"), "w").close()
raise SystemExit("the working directory's keras_mobilenets ran")
"""


def _model():
    return km.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3), classes=3, alpha=0.35)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export made from a working directory that holds a hostile `keras_mobilenets/` package."""
    cwd = tmp_path_factory.mktemp("hostile_cwd")
    (cwd / "keras_mobilenets").mkdir()
    (cwd / "keras_mobilenets" / "__init__.py").write_text(HOSTILE)
    (cwd / "keras_mobilenets" / "export.py").write_text(HOSTILE)
    model = _model()
    base = tmp_path_factory.mktemp("serving") / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = ex.export_saved_model(model, str(base), labels=LABELS)
    return model, base, result, cwd


def _encode(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus():
    """Headers of every accepted format (PIL-written), cut-short and patched ones, and non-images."""
    pixels = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    files = {
        "jpeg": _encode(pixels, "JPEG"), "jpeg-progressive": _encode(pixels, "JPEG", progressive=True),
        "png": _encode(pixels, "PNG"), "png-gray": _encode(pixels[..., 0], "PNG"),
        "gif": _encode(pixels, "GIF"), "bmp": _encode(pixels, "BMP"),
        "webp-vp8": _encode(pixels, "WEBP", quality=80), "webp-vp8l": _encode(pixels, "WEBP", lossless=True),
        "webp-vp8x": _encode(pixels, "WEBP", lossless=True, exif=b"Exif\0\0test"),
        "jpeg-wide": _encode(np.zeros((20, 3000, 3), np.uint8), "JPEG"),
        "webp-wide": _encode(np.zeros((8, 9000), np.uint8), "WEBP", lossless=True),
        "webp-16383": _encode(np.zeros((16, 16383), np.uint8), "WEBP", lossless=True),
        "text": b"not an image at all", "jpeg-xl": b"\xff\x0a" + bytes(40),
        "riff-wave": b"RIFF\0\0\0\0WAVEfmt " + bytes(20),
    }
    for name in ("jpeg", "jpeg-progressive", "png", "gif", "bmp", "webp-vp8", "webp-vp8l", "webp-vp8x"):
        files[name + "-cut"] = files[name][:14]
    top_down = bytearray(files["bmp"])
    top_down[22:26] = struct.pack("<i", -37)
    files["bmp-top-down"] = bytes(top_down)
    huge = bytearray(files["jpeg"])
    at = huge.index(b"\xff\xc0")
    huge[at + 5:at + 9] = struct.pack(">HH", 60000, 53)
    files["jpeg-60000-high"] = bytes(huge)
    return files


def _tf_dims(data):
    try:
        return tuple(ex._header_size_tf(tf.constant(data)).numpy().tolist())
    except tf.errors.InvalidArgumentError:  # libjpeg's header reader refuses a malformed JPEG
        return (0, 0)


def _refused_in_tf(data):
    try:
        ex.decode_image_bytes(tf.constant(data), 8, 8)
    except tf.errors.InvalidArgumentError as error:
        return error.message
    return None


def _refused_in_python(data):
    try:
        ex.check_image_bytes(data)
    except ValueError as error:
        return str(error)
    return None


def test_header_rule_agrees_in_tf_and_python(corpus):
    expected_ok = {"jpeg", "jpeg-progressive", "png", "png-gray", "gif", "bmp", "bmp-top-down", "webp-vp8",
                   "webp-vp8l", "webp-vp8x", "jpeg-wide"}
    for name, data in corpus.items():
        dims = ex.header_size(data)
        assert dims == _tf_dims(data), name
        if name in expected_ok:
            assert dims == ((20, 3000) if name == "jpeg-wide" else (37, 53)), name
        python, graph = _refused_in_python(data), _refused_in_tf(data)
        if name in expected_ok:
            assert python is None and graph is None, (name, python, graph)
        elif name.endswith("-cut") and name.startswith("gif"):
            assert python is None  # a GIF's size is in its first 10 bytes; the decoder refuses the rest
        else:
            assert python is not None and graph is not None, name
            if not name.startswith("jpeg"):  # a malformed JPEG's message comes from libjpeg in the graph
                assert python.split(":")[0].split(" (")[0][:25] in graph, (name, python, graph)


def test_big_webp_is_refused_before_decoding(exported, corpus):
    _, _, result, _ = exported
    big = corpus["webp-16383"]
    assert len(big) < 20_000 and ex.header_size(big) == (16, 16383)
    signature = tf.saved_model.load(result.path).signatures["serving_bytes"]
    started = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than 8192 pixels"):
        signature(image_bytes=tf.constant([big]))
    assert time.perf_counter() - started < 5  # decoding it took 4 GB and far longer
    predictor = km.Predictor(result.path)
    with pytest.raises(ValueError, match="image bytes: cannot be decoded.*larger than 8192 pixels"):
        predictor.predict([big])
    with pytest.raises(ValueError, match="Unknown image file format: only JPEG, PNG, GIF, BMP, WebP"):
        predictor.predict([corpus["jpeg-xl"]])
    ok = signature(image_bytes=tf.constant([corpus["webp-vp8"], corpus["webp-vp8x"], corpus["bmp"]]))
    np.testing.assert_allclose(ok["probabilities"].numpy(),
                               predictor.predict([corpus["webp-vp8"], corpus["webp-vp8x"], corpus["bmp"]]),
                               atol=1e-5)


def test_empty_batch_gives_an_empty_result(exported):
    _, _, result, _ = exported
    signatures = tf.saved_model.load(result.path).signatures
    got = signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))
    assert got["probabilities"].shape == (0, 3) and got["top_k_labels"].shape == (0, 3)
    pixels = signatures["serving_uint8"](images=tf.zeros((0, SIZE, SIZE, 3), tf.uint8))
    assert pixels["probabilities"].shape == (0, 3)


def test_verifier_ignores_a_package_in_the_working_directory(exported):
    _, base, result, cwd = exported
    assert not (cwd / "HOSTILE_RAN").exists()
    assert ex.versions(str(base)) == [1] and result.path == os.path.join(str(base), "1")


def test_saved_model_cli_is_found_without_path(exported, monkeypatch):
    _, _, result, _ = exported
    monkeypatch.setenv("PATH", "")
    command = ex.saved_model_cli_command()
    assert os.path.dirname(command[0]) == os.path.dirname(sys.executable) or command[0] == sys.executable
    show = subprocess.run([*command, "show", "--dir", result.path, "--tag_set", "serve", "--signature_def",
                           "serving_bytes"], capture_output=True, text=True, env={"PATH": ""}, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "image_bytes" in show.stdout and "top_k_labels" in show.stdout


def test_labels_round_trip_through_the_served_model(exported):
    model, _, result, _ = exported
    images = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    got = tf.saved_model.load(result.path).signatures["serving_default"](images=tf.constant(images))
    best = np.argsort(-got["probabilities"].numpy(), axis=1)
    assert got["top_k_labels"].numpy().astype(str).tolist() == [[LABELS[i] for i in row] for row in best]
    assert km.Predictor(result.path).labels == tuple(LABELS)


BAD_LABELS = [
    (["x\ny", "dog", "bird"], r"label 'x\\ny' holds a line break"),
    (["cat", "a\rb", "bird"], r"label 'a\\rb' holds a line break"),
    (["cat", "", "bird"], "label '' is empty"),
    (["cat", "  ", "bird"], "label '  ' is only whitespace"),
    (["a", "b", "c", "d", "e"], "labels has 5 entries; the model has 3 classes"),
]


def test_labels_that_cannot_round_trip_are_refused(exported, tmp_path):
    model, _, result, _ = exported
    predictor = km.Predictor(result.path)
    for labels, message in BAD_LABELS:
        with pytest.raises(ValueError, match=message):
            ex.export_saved_model(model, str(tmp_path / "m"), labels=labels)
        assert not (tmp_path / "m").exists()
        with pytest.raises(ValueError, match=message):
            ex.read_labels(labels, predictor._classes())  # what Predictor(path, labels=...) runs
    with pytest.raises(ValueError, match=BAD_LABELS[-1][1]):
        km.Predictor(result.path, labels=BAD_LABELS[-1][0])


def test_a_labels_file_with_a_blank_line_between_labels_is_refused(exported, tmp_path):
    _, _, result, _ = exported
    (tmp_path / "labels.txt").write_text("cat\n\ndog\nbird\n")
    with pytest.raises(ValueError, match="labels.txt line 2"):
        km.Predictor(result.path, labels=str(tmp_path / "labels.txt"))
    (tmp_path / "labels.txt").write_text("cat\r\ndog\r\nbird\r\n\n")  # CRLF and trailing blank lines are fine
    assert km.Predictor(result.path, labels=str(tmp_path / "labels.txt")).labels == ("cat", "dog", "bird")


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _tree(folder):
    return {os.path.relpath(os.path.join(root, f), folder): open(os.path.join(root, f), "rb").read()
            for root, _, files in os.walk(folder) for f in files}


def test_rerun_repairs_what_a_kill_left_at_each_point(exported, tmp_path):
    """The on-disk state a kill leaves at each point of an overwrite; the next export repairs all."""
    model, base, _, _ = exported
    work, pid = tmp_path / "model", _dead_pid()
    for version in ("1", "2"):
        shutil.copytree(base / "1", work / version)
    (work / "1" / "marker").write_text("the old version 1")
    original = _tree(work / "1")
    # killed between the renames of an overwrite of v1: v1 aside, the new copy still staged
    os.rename(work / "1", work / f".tmp-export-old-1-{pid}-0badc0de")
    shutil.copytree(base / "1", work / f".tmp-export-1-{pid}-0badc0de")
    # killed after the second rename of an overwrite of v2: the old v2 not yet deleted
    shutil.copytree(base / "1", work / f".tmp-export-old-2-{pid}-1badc0de")
    # killed while writing or checking v3: a half-written staging folder and its sample batch
    (work / f".tmp-export-3-{pid}-2badc0de" / "variables").mkdir(parents=True)
    (work / f".tmp-export-3-{pid}-2badc0de.npz").write_bytes(b"PK\x03")
    assert ex.versions(str(work)) == [2]  # a kill between the renames left no version 1
    result = ex.export_saved_model(model, str(work))
    assert result.version == 3
    assert sorted(os.listdir(work)) == ["1", "2", "3"]
    assert _tree(work / "1") == original


KILL_BETWEEN_RENAMES = """
import os, signal, sys
import keras_mobilenets as km
from keras_mobilenets.deploy import serving as export
real = os.rename
def rename(src, dst):
    real(src, dst)
    if ".tmp-export-old-" in os.fspath(dst):  # the old version is aside: die before the new one is in
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
model = km.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=3, alpha=0.35)
export.export_saved_model(model, sys.argv[1], version=1, overwrite=True)
"""


def test_sigkill_between_the_renames_keeps_the_old_version(exported, tmp_path):
    _, base, _, _ = exported
    work = tmp_path / "model"
    shutil.copytree(base / "1", work / "1")
    original = _tree(work / "1")
    run = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(work)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert ex.versions(str(work)) == []  # the kill landed in the window
    done = ex.recover(str(work))
    assert any("restored version 1" in line for line in done)
    assert sorted(os.listdir(work)) == ["1"] and _tree(work / "1") == original


def test_tflite_files_get_the_umask(exported, tmp_path):
    model = exported[0]
    images = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    old = os.umask(0o027)
    try:
        export_tflite(model, tmp_path / "model.tflite", sample=images)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "model.tflite").st_mode & 0o777 == 0o640  # mkstemp gave 0o600
