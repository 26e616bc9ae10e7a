"""The README runs: every python block in order in one namespace, every `keras-mobilenets` command line
through the CLI's own parser (the cheap ones for real), and the test command is the one CI runs."""

import re
import shlex
from pathlib import Path

import keras
import numpy as np

from conftest import randomize_batchnorm, save_legacy_h5
from keras_mobilenets.app.cli import build_parser, main
from keras_mobilenets.nets.registry import BLOCKS
from keras_mobilenets.nets.weights import imagenet_file

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """The first block is `MobileNetV2(alpha=0.5)` with ImageNet weights: the official file name is put in a
    Keras cache of our own (keras.applications' random weights), so the block runs offline and must load it."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    reference = randomize_batchnorm(keras.applications.MobileNetV2(alpha=0.5, weights=None))
    save_legacy_h5(reference, tmp_path / "models" / imagenet_file("v2", 0.5, 224, True).name)
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 10 and "MobileNetV2(alpha=0.5)" in blocks[0]
    namespace = {}
    try:
        for number, code in enumerate(blocks, 1):
            exec(compile(code, f"README.md python block {number}", "exec"), namespace)
            if number == 1:
                for ours, theirs in zip(namespace["model"].weights, reference.weights):
                    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    finally:
        BLOCKS.pop("readme_fused_conv", None)


def _commands():
    """Every `keras-mobilenets ...` line of the README's bash blocks, continuation lines joined."""
    text = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S)).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines()
            if line.strip().startswith("keras-mobilenets ")]


def test_readme_commands_parse_and_the_cheap_ones_run(capsys):
    """A flag or choice the CLI does not have fails here (argparse exits). Training, quantizing, converting
    and predicting need a trained run and run in tests/test_train_cli.py with small settings."""
    commands = _commands()
    assert {argv[1] for argv in commands} >= {"train", "evaluate", "quantize", "convert", "export", "predict",
                                              "profile", "reproduce"}
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv[1:])
    for argv in commands:
        if argv[1] in ("profile", "reproduce"):
            assert main(argv[1:]) == 0, argv
    assert "all published numbers reproduced" in capsys.readouterr().out


def test_readme_test_command_is_what_ci_runs():
    command = re.search(r'`pip install -e "\.\[test\]" && (python -m pytest[^`]*)`', README).group(1)
    assert command in (ROOT / ".ci" / "run").read_text()
