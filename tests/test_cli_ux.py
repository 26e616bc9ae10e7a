"""The command line as a person meets it (issue 19 items 7-9, issue 13 item 11's --top-k): defaults in
every --help, one `Error:` line with exit code 2 for expected errors (a traceback only with --debug),
and no start-up or callback noise the user did not ask for."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from keras_mobilenets.app import cli
from keras_mobilenets.train import recipe as training

from conftest import TINY


def _subcommands():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_help_shows_every_default_and_every_option_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in _subcommands()[name]._actions:  # argparse has no public list of a parser's options
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        if action.default not in (None, False, "==SUPPRESS==") and "default" not in action.help:
            assert f"(default: {action.default})" in text, f"{name} {action.option_strings}"
    if name == "convert":
        for mode, meaning in cli.CONVERT_MODES.items():
            assert f"{mode} {meaning}" in text
        assert "(default: float32)" in text


def _error(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_expected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, tiny_dir, capsys,
                                                                    monkeypatch):
    err = _error(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")], capsys)
    assert "nope" in err and "does not exist" in err
    err = _error(["train", "--data", tiny_dir, *TINY, "--epochs", "0", "--out", str(tmp_path / "r")], capsys)
    assert "epochs=0" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check of a flag value
        cli.main(["train", "--epochs", "x", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: argument --epochs: invalid int value: 'x'") and err.count("\n") == 1
    err = _error(["evaluate", str(tmp_path / "missing.keras")], capsys)
    assert "missing.keras" in err

    monkeypatch.setenv("KERAS_MOBILENETS_OFFLINE", "1")  # ImageNet weights offline, an empty Keras cache
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    err = _error(["train", "--data", tiny_dir, *TINY, "--weights", "imagenet", "--out", str(tmp_path / "w")],
                 capsys)
    assert "KERAS_MOBILENETS_OFFLINE" in err and "--weights none" in err and "weights=None" in err

    for argv in (["--debug", "train"], ["train", "--debug"]):
        with pytest.raises(ValueError, match="does not exist"):
            cli.main([*argv, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])


def test_predict_top_k_outside_the_classes_is_refused(tmp_path, tiny_dir, capsys):
    model = training.create_classifier("v2", 3, alpha=0.35, image_size=32)
    path = str(tmp_path / "model.keras")
    model.save(path)
    image = os.path.join(tiny_dir, "0", sorted(os.listdir(os.path.join(tiny_dir, "0")))[0])
    for k in ("-1", "0", "4"):
        err = _error(["predict", "--model", path, "--top-k", k, image], capsys)
        assert f"--top-k {k} is not allowed" in err
    assert "--top-k 4 is not allowed: the model has 3 classes (allowed: 1..3)" in err
    assert cli.main(["predict", "--model", path, "--top-k", "3", image]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()[-1].split(", ")) == 3


def test_train_prints_progress_and_no_noise(tmp_path, tiny_dir):
    """Also the MobileNetV4 fine-tuning path through the CLI: `--arch v4-conv-small` (Conv-S at width
    0.35, 32 px, two epochs on 36 digit scans) trains, evaluates and keeps a MobileNetV4 .keras file."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    env["PYTHONPATH"] = os.getcwd()
    args = [*TINY]
    args[args.index("--arch") + 1] = "v4-conv-small"
    out = subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", "train", "--data", tiny_dir, *args,
                          "--epochs", "2", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                         env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    for noise in ("cudart_stub", "cuInit", "cpu_feature_guard", "absl::InitializeLog", "will be ignored",
                  "best.weights.h5", "saving model to"):
        assert noise not in text, noise
    assert "Epoch 1/2" in text and "Epoch 2/2" in text and "/step" in text and "━" in text
    assert "test accuracy:" in out.stdout
    with zipfile.ZipFile(tmp_path / "run" / "best.keras") as saved:
        config = json.loads(saved.read("config.json"))
    assert config["config"]["name"] == "MobileNetV4ConvSmall_classifier"
    with open(tmp_path / "run" / "metrics.json") as handle:
        assert json.load(handle)["epochs"] == 2
