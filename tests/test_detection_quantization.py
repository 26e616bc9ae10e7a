"""QAT int8 TFLite detectors (issue 15, deployment): tfmot on the tf_keras flavor, int8 from the input through
backbone and head to TFLite_Detection_PostProcess, compared with the QAT Keras model by LiteRT. (PTQ int8 of a
trained detector: `convert --mode int8` in test_detection_train.py.)"""

import numpy as np
import pytest

import keras_mobilenets as km
from keras_mobilenets.data.datasets import shapes
from keras_mobilenets.deploy.detection_tflite import export_detector_tflite, postprocess_options
from keras_mobilenets.deploy.tflite import plain_interpreter

POSTPROCESS = "TFLite_Detection_PostProcess"


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """24 scenes of the bundled shapes set at 96 px: (folder, images [0, 255])."""
    from keras_mobilenets.data.detection import read_boxes
    from PIL import Image

    folder = shapes(str(tmp_path_factory.mktemp("detq") / "shapes"), count=24, image_size=96, seed=2)
    images = [np.asarray(Image.open(r.path).convert("RGB"), np.float32) for r in read_boxes(folder).records]
    return folder, np.stack(images)


def _spread_predictors(model, seed=0):
    """Predictor convs far from their near-zero init, so scores and boxes differ from anchor to anchor."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("predictor_") and layer.name.endswith("_conv"):
            layer.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in layer.get_weights()])


def _tiny_detector(seed=0):
    """SSDLite on a small user table (five depthwise-separable rows, one extra layer: three maps) at 96 px,
    three classes, predictors spread so that scores and boxes differ from anchor to anchor."""
    from dataclasses import replace

    import keras

    from keras_mobilenets.nets.detection import SSDLiteExtra
    from keras_mobilenets.nets.spec import Architecture, ConvBN, ConvClassifier, DepthwiseSeparable

    tiny = Architecture(name="tiny", rows=(ConvBN(16, stride=2, name="stem"),) + tuple(
        DepthwiseSeparable(c, 2) for c in (16, 24, 32, 48)), classifier=ConvClassifier(), width="int",
        first_block_index=1)
    head = replace(km.nets.detection.DETECTORS[("ssdlite", "paper")], extra=(SSDLiteExtra(64),))
    keras.utils.set_random_seed(seed)
    model = km.SSDLite(tiny, alpha=1.0, num_classes=3, input_shape=(96, 96, 3), detector=head)
    _spread_predictors(model, seed)
    return model


def _int8_to_postprocess(content):
    """The ops of a file in order; asserts every conv computes in int8 and only the post-processing op
    (after DEQUANTIZE) makes floats."""
    interpreter = plain_interpreter(content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    convs = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(tensors[i]["dtype"] == np.int8 for op in convs for i in op["inputs"][:2])
    floats = [op["op_name"] for op in ops if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
              and any(tensors[i]["dtype"] == np.float32 for i in op["outputs"] if i in tensors)]
    assert floats == [POSTPROCESS]
    assert ops[-1]["op_name"] == POSTPROCESS
    return ops


def test_qat_detector_trains_a_few_steps_and_converts_int8_to_the_postprocess_op(boxes, tmp_path):
    """tfmot on the tf_keras flavor of an SSDLite (a small user table: five depthwise-separable rows and one
    extra layer, three maps, so the wrap stays short): every layer of backbone, extra layers and head
    wrapped, calibrated, one QAT epoch on shapes (recipe.fit), converted to qat-int8 ending in the
    post-processing op; the file's boxes match the QAT Keras model's."""
    from keras_mobilenets import optimize
    from keras_mobilenets.data.detection import BoxAugmentation, from_detection_folder
    from keras_mobilenets.train.recipe import read_history

    folder, images = boxes
    model = _tiny_detector()
    data = from_detection_folder(folder, 96, batch_size=8, validation_split=0.2, test_split=0.0,
                                 augmentation=BoxAugmentation(crop_area=(0.5, 1.0)))
    before = [np.asarray(w).copy() for w in model.get_weights()]
    qat = optimize.fine_tune_qat_detector(model, data, epochs=1, calibration_batches=1, verbose=0,
                                         out_dir=str(tmp_path / "qat"))
    wrapped = {type(layer).__name__ for layer in qat.layers}
    assert wrapped == {"InputLayer", "QuantizeLayer", "QuantizeWrapperV2"}  # no layer left unwrapped
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the float model is kept
    changed = [w for w in qat.trainable_variables if "predictor_0_class_conv/kernel" in w.name]
    assert changed, "the QAT model keeps the head's weights under their names"
    # the QAT epoch went through recipe.fit: a history row with the SSD losses and the validation mAP
    rows = read_history(str(tmp_path / "qat" / "history.csv"))
    assert len(rows) == 1 and {"loss", "val_map_50"} <= set(rows[0]) and np.isfinite(rows[0]["loss"])
    path = tmp_path / "detector_qat.tflite"
    report = export_detector_tflite(qat, path, mode="qat-int8", sample=images[:8])
    _int8_to_postprocess(path.read_bytes())
    assert postprocess_options(str(path))["use_regular_nms"] == 0 and report.nms == "fast"  # the default
    assert report.compared >= 20 and report.matched >= 0.9 and report.max_score_diff < 0.02


def test_regular_nms_file_matches_the_keras_per_class_nms(boxes, tmp_path, capsys):
    """`convert --regular-nms` sets the op's use_regular_nms; the file's boxes, classes and scores are then
    the Keras model's per-class NMS (`decode_detections`). (The default, fast NMS: the QAT test's file.)"""
    from keras_mobilenets.app.cli import main
    from keras_mobilenets.deploy.detection_tflite import run_detector_tflite
    from keras_mobilenets.nets.detection import decode_detections, detector_config, ssd_anchors

    folder, images = boxes
    model = _tiny_detector(seed=1)
    model.save(tmp_path / "tiny.keras")
    path = tmp_path / "regular.tflite"
    assert main(["convert", str(tmp_path / "tiny.keras"), "--data", folder, "--out", str(path), "--regular-nms",
                 "--min-agreement", "0.9"]) == 0
    assert "float32: regular NMS," in capsys.readouterr().out
    options = postprocess_options(str(path))
    assert options["use_regular_nms"] and options["max_detections"] == 100 and options["num_classes"] == 3

    lite = run_detector_tflite(str(path), images[:4], num_threads=2)  # (one thread: see safe_threads)
    config = detector_config(model)
    box_encodings, logits = model(images[:4], training=False)
    ours = decode_detections(box_encodings, logits, ssd_anchors(config), max_detections=100, clip_boxes=False,
                             score_converter=config.score_converter, box_scales=config.box_scales)
    np.testing.assert_allclose(lite["num_detections"], ours["num_detections"])
    np.testing.assert_allclose(lite["detection_scores"], ours["detection_scores"], atol=1e-5)
    ours = {k: np.asarray(v) for k, v in ours.items()}
    for b in range(4):  # every class Keras found is in the file; each of the best 20 boxes is a Keras box of
        # the same class and score (equal scores come from different anchors, so the order of ties may differ)
        assert set(lite["detection_classes"][b]) == set(ours["detection_classes"][b])
        for box, label, score in zip(*(lite[k][b][:20] for k in ("detection_boxes", "detection_classes",
                                                                 "detection_scores"))):
            same = (ours["detection_classes"][b] == label) & (abs(ours["detection_scores"][b] - score) < 1e-5)
            assert same.any() and abs(ours["detection_boxes"][b][same] - box).max(-1).min() < 1e-4
