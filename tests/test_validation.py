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
    with pytest.raises(ValueError, match=r"arch='v4' .*one of \('v1', 'v2', 'v3-large', 'v3-small'\)"):
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
