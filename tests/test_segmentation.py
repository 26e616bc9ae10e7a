"""Segmentation: LR-ASPP and Mobile DeepLabv3 against the papers' and torchvision's numbers, the
upsampling against LiteRT (float, int8, QAT), the mIoU metric on hand-computed masks, and the mask data
(VOC and plain folders, TFDS mock data, augmentation, bad pairs)."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data as skdata
from skimage import draw

import keras_mobilenets as km
from conftest import randomize_batchnorm
from keras_mobilenets.data.segmentation import (
    SegmentationAugmentation,
    augment,
    check_pair,
    from_segmentation_folder,
    from_tfds_segmentation,
)
from keras_mobilenets.data.pipelines import DataError
from keras_mobilenets.nets.builder import block_info
from keras_mobilenets.nets.segmentation import DeepLabV3, LRASPP
from keras_mobilenets.nets.tails import reduce_tail
from keras_mobilenets.train.metrics import ConfusionMatrix, segmentation_miou

SMALL = dict(alpha=0.35, input_shape=(64, 64, 3))
# A four-row backbone (strides 2, 4, 8, 16) under the real heads: conversions and saves stay fast.
TINY_BACKBONE = km.Architecture(
    name="tiny", classifier=None, width="divisible",
    rows=(km.ConvBN(8, stride=2, name="stem"), km.bottleneck(2, 8, 1, 2), km.bottleneck(2, 16, 1, 2),
          km.bottleneck(2, 16, 1, 2)))


def _trainable(layers):
    return sum(math.prod(w.shape) for layer in layers for w in layer.trainable_weights)


def _split(model):
    """(backbone trainable params, head trainable params): torchvision counts parameters, not BN statistics."""
    backbone = {name for record in block_info(model) for name in record.layers}
    return (_trainable(l for l in model.layers if l.name in backbone),
            _trainable(l for l in model.layers if l.name not in backbone))


# ------------------------------------------------------------------------------------------- numbers

def test_torchvision_lraspp_mobilenet_v3_large_has_exactly_its_parameters():
    """torchvision's lraspp_mobilenet_v3_large(num_classes=21): 3,221,538 = backbone 2,971,952 + head 249,586."""
    model = LRASPP("v3-large", num_classes=21, preset="torchvision", input_shape=(128, 128, 3))
    assert _split(model) == (2_971_952, 249_586)
    assert km.profile(model).trainable_params == 3_221_538
    assert model.get_layer("lraspp_low_logits").input.shape[-1] == 40  # features[4], the first stride-8 block
    assert model.get_layer("lraspp_conv").input.shape[-1] == 960


def test_v3_paper_table7_lraspp_cityscapes():
    """V3 paper Table 7: V3-Large, reduced tail, LR-ASPP 128 filters, 19 classes, 1024x2048: 1.51M params,
    9.74B MAdds. We measure 1,507,198 and 9.37B (the paper's count is 3.8% higher; at DeepLab's 1025x2049
    eval crop the backbone alone grows 0.15B)."""
    model = LRASPP("v3-large", num_classes=19, input_shape=(1024, 2048, 3), filters=128, output_stride=16,
                   reduced_tail=True, preset="paper", weights=None)
    profile = km.profile(model)
    assert round(profile.trainable_params / 1e6, 2) == 1.51
    assert 0.95 < profile.macs / 9.74e9 < 1.0
    assert model.get_layer("conv_1").filters == 480 and model.get_layer("lraspp_conv").filters == 128
    head = profile.blocks[-1]
    assert head.kind == "classifier" and head.macs < 0.1 * profile.macs  # head printed on its own row


@pytest.mark.parametrize("aspp, params, madds, low", [(False, 2.11, 2.75e9, 0.94), (True, 4.52, 5.8e9, 0.87)])
def test_v2_paper_table7_mobile_deeplabv3(aspp, params, madds, low):
    """V2 paper Table 7, 512x512, 21 classes, MNet V2* at OS16. Parameters match; MAdds are 5.3% (no ASPP)
    and 12.6% (ASPP) below the paper's (DeepLab's 513x513 crop accounts for the first: 2.74B there)."""
    model = DeepLabV3("v2", num_classes=21, input_shape=(512, 512, 3), aspp=aspp, output_stride=16)
    profile = km.profile(model)
    assert round(profile.trainable_params / 1e6, 2) == params
    assert low < profile.macs / madds < 1.0
    assert model.get_layer("aspp0").input.shape[-1] == 320  # the second-last feature map (no 1280 conv)


