"""The papers' numbers, reproduced from the code."""

import pytest

import keras_mobilenets as km
from keras_mobilenets.app.cli import main
from keras_mobilenets.analysis.papers import PUBLISHED, PUBLISHED_PEAK_BYTES


@pytest.mark.parametrize("row", PUBLISHED,
                         ids=[f"{r.arch}-{r.alpha}-{r.resolution}{'-min' if r.minimalistic else ''}"
                              for r in PUBLISHED])
def test_macs_and_params_match_the_papers(row):
    model = km.create_model(row.arch, alpha=row.alpha, minimalistic=row.minimalistic,
                            input_shape=(row.resolution, row.resolution, 3))
    report = km.profile(model)
    assert row.agrees(report.macs, report.kernel_params), (report.macs, report.kernel_params, row)
    assert report.params == model.count_params() > report.kernel_params


def test_agreement_is_to_the_papers_precision():
    row = PUBLISHED[0]  # V1 1.0 224: 569M MACs, 4.2M params
    assert row.agrees(569.9e6, 4.29e6) and row.agrees(568.1e6, 4.11e6)
    assert not row.agrees(570.1e6, 4.2e6) and not row.agrees(569e6, 4.31e6)


def test_v3_small_macs_to_a_tenth():
    report = km.profile(km.create_model("v3-small", input_shape=(224, 224, 3)))
    assert round(report.macs / 1e6, 1) == 56.5


@pytest.mark.parametrize("arch,paper", PUBLISHED_PEAK_BYTES)
def test_peak_activation_memory_matches_v2_paper(arch, paper):
    assert km.profile(km.create_model(arch, input_shape=(224, 224, 3))).peak_activation_bytes == paper


def test_v1_params_are_the_papers_4_2_million():
    model = km.create_model("v1", input_shape=(224, 224, 3))
    kernels = sum(int(w.numpy().size) for w in model.weights if "kernel" in w.path)
    assert kernels == km.profile(model).kernel_params == 4_209_088


def test_profile_blocks_add_up():
    report = km.profile(km.create_model("v3-large", alpha=0.75, input_shape=(192, 192, 3)))
    assert sum(b.params for b in report.blocks) == report.params
    assert report.blocks[-1].kind == "classifier"
    assert sum(b.kind == "inverted_residual" for b in report.blocks) == 15


def test_profile_needs_a_fixed_input_size():
    with pytest.raises(ValueError, match="input_shape"):
        km.profile(km.create_model("v2", include_top=False))


def test_cli_profile_prints_blocks_and_totals(capsys):
    assert main(["profile", "--arch", "v2", "--alpha", "0.5", "--resolution", "160"]) == 0
    out = capsys.readouterr().out
    assert "block_16_project_BN" in out and "total params 1,987,224" in out
    expected = km.profile(km.create_model("v2", alpha=0.5, input_shape=(160, 160, 3))).macs
    assert f"MACs {expected:,}" in out


def test_cli_reports_bad_arguments(capsys):
    assert main(["profile", "--arch", "v2", "--alpha", "-1"]) == 2
    assert "alpha=-1.0" in capsys.readouterr().err
