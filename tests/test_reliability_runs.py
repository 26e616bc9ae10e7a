"""Run folders survive kills, flags and edits (issue 13 items 1, 2, 4, 9): kill-safe backups with a
fallback, --overwrite only replaces what keras-mobilenets wrote, one trainer per folder, and every
run-folder file checked when it is read back."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from keras_mobilenets.app import cli
from keras_mobilenets.train import recipe as training
from keras_mobilenets import data as kd
from keras_mobilenets.app.runs import (LEGACY_CONFIG_KEYS, LOCK, RunConfig, RunLockedError, _write_marker,
                                   quantize_run, resolve, run_lock, train_run)

from conftest import TINY


def _config(data, **recipe):
    return RunConfig(data=data, arch="v2", alpha=0.35, image_size=32, batch_size=16, flip=False,
                     crop_scale=(0.6, 1.0), crop_fraction=1.0,
                     recipe=training.Recipe(freeze_backbone=False, tensorboard=False, **recipe))


def _our_run(folder, config):
    """A run folder as train_run leaves it before its first epoch: marker and config.json (with "auto" chosen)."""
    os.makedirs(folder)
    _write_marker(str(folder), "train")
    (folder / "config.json").write_text(json.dumps(resolve(config)[0].to_json()))


class _Killed(Exception):
    pass


class _KillAfter(training.keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed()


def test_truncated_newest_backup_resumes_from_the_one_before(tmp_path, tiny_dir):
    data = kd.from_folder(tiny_dir, 32, batch_size=16, validation_split=0.1, test_split=0.0,
                          augmentation=None)
    recipe = training.Recipe(epochs=3, freeze_backbone=False, tensorboard=False)
    out = str(tmp_path / "fit")

    def model():
        return training.create_classifier("v2", 3, alpha=0.35, image_size=32)

    with pytest.raises(_Killed):  # stopped after the second epoch's backup was written
        training.fit(model(), data, out, recipe, verbose=0, callbacks=[_KillAfter(1)])
    backups = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(out, "backup")) for f in files
               if f.endswith(".weights.h5")]
    newest = max(backups, key=os.path.getmtime)
    with open(newest, "r+b") as handle:  # what a SIGKILL in the middle of the write leaves
        handle.truncate(os.path.getsize(newest) // 3)

    with pytest.warns(UserWarning, match="does not read; resumed from"):
        result = training.fit(model(), data, out, recipe, verbose=0)
    with open(os.path.join(out, "history.csv")) as handle:
        epochs = [int(line.split(",")[0]) for line in handle.read().splitlines()[1:]]
    assert epochs == [0, 1, 1, 2]  # epoch 2's backup was cut: resumed after epoch 1, not from epoch 0
    assert result.epochs_run == 3 and not os.path.exists(os.path.join(out, "backup", "stage1"))


def test_overwrite_never_empties_a_folder_we_did_not_write(tmp_path, tiny_dir, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "config.json").write_text('{"project": "my thesis"}')
    (thesis / "thesis.tex").write_text("\\documentclass{article}")
    with pytest.raises(FileExistsError, match=r"overwrite=True"):
        train_run(str(thesis), _config(tiny_dir), overwrite=True)
    assert cli.main(["train", "--data", tiny_dir, *TINY, "--out", str(thesis), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "--overwrite" in err and err.count("\n") == 1
    with pytest.raises(FileExistsError, match="not a keras-mobilenets run folder .*quantize run"):
        quantize_run(str(tmp_path / "missing.keras"), str(thesis), overwrite=True)
    assert sorted(os.listdir(thesis)) == ["config.json", "thesis.tex"]
    assert (thesis / "thesis.tex").read_text() == "\\documentclass{article}"


def test_overwrite_checks_every_input_before_deleting(tmp_path, tiny_dir):
    run = tmp_path / "run"
    _our_run(run, _config(tiny_dir, epochs=2))
    (run / "history.csv").write_text("epoch,accuracy\n0,0.5\n")
    with pytest.raises(kd.DataError, match="does not exist"):  # the data folder is gone: nothing deleted
        train_run(str(run), _config(str(tmp_path / "gone")), overwrite=True)
    assert (run / "history.csv").read_text() == "epoch,accuracy\n0,0.5\n"

    qat = tmp_path / "qat"
    qat.mkdir()
    (qat / "quantize.json").write_text(json.dumps(dict.fromkeys(
        ["model", "data", "epochs", "learning_rate", "per_channel"], 1)))  # a quantize run from before
    (qat / "history.csv").write_text("epoch,accuracy\n0,0.5\n")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        quantize_run(str(tmp_path / "missing.keras"), str(qat), overwrite=True)
    assert sorted(os.listdir(qat)) == ["history.csv", "quantize.json"]


def test_a_run_from_before_the_marker_is_still_ours(tmp_path, tiny_dir):
    run = tmp_path / "old"
    run.mkdir()
    payload = {k: v for k, v in _config(tiny_dir).to_json().items() if k in LEGACY_CONFIG_KEYS}
    (run / "config.json").write_text(json.dumps(payload))
    # recognised by its exact keys: refused for its settings, not as a stranger's folder
    with pytest.raises(ValueError, match="holds a run with other settings"):
        train_run(str(run), _config(tiny_dir, epochs=5))
    (run / "config.json").write_text(json.dumps({**payload, "extra": 1}))
    with pytest.raises(FileExistsError, match="not a keras-mobilenets run folder"):
        train_run(str(run), _config(tiny_dir), overwrite=True)


HOLDER = """
import sys, time
from keras_mobilenets.app.runs import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(300)
"""


def test_a_second_trainer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, tiny_dir, capsys):
    out = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, out], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["train", "--data", tiny_dir, *TINY, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and out in err and f"pid {holder.pid}" in err
        with pytest.raises(RunLockedError):
            with run_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(os.path.join(out, LOCK))  # a kill leaves the file: the next trainer takes it over
    with run_lock(out):
        with open(os.path.join(out, LOCK)) as handle:
            assert json.load(handle)["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(out, LOCK))


def test_truncated_config_json_names_the_file(tmp_path, tiny_dir, capsys):
    run = tmp_path / "run"
    _our_run(run, _config(tiny_dir))
    (run / "config.json").write_text((run / "config.json").read_text()[:40])
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON.*--overwrite"):
        train_run(str(run), _config(tiny_dir))
    assert cli.main(["train", "--data", tiny_dir, *TINY, "--out", str(run)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_truncated_metrics_json_names_the_file(tmp_path, tiny_dir):
    run = tmp_path / "run"
    _our_run(run, _config(tiny_dir))
    (run / "metrics.json").write_text('{"epochs": 3, "best": 0.')
    with pytest.raises(ValueError, match=r"metrics\.json is not valid JSON"):
        train_run(str(run), _config(tiny_dir))


def test_truncated_state_json_names_the_file(tmp_path):
    (tmp_path / "state.json").write_text('{"stage1": "do')
    with pytest.raises(ValueError, match=r"state\.json is not valid JSON"):
        training._state(str(tmp_path))
    (tmp_path / "state.json").write_text('{"stage1": 3}')
    with pytest.raises(ValueError, match=r"state\.json holds"):
        training._state(str(tmp_path))


def test_cut_short_history_row_names_the_file_and_line(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,accuracy,loss\n0,0.5,1.2\n1,0.6")
    with pytest.raises(ValueError, match=r"history\.csv line 3 is cut short"):
        training.read_history(str(path))
    path.write_text("epoch,accuracy,loss\n0,0.5,1.2\n1,0.6,1.")
    assert [r["loss"] for r in training.read_history(str(path))] == [1.2, 1.0]  # a short number still reads
    path.write_text("epoch,accuracy,loss\n0,0.5,1.2\n1,0.6,x")
    with pytest.raises(ValueError, match=r"history\.csv line 3"):
        training.read_history(str(path))


def test_best_checkpoint_is_renamed_into_place_so_a_cut_write_keeps_the_old_one(tmp_path):
    """A kill while ModelCheckpoint wrote best.weights.h5 in place left a truncated file that every re-run
    then failed to restore. The new file is written under a temporary name: a write cut short (here a
    folder where the temporary file must go) leaves the previous best whole, and a cut-short temporary
    file left by a kill is never renamed into place."""
    import keras

    model = training.create_classifier("v2", 3, alpha=0.35, image_size=32)
    best = tmp_path / "best.weights.h5"
    checkpoint = training.AtomicModelCheckpoint(str(best), monitor="val_accuracy", mode="max",
                                                save_best_only=True, save_weights_only=True)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.5})
    saved = [np.array(w) for w in model.weights]
    model.get_layer("head_logits").kernel.assign(np.zeros(model.get_layer("head_logits").kernel.shape))
    (tmp_path / "best.tmp.weights.h5").mkdir()  # the next write cannot complete
    with pytest.raises(OSError):
        checkpoint.on_epoch_end(1, {"val_accuracy": 0.6})
    (tmp_path / "best.tmp.weights.h5").rmdir()
    (tmp_path / "best.tmp.weights.h5").write_bytes(b"\x89HDF\r\n")  # a kill's leftover, then no improvement
    checkpoint.on_epoch_end(2, {"val_accuracy": 0.4})
    copy = training.create_classifier("v2", 3, alpha=0.35, image_size=32)
    copy.load_weights(str(best))  # the first best, whole
    for expected, got in zip(saved, copy.weights):
        np.testing.assert_array_equal(expected, np.array(got))
    assert not (tmp_path / "best.tmp.weights.h5").exists()
    checkpoint.on_epoch_end(3, {"val_accuracy": 0.9})  # an improvement replaces it
    copy.load_weights(str(best))
    assert not np.any(np.array(copy.get_layer("head_logits").kernel))
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint)


def test_best_checkpoint_breaks_accuracy_ties_by_the_lower_loss(tmp_path):
    """On 6 validation images the accuracy reached 100% by epoch 4 of 60 and, by accuracy alone, that
    least-trained epoch was kept (test accuracy 50-58% over seeds in the plain photo-folder run). Equal
    accuracy with a lower loss is better; with a higher loss it is not; a resumed run starts from the
    best row of its history."""
    model = training.create_classifier("v2", 3, alpha=0.35, image_size=32)
    best = tmp_path / "best.weights.h5"
    kernel = model.get_layer("head_logits").kernel

    def epoch(checkpoint, number, accuracy, loss, value):
        kernel.assign(np.full(kernel.shape, value, "float32"))
        checkpoint.on_epoch_end(number, {"val_accuracy": accuracy, "val_loss": loss})

    def kept():
        copy = training.create_classifier("v2", 3, alpha=0.35, image_size=32)
        copy.load_weights(str(best))
        return float(np.array(copy.get_layer("head_logits").kernel)[0, 0])

    settings = dict(monitor="val_accuracy", mode="max", save_best_only=True, save_weights_only=True)
    checkpoint = training.AtomicModelCheckpoint(str(best), **settings)
    checkpoint.set_model(model)
    epoch(checkpoint, 0, 1.0, 0.6, 1.0)
    epoch(checkpoint, 1, 1.0, 0.2, 2.0)  # same accuracy, lower loss: kept
    epoch(checkpoint, 2, 1.0, 0.3, 3.0)  # same accuracy, higher loss: not kept
    epoch(checkpoint, 3, 0.8, 0.01, 4.0)  # lower accuracy, whatever the loss: not kept
    assert kept() == 2.0
    rows = [{"epoch": 0, "val_accuracy": 1.0, "val_loss": 0.6}, {"epoch": 1, "val_accuracy": 1.0, "val_loss": 0.2},
            {"epoch": 2, "val_accuracy": 1.0, "val_loss": 0.3}]
    assert training.best_row(rows, "val_accuracy")["epoch"] == 1
    resumed = training.AtomicModelCheckpoint(str(best), initial_row=rows[1], **settings)
    resumed.set_model(model)
    epoch(resumed, 3, 1.0, 0.25, 5.0)  # worse than the history's best: the file stays
    assert kept() == 2.0
    epoch(resumed, 4, 1.0, 0.1, 6.0)
    assert kept() == 6.0