def test_reduce_tail_tables():
    """DeepLab halves the first expansion of the last stage too (336); torchvision / the OD API keep it (672)."""
    deeplab = reduce_tail(km.MOBILENET_V3_LARGE, halve_first_expansion=True)
    torch_like = reduce_tail(km.MOBILENET_V3_LARGE)
    assert [(r.exp_size, r.filters) for r in deeplab.rows[-4:-1]] == [(336, 80), (480, 80), (480, 80)]
    assert [(r.exp_size, r.filters) for r in torch_like.rows[-4:-1]] == [(672, 80), (480, 80), (480, 80)]
    assert torch_like.classifier.hidden == 640 and torch_like.family is None
    small = reduce_tail(km.MOBILENET_V3_SMALL, halve_first_expansion=True)
    assert [(r.exp_size, r.filters) for r in small.rows[-4:-1]] == [(144, 48), (288, 48), (288, 48)]


# --------------------------------------------------------------------------------------- the graphs

@pytest.mark.parametrize("backbone", ["v1", "v2", "v3-large", "v3-small"])
def test_heads_on_every_backbone(backbone):
    model = LRASPP(backbone, num_classes=3, **SMALL)
    assert model.output.shape == (None, 64, 64, 3)
    model = DeepLabV3(backbone, num_classes=4, aspp=True, decoder=True, **SMALL)
    assert model.output.shape == (None, 64, 64, 4)
    assert model.get_layer("aspp1").dilation_rate == (6, 6)


