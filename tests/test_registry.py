"""Architectures are data: users register blocks and pass tables of their own."""

from dataclasses import dataclass
from typing import ClassVar

import keras
import pytest

import keras_mobilenets as km
from keras_mobilenets.nets.registry import BLOCKS


@dataclass(frozen=True)
class FusedConv:
    """A Model Garden style fused inverted residual: one k x k conv expands, a 1x1 projects."""

    block: ClassVar[str] = "test_fused_conv"
    filters: int
    stride: int = 1
    expansion: int = 4


@pytest.fixture
def fused_block():
    @km.register_block("test_fused_conv")
    def fused_conv(x, row, ctx):
        prefix = f"fused_{ctx.block_index}_"
        stride, dilation = ctx.next_stride(row.stride)
        y = ctx.layers.Conv2D(x.shape[-1] * row.expansion, 3, strides=stride, padding="same",
                              use_bias=False, name=prefix + "expand")(x)
        y = ctx.batch_norm(prefix + "expand_bn")(y)
        y = ctx.activation("relu6", prefix + "expand")(y)
        y = ctx.layers.Conv2D(ctx.channels(row.filters), 1, use_bias=False, name=prefix + "project")(y)
        return ctx.batch_norm(prefix + "project_bn")(y)

    yield fused_conv
    BLOCKS.pop("test_fused_conv")


def tiny_table(*rows):
    return km.Architecture(
        name="tiny_{alpha:0.2f}_{rows}",
        rows=(km.ConvBN(16, kernel=3, stride=2, activation="hard_swish", name="stem"),) + rows
        + (km.ConvBN(None, kernel=1, activation="hard_swish", name="last", expand=6),),
        classifier=km.HeadClassifier(hidden=256),
    )


def test_custom_table_with_a_registered_block(fused_block):
    table = tiny_table(
        FusedConv(24, stride=2),
        #        k  exp  out  SE    NL    s
        km.bneck(3, 72, 24, True, "HS", 1),
        km.bottleneck(6, 40, 2, 2),
    )
    model = km.create_model(table, alpha=1.0, input_shape=(64, 64, 3), classes=7)
    names = [layer.name for layer in model.layers]
    assert "fused_0_expand" in names and "block_1_squeeze_excite_conv" in names
    assert "block_1_add" in names and "block_3_add" in names  # residuals where stride 1, same width
    assert model.output.shape == (None, 7)
    assert [info.stride for info in km.feature_info(model)] == [2, 4, 8]
    assert model.get_layer("block_2_expand").filters == 144  # make_divisible(24 * 6)
    assert model.get_layer("last").filters == 240  # make_divisible(40 * 6)


def test_alpha_scales_custom_tables_through_the_width_rule(fused_block):
    model = km.create_model(tiny_table(FusedConv(24, stride=2)), alpha=0.5, input_shape=(64, 64, 3))
    assert model.get_layer("fused_0_project").filters == 16  # make_divisible(12)


def test_registering_an_existing_name_needs_overwrite():
    with pytest.raises(ValueError, match="inverted_residual.*overwrite=True"):
        km.register_block("inverted_residual", lambda x, row, ctx: x)


def test_unknown_block_in_a_table_is_a_clear_error():
    @dataclass(frozen=True)
    class Mystery:
        block: ClassVar[str] = "no_such_block"

    with pytest.raises(ValueError, match="unknown block 'no_such_block'.*registered blocks"):
        km.create_model(tiny_table(Mystery()), input_shape=(64, 64, 3))


def test_builtin_tables_read_like_the_papers():
    v2 = [row for row in km.MOBILENET_V2.rows if isinstance(row, km.InvertedResidual)]
    assert [(r.expansion, r.filters, r.repeats, r.stride) for r in v2] == [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
        (6, 320, 1, 1)]
    small = [r for r in km.MOBILENET_V3_SMALL_MINIMALISTIC.rows if isinstance(r, km.InvertedResidual)]
    assert all(r.kernel == 3 and not r.se and r.activation == "relu" for r in small)
    assert "test_fused_conv" not in km.registered_blocks()
    assert isinstance(km.create_model("v3-small", input_shape=(64, 64, 3)), keras.Model)
