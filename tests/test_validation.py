"""Every bad argument gets a ValueError naming the argument, the value and what is allowed."""

from dataclasses import dataclass
from typing import ClassVar

import pytest

import keras_mobilenets as km


def test_alpha_zero_or_negative():
    with pytest.raises(ValueError, match=r"alpha=0 .*positive number"):
        km.MobileNetV2(alpha=0, weights=None)
    with pytest.raises(ValueError, match=r"alpha=-0.5 .*positive number"):
        km.MobileNetV3Small(alpha=-0.5, weights=None)


def test_alpha_not_a_number():
    with pytest.raises(ValueError, match=r"alpha='wide' .*positive number"):
        km.MobileNetV1(alpha="wide", weights=None)
    with pytest.raises(ValueError, match=r"alpha=True"):
        km.MobileNetV2(alpha=True, weights=None)


def test_input_smaller_than_32_pixels():
    with pytest.raises(ValueError, match=r"input_shape=\(31, 64, 3\).*>= 32"):
        km.MobileNetV2(input_shape=(31, 64, 3), weights=None)


def test_wrong_channel_count_with_weights():
    with pytest.raises(ValueError, match=r"input_shape=\(224, 224, 1\).*3 channels"):
        km.MobileNetV2(input_shape=(224, 224, 1), weights="imagenet")


def test_unknown_pooling():
    with pytest.raises(ValueError, match=r"pooling='mean'.*one of \(None, 'avg', 'max'\)"):
        km.MobileNetV3Large(include_top=False, pooling="mean", weights=None)


def test_classes_other_than_1000_with_imagenet_top():
    with pytest.raises(ValueError, match=r"classes=10 .*1000 with weights=\"imagenet\""):
        km.MobileNetV2(classes=10, weights="imagenet")


def test_minimalistic_on_v1_and_v2():
    for arch in ("v1", "v2"):
        with pytest.raises(ValueError, match=r"minimalistic=True .*only MobileNetV3"):
            km.create_model(arch, minimalistic=True)


def test_invalid_classifier_activation_with_weights():
    with pytest.raises(ValueError, match=r"classifier_activation='relu'.*None or \"softmax\""):
        km.MobileNetV3Small(classifier_activation="relu", weights="imagenet")


def test_unknown_block_name_in_custom_table():
    @dataclass(frozen=True)
    class Row:
        block: ClassVar[str] = "ghost_block"

    table = km.Architecture(name="custom", rows=(Row(),), classifier=km.DenseClassifier())
    with pytest.raises(ValueError, match=r"unknown block 'ghost_block'"):
        km.create_model(table)


def test_unknown_arch_name():
    with pytest.raises(ValueError, match=r"arch='v4' .*one of \('v1', 'v2', 'v3-large', 'v3-small', 'v4-conv-small'"):
        km.create_model("v4")


def test_weights_that_are_neither_none_imagenet_nor_a_file():
    with pytest.raises(ValueError, match=r"weights='/no/such/file.h5'.*existing weights file"):
        km.MobileNetV2(weights="/no/such/file.h5")


def test_output_stride_not_8_16_32():
    with pytest.raises(ValueError, match=r"output_stride=4 .*one of \(None, 8, 16, 32\)"):
        km.MobileNetV2(weights=None, output_stride=4)


def test_depth_multiplier_outside_v1():
    with pytest.raises(ValueError, match=r"depth_multiplier=2 .*MobileNetV1"):
        km.create_model("v2", depth_multiplier=2)


def test_dropout_out_of_range():
    with pytest.raises(ValueError, match=r"dropout_rate=1.5 .*\[0, 1\)"):
        km.MobileNetV3Small(weights=None, dropout_rate=1.5)


def test_unknown_flavor():
    with pytest.raises(ValueError, match=r"flavor='keras2' .*one of \('keras', 'tf_keras'\)"):
        km.MobileNetV2(weights=None, flavor="keras2")


@pytest.mark.parametrize("make, field", [
    (lambda: km.bottleneck(6, -16, 1, 1), "filters=-16"),
    (lambda: km.bottleneck(0, 16, 1, 1), "expansion=0"),
    (lambda: km.bottleneck(6, 16, 0, 1), "repeats=0"),
    (lambda: km.bottleneck(6, 16, 1, 0), "stride=0"),
    (lambda: km.bneck(3, 0, 16, True, "RE", 2), "exp_size=0"),
    (lambda: km.bneck(-3, 16, 16, True, "RE", 2), "kernel=-3"),
    (lambda: km.ConvBN(0), "filters=0"),
    (lambda: km.ConvBN(16.5), "filters=16.5"),
    (lambda: km.ConvBN(None), "filters=None"),
    (lambda: km.ConvBN(None, expand=-6), "expand=-6"),
    (lambda: km.DepthwiseSeparable(-64), "filters=-64"),
    (lambda: km.HeadClassifier(hidden=0), "hidden=0"),
    (lambda: km.InvertedResidual(16), "one of expansion"),
])
def test_table_row_with_a_non_positive_count_names_the_row_and_field(make, field):
    """These rows built silently with 8 filters (make_divisible's floor) before."""
    with pytest.raises(ValueError, match=r"^(ConvBN|InvertedResidual|DepthwiseSeparable|HeadClassifier)\(")\
            as error:
        make()
    assert field in str(error.value)


def test_custom_block_asking_for_negative_channels_is_refused():
    with pytest.raises(ValueError, match=r"channels=-16 is not allowed: .*positive integers"):
        km.scale_channels(-16, 1.0, "divisible")


def test_alpha_too_large_is_refused_before_any_layer_is_built():
    """alpha=1e9 ran into ResourceExhaustedError allocating 3.2e10 filters."""
    with pytest.raises(ValueError, match=r"alpha=1000000000.0 is not allowed: .*up to 10"):
        km.MobileNetV2(alpha=1e9, weights=None)
    assert km.MobileNetV3Small(alpha=10, weights=None, input_shape=(32, 32, 3), include_top=False)


def test_alpha_that_leaves_a_layer_without_filters_names_the_smallest_alpha():
    with pytest.raises(ValueError, match=r"alpha=0.01 .*32 channels to 0 filters.*at least 0.03125"):
        km.MobileNetV1(alpha=0.01, weights=None)