def test_output_strides():
    for output_stride, low_stride in ((8, 4), (32, 8)):
        model = LRASPP("v3-small", num_classes=3, output_stride=output_stride, low_stride=low_stride, **SMALL)
        assert model.output.shape == (None, 64, 64, 3)
        assert model.get_layer("lraspp_upsample").size == (output_stride // low_stride,) * 2
    # the paper's large average pool ((49, 49), stride (16, 20) at 1024x2048), here on an 8x10 feature map
    model = LRASPP("v3-small", num_classes=3, alpha=0.35, input_shape=(128, 160, 3), pool=((4, 5), (4, 5)))
    assert model.get_layer("lraspp_pool").output.shape[1:3] == (2, 2)
    assert model.get_layer("lraspp_gate_upsample").size == (4, 5)
    model = DeepLabV3("v2", num_classes=3, aspp=True, output_stride=8, **SMALL)
    assert model.get_layer("aspp3").dilation_rate == (36, 36) and model.output.shape == (None, 64, 64, 3)
    assert model.get_layer("logits_upsample").size == (8, 8)


def test_flat_graph_reloads_in_safe_mode_and_tf_keras_flavor(tmp_path):
    model = randomize_batchnorm(DeepLabV3(TINY_BACKBONE, num_classes=3, aspp=True, decoder=True,
                                          input_shape=(64, 64, 3)))
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"Functional", "Model", "Sequential", "Lambda", "TFOpLambda"}
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    path = str(tmp_path / "seg.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(images), model(images), atol=1e-5)
    twin = DeepLabV3(TINY_BACKBONE, num_classes=3, aspp=True, decoder=True, flavor="tf_keras",
                     input_shape=(64, 64, 3))
    assert [l.name for l in twin.layers[1:]] == [l.name for l in model.layers[1:]]
    assert twin.count_params() == model.count_params()
    lraspp = LRASPP("v3-small", num_classes=3, flavor="tf_keras", **SMALL)
    assert lraspp.output.shape[1:] == (64, 64, 3)


def test_bilinear_upsampling_matches_litert_in_float_int8_and_qat(photos):
    """UpSampling2D(bilinear) is TFLite's RESIZE_BILINEAR with half-pixel centers: the float file matches Keras
    to 1e-5; PTQ int8 and calibrated tfmot QAT (which quantizes UpSampling2D) stay within 3% of the logit
    range, every op int8."""
    from keras_mobilenets.deploy.tflite import convert, non_int8_ops, run_tflite
    from keras_mobilenets.optimize.qat import calibrate, quantize_model

    images = tf.image.resize(photos[:4], (64, 64)).numpy()
    keras.utils.set_random_seed(0)
    model = randomize_batchnorm(LRASPP(TINY_BACKBONE, num_classes=3, filters=16, input_shape=(64, 64, 3)))
    assert model.get_layer("lraspp_upsample").interpolation == "bilinear"
    expected = np.asarray(model(images, training=False))
    scale = np.abs(expected).max()
    actual, interpreter = run_tflite(convert(model, "float32"), images)
    assert "RESIZE_BILINEAR" in {op["op_name"] for op in interpreter._get_ops_details()}
    np.testing.assert_allclose(actual, expected, atol=1e-5 * max(1, scale))
    actual, interpreter = run_tflite(convert(model, "int8", representative=images), images)
    assert np.abs(actual - expected).max() < 0.03 * scale and not non_int8_ops(interpreter)
    qat = quantize_model(model)
    calibrate(qat, images, batches=1)
    qat_expected = np.asarray(qat(images, training=False))
    actual, interpreter = run_tflite(convert(qat, "qat-int8"), images)
    assert np.abs(actual - qat_expected).max() < 0.03 * scale and not non_int8_ops(interpreter)
    assert (actual.argmax(-1) == expected.argmax(-1)).mean() > 0.95


# ------------------------------------------------------------------------------------------ metric

def test_confusion_matrix_metrics_by_hand():
    truth = np.array([[[0, 0, 1], [1, 255, 2]]])
    predicted = np.array([[[0, 1, 1], [1, 2, 2]]])
    result = ConfusionMatrix(3).update(truth, np.eye(3)[predicted]).result()
    # class 0: 1 / (1 + 1); class 1: 2 / (2 + 1); class 2: 1 / 1; the 255 pixel counts nowhere
    assert result["per_class_iou"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert result["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 5) and result["pixels"] == 5
    keras_metric = segmentation_miou(3)
    keras_metric.update_state(truth, np.eye(3)[predicted])
    assert float(keras_metric.result()) == pytest.approx(result["miou"], abs=1e-6)
    absent = ConfusionMatrix(4).update(truth, predicted).result()
    assert absent["per_class_iou"][3] is None and absent["miou"] == pytest.approx(result["miou"])


# -------------------------------------------------------------------------------------------- data

def _scene(seed, size=(48, 64)):
    """A crop of a real photo and a mask of shapes drawn with skimage.draw (ids 1, 2; 255 on a border)."""
    rng = np.random.default_rng(seed)
    photo = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()][seed % 3]
    top, left = rng.integers(0, 200, 2)
    image = photo[top:top + size[0], left:left + size[1]].copy()
    mask = np.zeros(size, np.uint8)
    rr, cc = draw.disk((size[0] // 2, size[1] // 3), size[0] // 4, shape=size)
    mask[rr, cc] = 1
    rr, cc = draw.rectangle((5, size[1] // 2), (size[0] - 6, size[1] - 6), shape=size)
    mask[rr, cc] = 2
    mask[0, :] = 255
    return image, mask


def _save_mask(mask, path, palette=True):
    image = Image.fromarray(mask, mode="P" if palette else "L")
    if palette:
        image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
    image.save(path)


def _voc(root, n=6):
    os.makedirs(root / "JPEGImages")
    os.makedirs(root / "SegmentationClass")
    for i in range(n):
        image, mask = _scene(i)
        Image.fromarray(image).save(root / "JPEGImages" / f"{i:03d}.jpg")
        _save_mask(mask, root / "SegmentationClass" / f"{i:03d}.png")
    return root


def test_voc_folder_pipeline_and_bad_pairs(tmp_path):
    root = _voc(tmp_path / "voc")
    Image.fromarray(_scene(1)[0]).save(root / "JPEGImages" / "nomask.jpg")
    (root / "SegmentationClass" / "nomask.png").write_bytes(b"")  # unreadable mask
    image, mask = _scene(2)
    Image.fromarray(image).save(root / "JPEGImages" / "small.jpg")
    _save_mask(mask[:40], root / "SegmentationClass" / "small.png")
    Image.fromarray(image).save(root / "JPEGImages" / "nine.jpg")
    _save_mask(np.where(mask == 2, 9, mask).astype(np.uint8), root / "SegmentationClass" / "nine.png")
    (root / "JPEGImages" / "broken.jpg").write_bytes(b"not a jpeg")
    _save_mask(mask, root / "SegmentationClass" / "broken.png")
    data = from_segmentation_folder(root, 32, num_classes=3, batch_size=2, validation_split=0.0,
                                    test_split=0.3)
    reasons = {os.path.basename(bad.path): bad.reason for bad in data.skipped}
    assert set(reasons) == {"nomask.png", "small.png", "nine.png", "broken.jpg"}
    assert "differs from its image" in reasons["small.png"] and "class id 9" in reasons["nine.png"]
    assert sum(data.counts.values()) == 6 and "skipped" in data.report()
    images, masks = next(iter(data.test))
    assert images.shape == (2, 32, 32, 3) and images.dtype == tf.float32 and masks.dtype == tf.int32
    assert set(np.unique(masks.numpy())) <= {0, 1, 2, 255} and {1, 2} <= set(np.unique(masks.numpy()))
    with pytest.raises(DataError, match="strict=False"):
        from_segmentation_folder(root, 32, num_classes=3, strict=True)


def test_plain_images_and_masks_folder(tmp_path):
    for folder in ("images", "masks"):
        os.makedirs(tmp_path / folder)
    for i in range(4):
        image, mask = _scene(i)
        Image.fromarray(image).save(tmp_path / "images" / f"p{i}.png")
        _save_mask(mask, tmp_path / "masks" / f"p{i}.png", palette=False)
    data = from_segmentation_folder(tmp_path, (32, 48), num_classes=3, batch_size=4, validation_split=0.0,
                                    test_split=0.0)
    images, masks = next(iter(data.train))
    assert images.shape == (4, 32, 48, 3) and masks.shape == (4, 32, 48) and not data.skipped


def test_augmentation_moves_image_and_mask_together():
    """Pixels encode their class (value = 80 * id): after random scale, crop and flip every labelled pixel
    off a class edge still sits on its own colour, and padding is 0 in the image and the ignore label in
    the mask."""
    mask = np.zeros((40, 40), np.int32)
    mask[:, 20:] = 2
    mask[10:20, 5:15] = 1
    image = np.repeat((mask * 80.0)[..., None], 3, axis=-1)
    tf.random.set_seed(0)
    for scale in ((0.5, 0.5), (0.8, 1.6)):
        for _ in range(4):
            out_image, out_mask = augment(image, mask, (48, 48), SegmentationAugmentation(scale=scale))
            out_image, out_mask = out_image.numpy(), out_mask.numpy()
            padded = np.pad(out_mask, 1, mode="edge")
            interior = np.all([padded[1 + dy:49 + dy, 1 + dx:49 + dx] == out_mask
                               for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
            inside = interior & (out_mask != 255)  # bilinear blends the image across class edges
            np.testing.assert_allclose(out_image[inside][:, 0], out_mask[inside] * 80.0, atol=1e-3)
            assert inside.sum() > 0.5 * (out_mask != 255).sum()
            assert set(np.unique(out_mask)) <= {0, 1, 2, 255}
            if scale == (0.5, 0.5):
                assert (out_mask == 255).mean() > 0.5 and (out_image[out_mask == 255] == 0).all()


def test_tfds_pairs_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        data = from_tfds_segmentation("oxford_iiit_pet", None, 32, num_classes=3, mask_offset=-1,
                                      batch_size=2)
        images, masks = next(iter(data.train))
    assert images.shape == (2, 32, 32, 3) and masks.shape == (2, 32, 32)
    assert set(np.unique(masks.numpy())) <= {0, 1, 2, 255}


# --------------------------------------------------------------------------------------- bad input

def test_num_classes_below_two():
    with pytest.raises(ValueError, match=r"num_classes=1 is not allowed.*>= 2"):
        LRASPP("v3-small", num_classes=1, **SMALL)


def test_output_stride_not_8_16_32():
    with pytest.raises(ValueError, match=r"output_stride=4 is not allowed.*\(8, 16, 32\)"):
        DeepLabV3("v2", num_classes=3, output_stride=4, **SMALL)


def test_head_needing_a_stride_the_backbone_does_not_give():
    with pytest.raises(ValueError, match=r"low_stride=8 is not allowed.*output stride 8.*\(2, 4\)"):
        LRASPP("v3-small", num_classes=3, output_stride=8, low_stride=8, **SMALL)


def test_mask_with_class_ids_out_of_range(tmp_path):
    image, mask = _scene(0)
    Image.fromarray(image).save(tmp_path / "a.png")
    _save_mask(np.where(mask == 2, 7, mask).astype(np.uint8), tmp_path / "a_mask.png")
    bad = check_pair(str(tmp_path / "a.png"), str(tmp_path / "a_mask.png"), num_classes=3)
    assert bad.path.endswith("a_mask.png") and "class id 7 is not allowed" in bad.reason and "255" in bad.reason


def test_image_and_mask_of_different_sizes(tmp_path):
    image, mask = _scene(0)
    Image.fromarray(image).save(tmp_path / "a.png")
    _save_mask(mask[:, :50], tmp_path / "a_mask.png")
    bad = check_pair(str(tmp_path / "a.png"), str(tmp_path / "a_mask.png"), num_classes=3)
    assert bad.path.endswith("a_mask.png") and "48x50 differs from its image a.png (48x64)" in bad.reason
