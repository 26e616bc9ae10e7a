"""Predictor and the predict/export CLI: one engine for .keras, SavedModel and .tflite files."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import randomize_batchnorm, resize

import keras_mobilenets as km
from keras_mobilenets.app.cli import main
from keras_mobilenets.deploy.serving import decode_image_bytes

SIZE = 96
LABELS = [f"label_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("predictor")
    model = randomize_batchnorm(km.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3), classes=10,
                                               alpha=0.35), seed=2)
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    result = km.export_saved_model(model, str(folder / "serving"))  # TFLite has no label-table op
    converter = tf.lite.TFLiteConverter.from_saved_model(result.path, signature_keys=["serving_default"])
    (folder / "model.tflite").write_bytes(converter.convert())
    files = []
    for i, photo in enumerate(resize(photos, 200)):
        path = folder / f"photo_{i}.jpg"
        path.write_bytes(tf.io.encode_jpeg(photo.astype("uint8")).numpy())
        files.append(str(path))
    decoded = np.stack([decode_image_bytes(tf.constant(open(f, "rb").read()), SIZE, SIZE).numpy()
                        for f in files])
    expected = model(km.preprocess_input(decoded), training=False).numpy()
    return folder, result, files, expected


@pytest.mark.parametrize("kind", ["model.keras", "serving", "model.tflite"])
def test_every_format_predicts_the_keras_model_on_photo_files(artifacts, kind):
    folder, _, files, expected = artifacts
    predictor = km.Predictor(folder / kind, num_threads=2, batch_size=2)
    probabilities = predictor.predict(files)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert (probabilities.argmax(1) == expected.argmax(1)).all()


def test_files_bytes_and_arrays_give_the_same_answer(artifacts):
    folder, _, files, _ = artifacts
    predictor = km.Predictor(folder / "serving", labels=str(folder / "labels.txt"))
    from_files = predictor.predict(files[:2])
    from_bytes = predictor.predict([open(f, "rb").read() for f in files[:2]])
    from_arrays = predictor.predict(predictor.images(files[:2]))
    np.testing.assert_array_equal(from_files, from_bytes)
    np.testing.assert_array_equal(from_files, from_arrays)
    best = predictor.top_k(files[:1], k=3)[0]
    assert best[0][0] == LABELS[int(from_files[0].argmax())]


def test_undecodable_file_is_named(artifacts, tmp_path):
    folder, _, _, _ = artifacts
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(ValueError, match="broken.jpg: cannot be decoded"):
        km.Predictor(folder / "model.keras").predict([str(broken)])


def test_unknown_model_file_is_rejected(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ValueError, match="model=.*weights.bin.*tflite"):
        km.Predictor(tmp_path / "weights.bin")


def test_cli_predict_prints_top_k(artifacts, capsys):
    folder, _, files, expected = artifacts
    assert main(["predict", "--model", str(folder / "model.tflite"), "--labels",
                 str(folder / "labels.txt"), "--top-k", "2", *files[:2]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(files[0])
    assert f"{LABELS[int(expected[0].argmax())]} " in lines[0]


def test_cli_export_prints_version_signatures_and_rest_body(artifacts, tmp_path, capsys):
    folder, _, files, expected = artifacts
    out = tmp_path / "saved_models" / "digits"
    assert main(["export", str(folder / "model.keras"), "--out", str(out), "--labels",
                 str(folder / "labels.txt")]) == 0
    printed = capsys.readouterr().out
    assert f"exported version 1 to {out / '1'}" in printed
    assert "signature_def['serving_bytes']" in printed
    assert '"instances": [{"b64": ' in printed
    assert main(["export", str(folder / "model.keras"), "--out", str(out), "--version", "1"]) == 2
    assert "overwrite" in capsys.readouterr().err
    best = km.Predictor(out).top_k(files[:1], k=1)[0][0]  # labels come from the export's asset
    assert best[0] == LABELS[int(expected[0].argmax())]
