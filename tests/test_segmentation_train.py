"""Training LR-ASPP in a run folder (`keras-mobilenets train --task segmentation`), one small run reused
for every step after it: metrics.json's mIoU against masks scored here by hand, the pictures, `evaluate`,
`predict` (mask and overlay PNGs), the TF Serving export's three signatures, `Predictor.segment` from
.keras, SavedModel and TFLite, `convert --mode int8` with its mIoU parity report, float32 TFLite masks,
`quantize` (QAT with the segmentation loss, int8 mIoU against float), and the run resumed after SIGKILL."""

import json
import os

import numpy as np
import pytest

from keras_mobilenets.data.datasets import shapes
from run_processes import history, kill_inside_epoch_two

TINY = ["--task", "segmentation", "--arch", "v2", "--alpha", "0.35", "--image-size", "64", "--batch-size", "8"]


def _killed_after_epoch_one(args, run):
    """SIGKILL `keras-mobilenets *args` inside epoch 2; the history rows it left (epoch 1's alone)."""
    before = kill_inside_epoch_two(args, run)
    assert len(before) == 1 and "val_miou" in before[0]
    return before


def _iou_by_hand(truth, predicted, classes):
    ious = []
    for c in range(classes):
        union = np.logical_or(truth == c, predicted == c).sum()
        if union:
            ious.append(np.logical_and(truth == c, predicted == c).sum() / union)
    return float(np.mean(ious))


