"""SSDLite / SSD (issue 15, the model side): the papers' and torchvision's numbers, the Object Detection
API's taps, anchors, box coding, matching, losses and post-processing, reload and both flavors, bad input."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mobilenets as km
from keras_mobilenets.nets.architectures import MOBILENET_V2
from keras_mobilenets.nets.detection import SSDLiteExtra, reduced_tail
from keras_mobilenets.nets.detection.box_coder import decode_boxes, encode_boxes
from keras_mobilenets.nets.detection.targets import match
from keras_mobilenets.train.detection_loss import SSDBoxLoss, SSDClassLoss, class_loss, hard_negatives

SMALL = dict(backbone="v3-small", alpha=0.35, num_classes=3, input_shape=(96, 96, 3))


def _trainable(layers):
    return sum(math.prod(w.shape) for layer in layers for w in layer.trainable_weights)


def _tap(model, index):
    """The layer feeding predictor `index` (its depthwise conv, or the plain SSD conv)."""
    first = next(layer for layer in model.layers if layer.name.startswith(f"predictor_{index}_"))
    return first.input._keras_history.operation.name


@pytest.fixture(scope="module")
def small():
    return km.SSDLite(**SMALL)


def test_v2_ssdlite_and_ssd_match_the_v2_paper_tables_5_and_6():
    """V2 paper Table 6: MNetV2 + SSDLite 4.3M params, 0.8B MAdds; Table 5: the SSDLite layers 2.1M, plain
    SSD 14.8M / 1.25B. The SSDLite head measures 0.17B MAdds against the paper's 0.35B: no combination of
    80/90 classes or 3/6 lowest anchors gets there, while params (all three) and SSD MAdds agree."""
    lite = km.profile(km.SSDLite("v2", num_classes=80, input_shape=(300, 300, 3)))
    ssd = km.profile(km.SSDLite("v2", num_classes=80, input_shape=(300, 300, 3), head="ssd"))
    _, lite_head_params, lite_head_macs = lite.parts()["head"]
    _, ssd_head_params, ssd_head_macs = ssd.parts()["head"]
    assert round(lite.trainable_params / 1e6, 1) == 4.3
    assert abs(lite.macs / 1e9 - 0.8) < 0.1  # 0.73B measured
    assert round(lite_head_params / 1e6, 1) == 2.1
    assert round(ssd_head_params / 1e6, 1) == 14.8
    assert abs(ssd_head_macs / 1e9 - 1.25) < 0.05  # 1.21B measured
    assert lite_head_macs < 0.35e9
    assert "head params" in lite.table() and "backbone params" in lite.table()


def test_torchvision_ssdlite320_mobilenet_v3_large_has_exactly_its_parameters():
    """torchvision's ssdlite320_mobilenet_v3_large(num_classes=91): 3,440,060 parameters = backbone
    1,620,512 + extra layers 452,160 + heads 1,367,388 (torch counts trainable tensors, not BN statistics)."""
    model = km.SSDLite("v3-large", num_classes=90, input_shape=(320, 320, 3), reduced_tail=True,
                       preset="torchvision")
    assert _trainable(model.layers) == 3_440_060
    by_kind = {}
    for record in model.block_info:
        layers = [model.get_layer(name) for name in record.layers]
        key = record.part if record.part == "backbone" else record.kind
        by_kind[key] = by_kind.get(key, 0) + _trainable(layers)
    assert by_kind == {"backbone": 1_620_512, "ssdlite_extra": 452_160, "ssdlite_predictor": 1_367_388,
                       "outputs": 0}
    config = model.detector_config
    assert config.feature_map_sizes == ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))
    assert config.anchors_per_location == (6,) * 6 and config.num_anchors == 3234
    assert model.outputs[1].shape[-1] == 91


@pytest.mark.parametrize("backbone, macs, params", [("v3-large", 0.51, 3.22), ("v3-small", 0.16, 1.77)])
def test_v3_reduced_tail_ssdlite_matches_the_v3_paper_table_6(backbone, macs, params):
    """V3 paper Table 6 (SSDLite, reduced tail, 320x320, COCO's 90 classes): V3-Large 0.51B MAdds / 3.22M
    params, V3-Small 0.16B / 1.77M (the ODAPI config: "3.22M parameters, 1.02B FLOPs"). Parameters land
    between our kernel-only count and the trainable count, within 1%."""
    report = km.profile(km.SSDLite(backbone, num_classes=90, input_shape=(320, 320, 3), reduced_tail=True))
    assert round(report.macs / 1e9, 2) == macs
    assert report.kernel_params / 1e6 < params < report.trainable_params / 1e6 * 1.005
    assert abs(report.trainable_params / 1e6 - params) / params < 0.01


@pytest.mark.parametrize("backbone, kwargs, taps", [
    ("v2", {}, ("block_13_expand_relu", "out_relu")),
    ("v1", {}, ("conv_pw_11_relu", "conv_pw_13_relu")),
    ("v3-large", {"reduced_tail": True}, ("expanded_conv_12_expand_hard_swish", "conv_1_hard_swish")),
    ("v3-small", {"minimalistic": True, "reduced_tail": True}, ("expanded_conv_8_expand_relu", "conv_1_relu")),
])
def test_taps_are_the_object_detection_api_layers(backbone, kwargs, taps):
    """V2 layer_15/expansion_output and layer_19; V3 the first stride-32 expansion and the last conv; V1
    Conv2d_11_pointwise and Conv2d_13_pointwise. Reduced tail: that stage's outputs and later expansions halve."""
    model = km.SSDLite(backbone, alpha=0.5, num_classes=2, input_shape=(64, 64, 3), **kwargs)
    assert (_tap(model, 0), _tap(model, 1)) == taps
    sizes = model.detector_config.feature_map_sizes
    assert sizes == ((4, 4), (2, 2), (1, 1), (1, 1), (1, 1), (1, 1))
    if kwargs.get("reduced_tail"):
        full = km.create_model(backbone, alpha=0.5, include_top=False, input_shape=(64, 64, 3), **{
            k: v for k, v in kwargs.items() if k != "reduced_tail"})
        assert model.get_layer(taps[0]).output.shape[-1] == full.get_layer(taps[0]).output.shape[-1]
        assert model.get_layer(taps[1]).output.shape[-1] * 2 == full.get_layer(taps[1]).output.shape[-1]


def test_anchors_follow_the_object_detection_api_and_torchvision():
    """ODAPI ssd_mobilenet_v2 at 300: the well-known 1917 anchors; (0.1, 1), (0.2, 2), (0.2, 1/2) on the
    first map; the 1x1 map holds scale 0.95 at ratios 1, 2, 1/2, 3, 1/3 and sqrt(0.95 * 1.0) at ratio 1."""
    config = km.SSDLite("v2", alpha=0.35, num_classes=1, input_shape=(300, 300, 3)).detector_config
    anchors = km.ssd_anchors(config)
    assert anchors.shape == (1917, 4)
    size = lambda a: (a[2] - a[0], a[3] - a[1])  # noqa: E731
    np.testing.assert_allclose(anchors[0], [0.5 / 19 - 0.05, 0.5 / 19 - 0.05, 0.5 / 19 + 0.05, 0.5 / 19 + 0.05],
                               atol=1e-6)
    np.testing.assert_allclose(size(anchors[1]), (0.2 / math.sqrt(2), 0.2 * math.sqrt(2)), atol=1e-6)
    last = anchors[-6:]
    expected = [(0.95 / math.sqrt(r), 0.95 * math.sqrt(r)) for r in (1, 2, 0.5, 3, 1 / 3)] + [(0.95 ** 0.5,) * 2]
    np.testing.assert_allclose([size(a) for a in last], expected, atol=1e-6)
    np.testing.assert_allclose((last[:, 0] + last[:, 2]) / 2, 0.5, atol=1e-6)
    # row-major order: the second location of map 0 is one step right of the first
    np.testing.assert_allclose(anchors[3, 1] - anchors[0, 1], 1 / 19, atol=1e-6)
    tv = km.SSDLite("v3-small", alpha=0.35, num_classes=1, input_shape=(320, 320, 3), preset="torchvision")
    anchors = km.ssd_anchors(tv)
    assert anchors.shape == (3234, 4)
    s0, s1 = 0.2, 0.2 + 0.75 / 5  # DefaultBoxGenerator: s_k, s'_k = sqrt(s_k s_k+1), then w/h pairs of 2, 3
    expected = [(s0, s0), (math.sqrt(s0 * s1),) * 2, (s0 / 2 ** 0.5, s0 * 2 ** 0.5), (s0 * 2 ** 0.5, s0 / 2 ** 0.5),
                (s0 / 3 ** 0.5, s0 * 3 ** 0.5), (s0 * 3 ** 0.5, s0 / 3 ** 0.5)]
    np.testing.assert_allclose([size(a) for a in anchors[:6]], expected, atol=1e-6)
    assert np.all(np.stack([size(a) for a in anchors]) <= 1.0 + 1e-6)  # clipped sizes


def test_box_coder_uses_the_faster_rcnn_scales_and_round_trips():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.2, 0.3, 0.6, 0.5]], np.float32)
    boxes = np.array([[0.1, 0.1, 0.6, 0.6], [0.2, 0.3, 0.6 + 0.4 * (math.e - 1), 0.5]], np.float32)
    codes = encode_boxes(boxes, anchors).numpy()
    # ty = 10 * (0.35 - 0.25) / 0.5 = 2; th = 5 * log(0.5 / 0.5) = 0; box 2: height e times the anchor's
    np.testing.assert_allclose(codes[0], [2.0, 2.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(codes[1], [10 * (0.4 * (math.e - 1) / 2) / 0.4, 0.0, 5.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(decode_boxes(codes, anchors).numpy(), boxes, atol=1e-6)


def test_matching_is_argmax_with_forced_rows_and_runs_in_tf_data(small):
    anchors = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.45, 0.5], [0.5, 0.5, 1, 1], [0, 0.5, 0.5, 1]], np.float32)
    gt = np.array([[0, 0, 0.5, 0.5], [0.6, 0.6, 0.8, 0.8], [0, 0, 1, 1]], np.float32)
    valid = tf.constant([True, True, False])
    # anchor 0 and 1 (IoU 0.9) take box 0; box 1 (IoU 0.16 with anchor 2) is forced onto its best anchor;
    # the padding row never matches although its IoU with anchor 3 is 0.25 and with anchor 0 is 0.25
    assert match(gt, valid, anchors).numpy().tolist() == [0, 0, 1, -1]
    assert match(gt, valid, anchors, force_match_for_each_row=False).numpy().tolist() == [0, 0, -1, -1]
    all_anchors = km.ssd_anchors(small)
    dataset = tf.data.Dataset.from_tensor_slices((
        np.array([[[0.1, 0.1, 0.7, 0.6], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32),
        np.array([[2, -1], [-1, -1]], np.int32)))
    targets = list(dataset.map(lambda b, c: km.encode_targets(b, c, all_anchors)).as_numpy_iterator())
    labels = targets[0]["class_logits"]
    assert set(np.unique(labels)) == {0, 3} and targets[0]["box_encodings"].shape == (len(all_anchors), 5)
    assert not targets[1]["class_logits"].any() and not targets[1]["box_encodings"].any()
    positives = labels > 0
    decoded = decode_boxes(targets[0]["box_encodings"][positives, :4], all_anchors[positives]).numpy()
    np.testing.assert_allclose(decoded, np.broadcast_to([0.1, 0.1, 0.7, 0.6], decoded.shape), atol=1e-5)


def test_losses_focal_and_hard_negative_mining():
    labels = tf.constant([[2, 0, 0, 0, 0, 0, 0, 0, -1]])
    logits = tf.random.stateless_normal((1, 9, 3), seed=(1, 2))
    # focal, written out: alpha_t (1 - p_t)^gamma CE over the object slots (background anchors: all-zero
    # targets; the background slot is not trained), normalized by the one positive
    p = tf.sigmoid(logits[..., 1:])
    target = tf.constant([[[0.0, 1.0]] + [[0.0, 0.0]] * 8])
    p_t = target * p + (1 - target) * (1 - p)
    alpha_t = target * 0.25 + (1 - target) * 0.75
    manual = tf.reduce_sum((alpha_t * (1 - p_t) ** 2 * -tf.math.log(p_t))[:, :8])
    moved = tf.concat([logits[..., :1] + 3.0, logits[..., 1:]], axis=-1)  # the background slot plays no part
    np.testing.assert_allclose(class_loss(labels, moved, "focal").numpy(), [manual.numpy()], rtol=1e-5)
    np.testing.assert_allclose(class_loss(labels, logits, "focal").numpy(), [manual.numpy()], rtol=1e-5)
    # hard negatives: the 3 negatives with the highest loss, and the positive; never the ignored anchor
    per_anchor = tf.constant([[0.1, 0.5, 0.9, 0.2, 0.8, 0.7, 0.0, 0.3, 5.0]])
    mask = hard_negatives(per_anchor, labels).numpy()[0]
    assert np.flatnonzero(mask).tolist() == [0, 2, 4, 5]
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), logits)
    np.testing.assert_allclose(class_loss(labels, logits, "softmax_hard_negative").numpy(),
                               [tf.reduce_sum(tf.boolean_mask(ce, hard_negatives(ce, labels))).numpy()],
                               rtol=1e-5)


def test_decode_detections_recovers_encoded_boxes_and_the_losses_descend(small):
    anchors = km.ssd_anchors(small)
    boxes = np.array([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.95, 0.9], [0, 0, 0, 0]], np.float32)
    targets = km.encode_targets(boxes, np.array([0, 2, -1], np.int32), anchors)
    labels = targets["class_logits"]
    logits = tf.where(tf.one_hot(labels, 4) > 0, 8.0, -8.0)[None]
    found = km.decode_detections(targets["box_encodings"][None, :, :4], logits, anchors, max_detections=5,
                                 score_threshold=0.5, iou_threshold=0.5)
    assert int(found["num_detections"][0]) == 2
    np.testing.assert_allclose(found["detection_boxes"][0, :2], boxes[:2], atol=1e-5)
    assert found["detection_classes"][0, :2].numpy().tolist() == [0.0, 2.0]
    # the Keras losses take encode_targets' dict entries as y_true (model.compile(loss={...})); a gradient
    # step on the raw predictions lowers both
    y = {k: tf.stack([v] * 2) for k, v in targets.items()}
    predictions = [tf.Variable(tf.zeros((2, len(anchors), 4))), tf.Variable(tf.fill((2, len(anchors), 4), -4.6))]
    losses = [SSDBoxLoss(), SSDClassLoss("focal")]
    before = [float(f(y[k], p)) for f, k, p in zip(losses, ("box_encodings", "class_logits"), predictions)]
    for loss, key, prediction in zip(losses, ("box_encodings", "class_logits"), predictions):
        with tf.GradientTape() as tape:
            value = loss(y[key], prediction)
        prediction.assign_sub(0.5 * tape.gradient(value, prediction))
    after = [float(f(y[k], p)) for f, k, p in zip(losses, ("box_encodings", "class_logits"), predictions)]
    assert after[0] < before[0] and after[1] < before[1]


