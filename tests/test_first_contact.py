"""What a user meets first: .keras files of every variant and a finished V3 run used from a fresh process,
and the probabilities of an integer-output TFLite file."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import randomize_batchnorm, resize
from PIL import Image

import keras_mobilenets as km
from keras_mobilenets.app.cli import main

VARIANTS = [("v1", False), ("v2", False), ("v3-large", False), ("v3-small", False), ("v3-large", True),
            ("v3-small", True)]
SIZE = 32
RUN_ARGS = ["--arch", "v3-small", "--alpha", "0.5", "--image-size", str(SIZE), "--epochs", "1",
            "--batch-size", "16", "--no-flip", "--min-crop", "0.6", "--crop-fraction", "1.0",
            "--validation-split", "0.2", "--test-split", "0.2"]

# One fresh interpreter for every check: it imports the package and nothing else of ours first.
FRESH = """
import os
import sys
import numpy as np
import keras
import keras_mobilenets
from keras_mobilenets.app.cli import main

folder, run, served, image, data = sys.argv[1:6]
outputs = {}
for name in sorted(os.listdir(folder)):
    model = keras.saving.load_model(os.path.join(folder, name), safe_mode=True)
    outputs[name] = model(np.load(os.path.join(data, "pixels.npy")), training=False).numpy()
np.savez(os.path.join(data, "fresh.npz"), **outputs)
best = os.path.join(run, "best.keras")
assert main(["predict", "--model", best, "--top-k", "2", image]) == 0
assert main(["export", best, "--out", served]) == 0
assert main(["evaluate", best]) == 0
assert main(["train", "--data", data + "/folder", *sys.argv[6:], "--out", run]) == 0
"""


@pytest.fixture(scope="module")
def v3_run(tmp_path_factory, digit_arrays):
    """A finished one-epoch V3-Small run (HardSwish, HardSigmoid) on 90 digit scans of 3 classes."""
    root = tmp_path_factory.mktemp("first_contact")
    images, labels = digit_arrays
    for digit in range(3):
        os.makedirs(root / "folder" / str(digit))
        for i, index in enumerate(np.flatnonzero(labels == digit)[:30]):
            Image.fromarray(images[index]).save(root / "folder" / str(digit) / f"{i}.png")
    assert main(["train", "--data", str(root / "folder"), *RUN_ARGS, "--out", str(root / "run")]) == 0
    return root


def test_every_variant_and_a_v3_run_work_from_a_fresh_process(v3_run, photos, capsys):
    models = v3_run / "models"
    os.makedirs(models)
    pixels = resize(photos, SIZE)
    np.save(v3_run / "pixels.npy", pixels)
    expected = {}
    for arch, minimal in VARIANTS:
        model = randomize_batchnorm(km.create_model(arch, minimalistic=minimal, input_shape=(SIZE, SIZE, 3),
                                                    classes=5, include_preprocessing=True))
        name = f"{arch}{'-minimalistic' if minimal else ''}.keras"
        model.save(models / name)
        expected[name] = model(pixels, training=False).numpy()
    image = str(v3_run / "folder" / "2" / "0.png")
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(models), str(v3_run / "run"),
         str(v3_run / "served"), image, str(v3_run), *RUN_ARGS],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = np.load(v3_run / "fresh.npz")
    assert sorted(fresh.files) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(fresh[name], values, rtol=1e-5, atol=1e-6, err_msg=name)
    out = done.stdout
    assert any(line.startswith(f"{image}: ") for line in out.splitlines()) and "accuracy: " in out
    assert f"exported version 1 to {v3_run / 'served' / '1'}" in out
    assert "already holds this finished run" in out


def test_predictor_dequantizes_integer_tflite_outputs(v3_run, tmp_path):
    from keras_mobilenets.deploy.tflite import export_tflite

    keras_file = v3_run / "run" / "best.keras"
    files = sorted(str(p) for p in (v3_run / "folder").rglob("*.png"))[::6]
    keras_predictor = km.Predictor(keras_file)
    representative = keras_predictor.images(files)
    import keras

    model = keras.saving.load_model(keras_file)
    paths = {}
    for io_type in ("uint8", "float32"):  # one calibration, so the same int8 graph with other ends
        paths[io_type] = tmp_path / f"{io_type}.tflite"
        export_tflite(model, paths[io_type], mode="int8", representative=representative,
                      input_type=io_type, output_type=io_type, min_top1_agreement=0.0)
    probabilities = km.Predictor(paths["uint8"]).predict(files)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
    # The float-ended file dequantizes inside LiteRT: the Predictor's own dequantization must match it
    # to a few steps of 1/256, where raw uint8 codes would be off by a factor of about 256.
    np.testing.assert_allclose(probabilities, km.Predictor(paths["float32"]).predict(files), atol=3 / 256)


def test_reproduce_names_the_kernel_parameter_column_and_shows_all_parameters(monkeypatch, capsys):
    """The papers' "M params" count kernels only (5.4M for V3-Large where profile says 5.5M in all)."""
    from keras_mobilenets.analysis import papers

    row, = [r for r in papers.PUBLISHED if r.arch == "v3-large" and r.alpha == 1.0 and not r.minimalistic]
    monkeypatch.setattr(papers, "PUBLISHED", (row,))
    monkeypatch.setattr(papers, "PUBLISHED_PEAK_BYTES", ())
    v4 = [r for r in papers.PUBLISHED_V4 if r.arch == "v4-conv-small"]
    monkeypatch.setattr(papers, "PUBLISHED_V4", tuple(v4))
    assert main(["reproduce"]) == 0
    header, line, _, _, v4_line, v4_summary, _ = capsys.readouterr().out.splitlines()
    # MobileNetV4-Conv-S: Model Garden's count plus the Dense layer exactly, the paper's 0.2G and 3.8M
    assert v4_line.split() == ["v4-conv-small", "224", "0.186", "0.000", "0.2", "3.77", "3.8", "3,799,112",
                               "3,799,112"]
    assert "1 of 1 rows round to the paper's" in v4_summary
    assert header.split()[:9] == ["model", "MMACs", "paper", "kernel", "M", "params", "paper", "all", "M"]
    report = km.profile(km.MobileNetV3Large(weights=None, input_shape=(224, 224, 3)))
    kernel, paper, total = line.split()[5:8]
    assert (kernel, paper) == (f"{report.kernel_params / 1e6:.2f}", f"{row.params}")
    assert total == f"{report.params / 1e6:.2f}" and total != kernel
