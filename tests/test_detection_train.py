"""Training an SSDLite detector in a run folder (`keras-mobilenets train --task detection`) as separate
processes: the folder's files, metrics.json's COCO keys, resuming after SIGKILL, a finished run reported,
`evaluate` and `predict` on the run; and a detector's TF Serving export and `Predictor` in three formats."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_mobilenets.data.datasets import shapes
from run_processes import cli_env, history, kill_inside_epoch_two

TINY = ["--task", "detection", "--arch", "v2", "--alpha", "0.35", "--image-size", "64", "--batch-size", "8",
        "--min-crop", "0.3"]


@pytest.fixture(scope="module")
def boxes_dir(tmp_path_factory):
    """40 scenes of the bundled shapes set at 64 px (a COCO folder, as a user brings one)."""
    return shapes(str(tmp_path_factory.mktemp("det") / "shapes"), count=40, image_size=64, seed=1)


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", *args], capture_output=True,
                          text=True, env=cli_env(), timeout=timeout)


def test_detection_run_resumes_after_sigkill_and_reports(tmp_path, boxes_dir, capsys):
    from keras_mobilenets.app.cli import main

    run = str(tmp_path / "run")
    args = ["train", "--data", boxes_dir, *TINY, "--epochs", "2", "--out", run]
    before = kill_inside_epoch_two(args, run)
    assert len(before) == 1
    assert "val_map_50" in before[0]  # the mAP callback wrote into the logs the CSV row is made of

    resumed = _cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout
    after = history(run)
    assert [int(r["epoch"]) for r in after] == [0, 1] and after[:1] == before
    for name in ("best.keras", "metrics.json", "history.csv", "training_curves.png", "detections.png",
                 "precision_recall.png", "labels.txt", "split.json", "config.json", "state.json"):
        assert os.path.getsize(os.path.join(run, name)) > 0, name
    assert os.listdir(os.path.join(run, "logs"))  # TensorBoard
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["task"] == "detection" and metrics["monitor"] == "val_map_50" and metrics["resumed"] is True
    assert metrics["counts"] == {"train": 28, "validation": 4, "test": 8} and metrics["epochs"] == 2
    best = max(float(r["val_map_50"]) for r in after)
    assert metrics["best"] == pytest.approx(best)
    # the kept weights are the best epoch's: the validation split scores what the history recorded
    assert metrics["validation"]["map_50"] == pytest.approx(best, abs=1e-6)
    for key in ("map", "map_50", "map_75", "per_class_ap", "per_class_ap_50", "num_images", "num_boxes"):
        assert key in metrics["test"], key
    assert set(metrics["test"]["per_class_ap_50"]) == {"circle", "rectangle", "triangle"}
    assert metrics["test"]["num_images"] == 8 and "test: mAP@.5" in resumed.stdout

    # evaluate (in this process, as the CLI) on best.keras and the stored test split agrees with metrics.json
    assert main(["evaluate", os.path.join(run, "best.keras")]) == 0
    assert "test: mAP@.5" in capsys.readouterr().out
    with open(os.path.join(run, "evaluation_test.json")) as handle:
        evaluation = json.load(handle)
    assert evaluation["map_50"] == pytest.approx(metrics["test"]["map_50"], abs=1e-6)
    assert evaluation["map"] == pytest.approx(metrics["test"]["map"], abs=1e-6)

    # int8 PTQ (calibrated on the run's training images), int8 to the post-processing op, boxes matching the
    # Keras model's (the parity report); then its COCO mAP on the same test split with LiteRT
    int8 = os.path.join(run, "model_int8.tflite")
    # an integer output type is refused by export_detector_tflite's one check, before data or QAT
    for command in (["convert", "--mode", "int8", "--out", int8], ["quantize", "--out", str(tmp_path / "q")]):
        assert main([command[0], os.path.join(run, "best.keras"), *command[1:], "--output-type", "int8"]) == 2
        assert "output_type='int8' is not allowed for a detector: output_type must be 'float32'" in \
            capsys.readouterr().err
    assert not os.path.exists(int8) and not os.path.exists(tmp_path / "q")
    assert main(["convert", os.path.join(run, "best.keras"), "--mode", "int8", "--out", int8,
                 "--min-agreement", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert "int8:" in printed and "computing in float: TFLite_Detection_PostProcess (" in printed
    from keras_mobilenets.deploy.tflite import plain_interpreter

    interpreter = plain_interpreter(int8)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    convs = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) > 40 and all(tensors[i]["dtype"] == np.int8 for op in convs for i in op["inputs"][:2])
    assert ops[-1]["op_name"] == "TFLite_Detection_PostProcess"
    assert [op["op_name"] for op in ops if tensors[op["outputs"][0]]["dtype"] == np.float32] == [
        "DEQUANTIZE", "DEQUANTIZE", "TFLite_Detection_PostProcess"]
    assert main(["evaluate", int8]) == 0 and "test: mAP@.5" in capsys.readouterr().out
    with open(os.path.join(run, "evaluation_test_tflite.json")) as handle:
        lite = json.load(handle)
    assert lite["num_images"] == 8 and abs(lite["map_50"] - evaluation["map_50"]) < 0.2

    # predict: boxes printed, a picture drawn
    with open(os.path.join(run, "split.json")) as handle:
        image = json.load(handle)["test"][0]
    drawn = str(tmp_path / "drawn")
    assert main(["predict", "--model", os.path.join(run, "best.keras"), "--labels", os.path.join(run, "labels.txt"),
                 "--min-score", "0", "--draw", drawn, image]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(image + ": ") and "box (x1, y1, x2, y2)" in lines[1]
    assert os.path.getsize(os.path.join(drawn, os.path.basename(image)[:-4] + "_boxes.png")) > 0

    # a finished run is reported, not retrained; other settings in the folder are refused
    assert main(args) == 0 and "already holds this finished run" in capsys.readouterr().out
    assert history(run) == after
    assert main(["train", "--data", boxes_dir, *TINY, "--epochs", "4", "--out", run]) == 2
    error = capsys.readouterr().err
    assert "epochs" in error and "--overwrite" in error


def test_detector_saved_model_and_predictor_in_three_formats(tmp_path):
    import keras

    from keras_mobilenets.deploy.detection_tflite import convert_detector
    from keras_mobilenets.deploy.predictor import Predictor
    from keras_mobilenets.deploy.serving import export_saved_model
    from keras_mobilenets.train.detection_training import create_detector, detect

    keras.utils.set_random_seed(0)
    model = create_detector("v2", 3, alpha=0.35, image_size=64)
    labels = ["circle", "rectangle", "triangle"]
    result = export_saved_model(model, str(tmp_path / "serving"), labels=labels)  # verified in a fresh process
    assert result.version == 1 and result.path.endswith(os.path.join("serving", "1"))

    import tensorflow as tf

    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    loaded = tf.saved_model.load(result.path)
    outputs = loaded.signatures["serving_uint8"](images=tf.cast(images, tf.uint8))
    assert set(outputs) == {"detection_boxes", "detection_classes", "detection_scores", "num_detections",
                            "detection_labels"}
    assert outputs["detection_boxes"].shape == (2, 100, 4) and outputs["num_detections"].shape == (2,)
    boxes = outputs["detection_boxes"].numpy()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    names = outputs["detection_labels"].numpy()[0, :3]
    assert all(n.decode() in labels for n in names)
    # the in-graph NMS is the one `detect` runs in Python
    mine = detect(model, tf.constant(np.round(images)), max_detections=100, score_threshold=1e-8)
    np.testing.assert_allclose(outputs["detection_scores"].numpy()[0, :5], mine[0]["scores"][:5], atol=1e-5)

    keras_path = str(tmp_path / "detector.keras")
    model.save(keras_path)
    tflite_path = str(tmp_path / "detector.tflite")
    with open(tflite_path, "wb") as handle:
        handle.write(convert_detector(model, max_detections=10))
    found = {}
    for name, path in (("keras", keras_path), ("saved_model", str(tmp_path / "serving")), ("tflite", tflite_path)):
        predictor = Predictor(path, labels=labels if name != "saved_model" else None)
        assert predictor.detector
        found[name] = predictor.detect(images, min_score=0.0)
        assert len(found[name]) == 2 and found[name][0], name
        top = found[name][0][0]
        assert top["label"] in labels and 0 <= top["score"] <= 1 and len(top["box"]) == 4, name
    assert found["keras"][0][0]["score"] == pytest.approx(found["saved_model"][0][0]["score"], abs=1e-5)
    # TFLite's post-processing op scores the same best box as the in-graph NMS
    assert found["tflite"][0][0]["score"] == pytest.approx(found["keras"][0][0]["score"], abs=1e-3)
    with pytest.raises(ValueError, match="classifier"):
        from keras_mobilenets.train.recipe import create_classifier

        classifier_path = str(tmp_path / "classifier.keras")
        create_classifier("v2", 3, alpha=0.35, image_size=32).save(classifier_path)
        Predictor(classifier_path).detect(images)


def test_detection_run_settings_and_bad_input(tmp_path):
    from keras_mobilenets.app import detection_runs
    from keras_mobilenets.app.runs import RunConfig, scratch_learning_rate
    from keras_mobilenets.train.recipe import CLASSIFICATION, rank

    # the plain `--data shapes` command: 350 training images at batch 16 -> 40 epochs of 22 steps, 160 px
    assert detection_runs.auto_epochs(350, 16) == 40 and detection_runs.auto_image_size(160) == 160
    # from scratch a detector's peak learning rate is 1e-2 (BENCHMARKS.md), the other tasks' 5e-3
    assert scratch_learning_rate("detection") == 1e-2 and scratch_learning_rate("segmentation") == 5e-3
    assert scratch_learning_rate("classification") == 5e-3
    # a saved model outside a run folder: the data to pass instead, per task
    from keras_mobilenets.app import segmentation_runs
    from keras_mobilenets.app.runs import model_data

    for reader, allowed in ((detection_runs.model_data, "COCO or VOC folder"),
                            (segmentation_runs.model_data, "segmentation folder"), (model_data, "digits")):
        with pytest.raises(ValueError, match=f"is not in a run folder .*{allowed}"):
            reader(str(tmp_path / "best.keras"), None, (64, 64))
    assert detection_runs.auto_image_size(40) == 160 and detection_runs.auto_image_size(640) == 320
    assert RunConfig(task="detection").describe  # a valid config
    with pytest.raises(ValueError, match="task='keypoints' is not allowed"):
        RunConfig(task="keypoints")
    with pytest.raises(ValueError, match="class_loss='softmax' is not allowed"):
        RunConfig(task="detection", class_loss="softmax")
    with pytest.raises(ValueError, match="multi-worker"):
        RunConfig(task="detection", strategy="multi-worker")
    # "best" ranks by the monitored value, then the lower validation loss (classification unchanged)
    assert rank({"val_map_50": 0.5, "val_loss": 2.0}, "val_map_50") > rank({"val_map_50": 0.5, "val_loss": 3.0},
                                                                           "val_map_50")
    assert CLASSIFICATION.monitor(True) == "val_accuracy" and CLASSIFICATION.monitor(False) == "accuracy"