def test_one_flat_graph_reloads_in_safe_mode_and_builds_as_tf_keras(small, tmp_path):
    kinds = {type(layer).__name__ for layer in small.layers}
    assert not kinds & {"Functional", "Model", "Sequential", "Lambda", "TFOpLambda"}
    assert [small.get_layer(n).name for n in ("box_encodings", "class_logits")]
    path = tmp_path / "ssdlite.keras"
    small.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(1).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    for ours, theirs in zip(small(images), reloaded(images)):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    config = km.detector_config(reloaded)  # read off the graph: the attribute is gone after reloading
    assert getattr(reloaded, "detector_config", None) is None
    np.testing.assert_array_equal(km.ssd_anchors(config), km.ssd_anchors(small))
    assert km.DetectorConfig.from_json(small.detector_config.to_json()) == small.detector_config
    legacy = km.SSDLite(**SMALL, flavor="tf_keras")
    assert type(legacy).__module__.startswith("tf_keras")
    assert [layer.name for layer in legacy.layers[1:]] == [layer.name for layer in small.layers[1:]]
    assert legacy.count_params() == small.count_params()


def test_heads_and_extra_layers_are_swappable_registry_rows():
    """A user table: two extra layers instead of four, registered built-in rows, five maps of anchors."""
    detector = km.nets.detection.DETECTORS[("ssdlite", "paper")]
    from dataclasses import replace

    custom = replace(detector, extra=(SSDLiteExtra(128), SSDLiteExtra(64)))
    model = km.SSDLite(**SMALL, detector=custom)
    assert len(model.detector_config.feature_map_sizes) == 4
    assert model.get_layer("extra_3_conv").output.shape[-1] == 22  # max(16, int(64 * 0.35))
    assert km.ssd_anchors(model).shape[0] == model.outputs[0].shape[1]


