"""Build options that used to be patched onto a built model: BatchNorm momentum and block_info."""

import pytest

import keras_mobilenets as km
from keras_mobilenets.nets.builder import block_info, set_block_info


def _momenta(model):
    return {layer.momentum for layer in model.layers if type(layer).__name__ == "BatchNormalization"}


@pytest.mark.parametrize("flavor", ["keras", "tf_keras"])
def test_bn_momentum_is_a_build_option(flavor):
    kwargs = dict(alpha=0.35, input_shape=(64, 64, 3), weights=None, classes=3, flavor=flavor)
    assert _momenta(km.create_model("v2", **kwargs)) == {0.999}  # the table's own
    assert _momenta(km.create_model("v2", bn_momentum=0.9, **kwargs)) == {0.9}


@pytest.mark.parametrize("value", [1.0, -0.1, "0.9", True])
def test_bn_momentum_outside_zero_one_is_refused(value):
    with pytest.raises(ValueError, match=r"bn_momentum=.*must be a number in \[0, 1\)"):
        km.create_model("v2", alpha=0.35, input_shape=(64, 64, 3), bn_momentum=value)


def test_block_info_has_one_getter_and_one_setter():
    model = km.create_model("v3-small", alpha=0.75, input_shape=(64, 64, 3), include_top=False)
    records = block_info(model)
    assert records and records[-1].stride == 32
    bare = km.create_model("v3-small", alpha=0.75, input_shape=(64, 64, 3), include_top=False)
    bare.block_info = ()
    assert block_info(bare, required=False) == ()
    with pytest.raises(ValueError, match="has no block_info"):
        block_info(bare)
    set_block_info(bare, records)
    assert km.feature_info(bare) == km.feature_info(model)