def test_segmentation_run_evaluate_predict_export_and_int8(tmp_path, capsys, photos):
    import tensorflow as tf
    from PIL import Image

    from keras_mobilenets.app.cli import main
    from keras_mobilenets.app.runs import TASK_RUNS, RunConfig
    from keras_mobilenets.deploy.predictor import Predictor
    from keras_mobilenets.deploy.serving import export_saved_model

    folder = shapes(str(tmp_path / "shapes"), count=30, image_size=64, seed=2)  # images/ + masks/ beside
    run = str(tmp_path / "run")
    args = ["train", "--data", folder, *TINY, "--epochs", "2", "--out", run]
    before = _killed_after_epoch_one(args, run)  # SIGKILL inside epoch 2, then the same command resumes
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "Epoch 1/2" not in out  # epoch 1 is not trained again
    assert "test: mIoU" in out and "segmentation.png, class_iou.png" in out
    after = history(run)
    assert [int(r["epoch"]) for r in after] == [0, 1] and after[:1] == before
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["task"] == "segmentation" and metrics["monitor"] == "val_miou" and metrics["epochs"] == 2
    assert metrics["resumed"] is True
    assert metrics["best"] == pytest.approx(max(float(r["val_miou"]) for r in after))
    assert metrics["class_names"] == ["background", "circle", "rectangle", "triangle"]  # from instances.json
    test = metrics["test"]
    assert set(test["per_class_iou"]) == set(metrics["class_names"]) and 0 <= test["pixel_accuracy"] <= 1
    # the kept epoch is the best by validation mIoU (Keras' MeanIoU in fit = our confusion matrix after it)
    assert metrics["validation"]["miou"] == pytest.approx(metrics["best"], abs=1e-4)
    for name in ("best.keras", "segmentation.png", "class_iou.png", "training_curves.png", "history.csv",
                 "split.json", "labels.txt"):
        assert os.path.getsize(os.path.join(run, name)) > 0, name

    # mIoU of the saved model on the test files' own masks, computed here by hand, is metrics.json's
    with open(os.path.join(run, "split.json")) as handle:
        pairs = json.load(handle)["test"]
    images = np.stack([np.asarray(Image.open(image).convert("RGB"), np.float32) for image, _ in pairs])
    truth = np.stack([np.asarray(Image.open(mask)) for _, mask in pairs])
    best = os.path.join(run, "best.keras")
    keras_masks = Predictor(best).segment(images)
    assert keras_masks.shape == truth.shape and keras_masks.dtype == np.int32
    assert test["miou"] == pytest.approx(_iou_by_hand(truth, keras_masks, 4), abs=1e-6)
    assert test["pixel_accuracy"] == pytest.approx(float((truth == keras_masks).mean()), abs=1e-6)

    assert main(["evaluate", best]) == 0 and "test: mIoU" in capsys.readouterr().out
    with open(os.path.join(run, "evaluation_test.json")) as handle:
        assert json.load(handle)["miou"] == pytest.approx(test["miou"], abs=1e-6)

    # predict: a palette mask PNG at the image's size holding the predicted ids, and an overlay
    drawn = str(tmp_path / "drawn")
    assert main(["predict", "--model", best, "--draw", drawn, pairs[0][0]]) == 0
    stem = os.path.join(drawn, os.path.basename(pairs[0][0])[:-4])
    assert "mask: " in capsys.readouterr().out
    with Image.open(stem + "_mask.png") as written:
        assert written.mode == "P" and written.size == (64, 64)
        np.testing.assert_array_equal(np.asarray(written), keras_masks[0])
    assert os.path.getsize(stem + "_overlay.png") > 0

    # TF Serving: three signatures with the class map (int32, input size) and probabilities, verified
    import keras

    exported = export_saved_model(keras.saving.load_model(best), str(tmp_path / "serving"),
                                  labels=os.path.join(run, "labels.txt"))
    loaded = tf.saved_model.load(exported.path)
    outputs = loaded.signatures["serving_uint8"](images=tf.cast(images[:2], tf.uint8))
    assert outputs["class_map"].dtype == tf.int32 and outputs["class_map"].shape == (2, 64, 64)
    assert outputs["probabilities"].shape == (2, 64, 64, 4)
    encoded = tf.stack([tf.io.encode_png(tf.cast(image, tf.uint8)) for image in images[:2]])
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)["class_map"].numpy()
    np.testing.assert_array_equal(from_bytes, keras_masks[:2])
    served = Predictor(str(tmp_path / "serving"))
    assert served.segmenter and list(served.labels) == metrics["class_names"]
    np.testing.assert_array_equal(served.segment(images), keras_masks)

    # int8 TFLite through `convert`: the run's held-out pairs, pixel agreement and mIoU vs Keras
    tflite = str(tmp_path / "seg_int8.tflite")
    assert main(["convert", best, "--mode", "int8", "--out", tflite, "--min-agreement", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "pixel agreement with Keras" in out and "TFLite vs Keras masks mIoU" in out
    lite = Predictor(tflite)
    assert lite.segmenter
    masks, probabilities = lite.segment(images, probabilities=True)
    assert (masks == keras_masks).mean() > 0.8
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="not a segmentation model"):
        _classifier_predictor(tmp_path).segment(images)

    # float32 TFLite (the Python API `convert --mode float32` calls): the Keras model's masks on the test
    # scenes and on real photos
    from keras_mobilenets.deploy.tflite import convert, run_tflite
    from keras_mobilenets.train.segmentation_training import predict_masks

    trained = keras.saving.load_model(best)
    float_file = convert(trained, "float32")
    assert (run_tflite(float_file, images)[0].argmax(-1) == keras_masks).mean() >= 0.99
    scenes = tf.image.resize(photos, (64, 64)).numpy()
    assert (run_tflite(float_file, scenes)[0].argmax(-1) == predict_masks(trained, scenes)).mean() >= 0.99

    _quantize(tmp_path, capsys, run, images, truth, keras_masks, test["miou"])

    # one table of tasks; a multi-worker run is refused for each task that is not classification
    assert set(TASK_RUNS) == {"detection", "segmentation"}
    # the plain `--task segmentation` command: 350 training images at batch 16 -> 20 epochs, 160 px
    assert TASK_RUNS["segmentation"].auto_epochs(350, 16) == 20
    assert TASK_RUNS["segmentation"].auto_image_size(160) == 160
    assert RunConfig(task="segmentation").describe  # a valid config
    with pytest.raises(ValueError, match="multi-worker"):
        RunConfig(task="segmentation", strategy="multi-worker")


def _quantize(tmp_path, capsys, run, images, truth, keras_masks, float_miou):
    """`quantize --epochs 1` of the run's model: QAT steps with the segmentation loss (history.csv monitors
    val_miou), an int8 file (every op int8) whose mIoU on the test masks, computed here from its own
    masks, is metrics.json's, and the float model's mIoU beside it."""
    from keras_mobilenets.app.cli import main
    from keras_mobilenets.deploy.predictor import Predictor
    from keras_mobilenets.deploy.tflite import run_tflite

    best, out = os.path.join(run, "best.keras"), str(tmp_path / "qat")
    assert main(["quantize", best, "--out", out, "--epochs", "1", "--min-agreement", "0.8"]) == 0
    assert "test mIoU on 6 images: float Keras" in capsys.readouterr().out
    with open(os.path.join(out, "metrics.json")) as handle:
        quantized = json.load(handle)
    assert quantized["task"] == "segmentation" and quantized["split"] == "test" and quantized["images"] == 6
    assert quantized["qat_epochs"] == 1 and quantized["monitor"] == "val_miou"
    assert quantized["tflite"]["non_int8_ops"] == [] and quantized["tflite"]["mode"] == "qat-int8"
    assert quantized["float_keras_miou"] == pytest.approx(float_miou, abs=1e-6)
    with open(os.path.join(out, "history.csv")) as handle:
        assert "val_miou" in handle.readline()
    int8_file = os.path.join(out, "model_int8.tflite")
    lite_masks = run_tflite(int8_file, images)[0].argmax(-1)  # LiteRT's reference kernels, as the report's
    assert quantized["int8_tflite_miou"] == pytest.approx(_iou_by_hand(truth, lite_masks, 4), abs=1e-6)
    parity = quantized["parity"]
    assert parity["images"] == 6 and parity["pixel_agreement"] >= 0.8
    assert parity["tflite_miou"] == quantized["int8_tflite_miou"]
    assert (lite_masks == keras_masks).mean() > 0.8  # against the float model
    # Predictor runs XNNPACK, whose int8 rounding moves a few pixels on a barely trained model's near-ties
    assert (Predictor(int8_file).segment(images) == lite_masks).mean() > 0.95
    # (`convert --mode qat-int8 --qat-epochs N` runs the same segmentation_runs.model_data and fine_tune_qat;
    # not run here: another ~45 s of CI)


def _classifier_predictor(tmp_path):
    from keras_mobilenets.deploy.predictor import Predictor
    from keras_mobilenets.train.recipe import create_classifier

    path = str(tmp_path / "classifier.keras")
    create_classifier("v2", 3, alpha=0.35, image_size=32).save(path)
    return Predictor(path)


def test_deeplabv3_head_for_segmentation_runs(tmp_path, capsys):
    """`train --task segmentation --head deeplabv3`: the run's config builds Mobile DeepLabv3 (no ASPP) in
    place of LR-ASPP, config.json round-trips it (older files without "head" read as LR-ASPP), and any
    other task refuses the flag before training."""
    from keras_mobilenets.app.cli import main
    from keras_mobilenets.app.runs import RunConfig, build_classifier

    config = RunConfig(task="segmentation", data="shapes", head="deeplabv3", alpha=0.35, image_size=64,
                       bn_momentum=None)
    model = build_classifier(config, 4)
    names = {layer.name for layer in model.layers}
    assert "aspp0" in names and "aspp1" not in names and not any(n.startswith("lraspp") for n in names)
    assert model.output.shape == (None, 64, 64, 4)
    assert config.describe().startswith("Mobile DeepLabv3 on MobileNetV2 0.35, 64 px")
    assert RunConfig.from_json(config.to_json()) == config
    older = {k: v for k, v in config.to_json().items() if k != "head"}
    assert RunConfig.from_json(older).describe().startswith("LR-ASPP on MobileNetV2")
    lraspp = build_classifier(RunConfig.from_json(older), 4)
    assert "lraspp_conv" in {layer.name for layer in lraspp.layers}
    with pytest.raises(ValueError, match="head='unet' is not allowed"):
        RunConfig(task="segmentation", head="unet")
    assert main(["train", "--head", "deeplabv3", "--out", str(tmp_path / "run")]) == 2
    assert "head='deeplabv3' is not allowed with task='classification'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")