@pytest.mark.parametrize("kwargs, argument, allowed", [
    (dict(num_classes=0), "num_classes", "positive integer"),
    (dict(input_shape=(None, None, 3)), "input_shape", ">= 33"),
    (dict(input_shape=(32, 32, 3)), "input_shape", "e.g. 96, 160, 300, 320"),
    (dict(head="yolo"), "head", "('ssdlite', 'ssd')"),
    (dict(preset="mmdet"), "preset", "('paper', 'torchvision')"),
    (dict(backbone="v2", reduced_tail=True), "reduced_tail", "False for MobileNetV1/V2"),
])
def test_bad_arguments_name_the_argument_and_what_is_allowed(kwargs, argument, allowed):
    arguments = {**SMALL, **kwargs}
    with pytest.raises(ValueError, match=rf"{argument}=.*is not allowed") as error:
        km.SSDLite(**arguments)
    assert allowed in str(error.value)


def test_a_backbone_without_the_stride_32_tap_is_refused():
    from dataclasses import replace

    rows = tuple(replace(row, stride=1) if getattr(row, "filters", None) == 160 else row for row in MOBILENET_V2.rows)
    with pytest.raises(ValueError, match=r"backbone=.*output stride 32; this one reaches 16"):
        km.SSDLite(replace(MOBILENET_V2, rows=rows), alpha=0.35, num_classes=2, input_shape=(96, 96, 3))
    with pytest.raises(ValueError, match="reduced_tail=True is not allowed"):
        reduced_tail(replace(MOBILENET_V2, rows=MOBILENET_V2.rows[:1]))


def test_tflite_file_ends_in_the_detection_postprocess_op_and_agrees_with_keras():
    """Float TFLite with TFLite_Detection_PostProcess (regular, per-class NMS) run by LiteRT vs the Keras
    outputs through decode_detections: the same top boxes (IoU > 0.99), classes and scores. A small user
    table (five strided depthwise-separable rows) keeps the conversion short; the head is torchvision's
    (softmax, no bias prior), so scores differ from anchor to anchor."""
    from keras_mobilenets.deploy.detection_tflite import convert_detector, run_detector_tflite
    from keras_mobilenets.nets.spec import Architecture, ConvBN, ConvClassifier, DepthwiseSeparable
    from keras_mobilenets.nets.detection.targets import iou

    tiny = Architecture(name="tiny", rows=(ConvBN(16, stride=2, name="stem"),) + tuple(
        DepthwiseSeparable(c, 2) for c in (16, 24, 32, 48)), classifier=ConvClassifier(), width="int",
        first_block_index=1)
    keras.utils.set_random_seed(0)
    model = km.SSDLite(tiny, alpha=1.0, num_classes=3, input_shape=(96, 96, 3), preset="torchvision")
    rng = np.random.default_rng(0)  # predictors far from their near-zero init: distinct scores
    for layer in model.layers:
        if layer.name.endswith("_conv") and layer.name.startswith("predictor_"):
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in layer.get_weights()])
    content = convert_detector(model, max_detections=10, use_regular_nms=True)
    images = np.random.default_rng(3).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    lite = run_detector_tflite(content, images)
    config = km.detector_config(model)
    box_encodings, class_logits = model(images)
    ours = km.decode_detections(box_encodings, class_logits, km.ssd_anchors(config), max_detections=10,
                                score_converter=config.score_converter, clip_boxes=False)
    np.testing.assert_array_equal(lite["num_detections"], ours["num_detections"].numpy())
    for b in range(2):
        overlap = iou(lite["detection_boxes"][b], ours["detection_boxes"][b]).numpy()
        same_class = lite["detection_classes"][b][:, None] == ours["detection_classes"][b].numpy()[None]
        overlap = np.where(same_class, overlap, 0.0)  # one anchor may be kept for several classes
        for i in range(5):  # the five best: a Keras detection of the same class, box and score
            j = int(np.argmax(overlap[i]))
            assert overlap[i, j] > 0.99
            assert abs(lite["detection_scores"][b, i] - ours["detection_scores"][b, j]) < 1e-4
