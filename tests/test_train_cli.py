"""`keras-mobilenets train` / `evaluate` as separate processes: the run folder's files, resuming after
SIGKILL, refusing to mix settings, and tf.distribute (MirroredStrategy on two logical CPUs, a two-process
MultiWorkerMirroredStrategy on loopback ports through tf_keras)."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from keras_mobilenets.data.datasets import digits

TINY = ["--arch", "v2", "--alpha", "0.35", "--image-size", "32", "--no-flip", "--min-crop", "0.6",
        "--crop-fraction", "1.0", "--batch-size", "64"]


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return digits(tmp_path_factory.mktemp("cli") / "digits")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _train(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", "train", *args],
                          capture_output=True, text=True, env=_env(), timeout=600, **kwargs)


def _history(run):
    with open(os.path.join(run, "history.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_the_run_and_resumes_after_sigkill(tmp_path, digits_dir):
    run = str(tmp_path / "run")
    args = ["--data", str(digits_dir), *TINY, "--epochs", "3", "--out", run]
    process = subprocess.Popen([sys.executable, "-m", "keras_mobilenets.app.cli", "train", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
    history = os.path.join(run, "history.csv")
    deadline = time.time() + 400
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(history) and len(_history(run)) >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # inside epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    before = _history(run)
    assert 1 <= len(before) < 3 and not os.path.exists(os.path.join(run, "metrics.json"))

    resumed = _train(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Epoch {len(before) + 1}/3" in resumed.stdout and "Epoch 1/3" not in resumed.stdout
    after = _history(run)
    assert [int(r["epoch"]) for r in after] == [0, 1, 2]  # same epoch count, no epoch twice
    assert after[:len(before)] == before

    for name in ("best.keras", "metrics.json", "history.csv", "training_curves.png",
                 "confusion_matrix.png", "labels.txt", "split.json", "config.json"):
        assert os.path.getsize(os.path.join(run, name)) > 0, name
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["epochs"] == 3 and metrics["resumed"] is True
    assert metrics["counts"] == {"train": 1259, "validation": 179, "test": 359}
    best = max(float(r["val_accuracy"]) for r in after)
    assert metrics["best"] == pytest.approx(best) and metrics["validation"]["accuracy"] == pytest.approx(best)

    # evaluate, a new process reading best.keras and the stored test split, agrees with metrics.json
    out = subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", "evaluate",
                          os.path.join(run, "best.keras")], capture_output=True, text=True, env=_env(),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    with open(os.path.join(run, "evaluation_test.json")) as handle:
        evaluation = json.load(handle)
    assert evaluation["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert evaluation["confusion_matrix"] == metrics["test"]["confusion_matrix"]

    # convert uses the run's stored splits: train images calibrate, test images check parity
    tflite_path = str(tmp_path / "model.tflite")
    out = subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", "convert",
                          os.path.join(run, "best.keras"), "--mode", "float32", "--out", tflite_path],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "float32:" in out.stdout and "top-1 agreement 1.0000 on 64 images" in out.stdout
    assert os.path.getsize(tflite_path) > 0

    # quantize: QAT fine-tuning on the run's own splits, then an all-int8 TFLite file that predicts
    qat_dir = str(tmp_path / "qat")
    out = subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", "quantize",
                          os.path.join(run, "best.keras"), "--epochs", "1", "--input-type", "uint8",
                          "--min-agreement", "0.5", "--out", qat_dir],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(qat_dir, "metrics.json")) as handle:
        quantized = json.load(handle)
    assert quantized["split"] == "test" and quantized["images"] == 359 and quantized["qat_epochs"] == 1
    assert quantized["float_keras_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    # (a 3-epoch model has near-tied classes: agreement is loose, accuracy is what must hold)
    assert quantized["tflite"]["non_int8_ops"] == [] and quantized["tflite"]["top1_agreement"] >= 0.5
    assert abs(quantized["int8_tflite_accuracy"] - quantized["qat_keras_accuracy"]) <= 0.05
    assert len(_history(qat_dir)) == 1 and "int8 TFLite" in out.stdout
    image = os.path.join(digits_dir, "7", sorted(os.listdir(os.path.join(digits_dir, "7")))[0])
    out = subprocess.run([sys.executable, "-m", "keras_mobilenets.app.cli", "predict", "--model",
                          os.path.join(qat_dir, "model_int8.tflite"), "--labels", os.path.join(run, "labels.txt"),
                          "--top-k", "3", image], capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith(image + ": ") and len(line.split(", ")) == 3

    # a finished run is reported, not retrained; other settings in the same folder are refused
    again = _train(args)
    assert again.returncode == 0 and "already holds this finished run" in again.stdout
    assert _history(run) == after
    other = _train(["--data", str(digits_dir), *TINY, "--epochs", "4", "--out", run])
    assert other.returncode == 2 and "epochs" in other.stderr and "--overwrite" in other.stderr


def test_train_refuses_a_folder_that_is_not_a_run_and_bad_data(tmp_path, digits_dir):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    taken = _train(["--data", str(digits_dir), *TINY, "--epochs", "1", "--out", str(tmp_path / "taken")])
    assert taken.returncode == 2 and "not a keras-mobilenets run folder" in taken.stderr
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"
    bad = tmp_path / "bad"
    for name in ("a", "b"):
        (bad / name).mkdir(parents=True)
        (bad / name / "x.jpg").write_bytes(b"")
    failed = _train(["--data", str(bad), *TINY, "--epochs", "1", "--strict", "--out", str(tmp_path / "r")])
    assert failed.returncode == 2 and "x.jpg" in failed.stderr and "empty file" in failed.stderr


MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_mobilenets.app.runs import RunConfig, train_run
from keras_mobilenets.train.recipe import Recipe
config = RunConfig(data=sys.argv[1], arch="v2", alpha=0.35, image_size=32, batch_size=64, flip=False,
                   crop_scale=(0.6, 1.0), crop_fraction=1.0, bn_momentum=0.9, strategy="mirrored",
                   recipe=Recipe(epochs=3, freeze_backbone=False, learning_rate=5e-3, tensorboard=False))
result = train_run(sys.argv[2], config, verbose=0)
print("replicas", result.metrics["replicas"])
"""


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, digits_dir):
    run = str(tmp_path / "mirrored")
    out = subprocess.run([sys.executable, "-c", MIRRORED, str(digits_dir), run], capture_output=True,
                         text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replicas 2" in out.stdout
    rows = _history(run)
    assert len(rows) == 3 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["replicas"] == 2 and float(rows[-1]["accuracy"]) > float(rows[0]["accuracy"])


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_training_in_two_processes_returns_a_keras3_model(tmp_path, digits_dir):
    run = str(tmp_path / "multi")
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    args = [sys.executable, "-m", "keras_mobilenets.app.cli", "train", "--data", str(digits_dir), *TINY,
            "--epochs", "2", "--strategy", "multi-worker", "--out", run]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=_env(TF_CONFIG=tf_config)))
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    # synchronous all-reduce: both workers end with the same weights
    with h5py.File(os.path.join(run, "stage1.h5")) as chief, \
            h5py.File(os.path.join(run, ".worker-1", "stage1.h5")) as worker:
        names = []
        chief.visit(lambda n: names.append(n) if isinstance(chief[n], h5py.Dataset) else None)
        assert len(names) > 100
        for name in names:
            np.testing.assert_array_equal(chief[name][()], worker[name][()], err_msg=name)
    model = keras.saving.load_model(os.path.join(run, "best.keras"))  # handed back as Keras 3
    assert type(model).__module__.startswith("keras")
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["replicas"] == 2 and metrics["epochs"] == 2
    assert len(_history(run)) == 2


def test_plain_train_command_on_a_folder_of_small_photos(tmp_path):
    """`train --data DIR --out RUN` and nothing else, on 25x25 crops of two real photos: the run picks its
    size, width, epochs and crops from the images, says so in one line before the first epoch, and learns.
    (Before: V2 1.0 at 224 px, 10 epochs, ImageNet crops -- chance accuracy on such a folder; then 58% with
    the automatic choices until BatchNorm was recalibrated before each validation; then 50-67% on some seeds
    while the first epoch with 100% on the 6 validation images was kept, until ties went to the lower loss.)"""
    from photo_folders import photo_folder

    folder = photo_folder(tmp_path / "photos", ("china", "flower"), 25, 30)
    run = str(tmp_path / "run")
    out = _train(["--data", folder, "--out", run])
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("auto choices"))
    assert "60 images of about 25 px (42 for training)" in line
    for choice in ("image size 64 px", "width (alpha) 0.35", "60 epochs", "training crops of 60%-100%",
                   "horizontal flips"):
        assert choice in line, line
    assert out.stdout.index(line) < out.stdout.index("Epoch 1/60")
    with open(os.path.join(run, "config.json")) as handle:
        config = json.load(handle)
    assert (config["image_size"], config["alpha"], config["recipe"]["epochs"]) == (64, 0.35, 60)
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    # seeds 0-5 gave 11 or 12 of 12 (BENCHMARKS.md); one image of margin for another CPU's numerics
    assert metrics["test"]["images"] == 12 and metrics["test"]["accuracy"] >= 10 / 12, metrics["test"]
    assert metrics["warning"] is None and "near chance" not in out.stdout

    # explicit flags win over the automatic choices, and only what was left to "auto" is listed
    flagged = _train(["--data", folder, "--image-size", "32", "--alpha", "0.5", "--epochs", "1",
                      "--out", str(tmp_path / "flagged")])
    assert flagged.returncode == 0, flagged.stderr[-3000:]
    line = next(line for line in flagged.stdout.splitlines() if line.startswith("auto choices"))
    assert "image size" not in line and "alpha" not in line and "epochs" not in line and "crops" in line
    with open(os.path.join(tmp_path / "flagged", "config.json")) as handle:
        config = json.load(handle)
    assert (config["image_size"], config["alpha"], config["recipe"]["epochs"]) == (32, 0.5, 1)


def test_plain_digits_command_is_the_benchmarked_recipe():
    """`train --data digits` (BENCHMARKS.md: three seeds >= 97%) resolves to V2 0.35 at 64 px, 50 epochs,
    crops of 60-100%, whole-image evaluation, no flips, from scratch at a 5e-3 peak learning rate."""
    from keras_mobilenets.app.cli import build_parser
    from keras_mobilenets.app.runs import RunConfig, resolve

    args = build_parser().parse_args(["train", "--data", "digits", "--out", "x"])
    assert (args.image_size, args.alpha, args.epochs, args.min_crop) == ("auto",) * 4
    config, chosen = resolve(RunConfig(data="digits"))
    assert (config.image_size, config.alpha, config.recipe.epochs) == (64, 0.35, 50)
    assert (config.crop_scale, config.crop_fraction, config.flip, config.bn_momentum) == ((0.6, 1.0), 1.0, False, 0.9)
    assert not config.recipe.freeze_backbone and config.recipe.learning_rate == 5e-3
    assert chosen["images"] == 1797 and chosen["side"] == 8


def test_train_output_lists_skipped_files_and_says_near_chance(tmp_path, capsys, monkeypatch):
    """Bad files are named before the first epoch; a result at chance level says so with what to try;
    training_curves.png is titled with the architecture and marks the epoch whose weights were kept."""
    from PIL import Image
    from photo_folders import photo

    from keras_mobilenets.app import cli
    from keras_mobilenets.train import reports
    from keras_mobilenets.train import recipe as training

    # two "classes" of one photo crop, each file one pixel apart (no two files alike, nothing to learn)
    folder = tmp_path / "same"
    crop = photo("china")[100:140, 200:240]
    for index in range(80):
        name = "ab"[index % 2]
        (folder / name).mkdir(parents=True, exist_ok=True)
        pixels = crop.copy()
        pixels[index // 40, index % 40] += 1
        Image.fromarray(pixels).save(folder / name / f"{index:02d}.png")
    (folder / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / "b" / "empty.png").write_bytes(b"")
    plotted = []

    def recording(rows, path, **kwargs):
        plotted.append(kwargs)
        return plot_history(rows, path, **kwargs)

    plot_history = reports.plot_history
    monkeypatch.setattr(reports, "plot_history", recording)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(folder), *TINY, "--epochs", "3", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    first_epoch = out.index("Epoch 1/3")
    for name in ("broken.jpg", "empty.png"):
        skipped = next(line for line in out.splitlines() if line.startswith("skipped") and name in line)
        assert out.index(skipped) < first_epoch
    assert "warning: test accuracy" in out and "near chance (50.00%" in out and "--epochs" in out
    with open(run / "metrics.json") as handle:
        metrics = json.load(handle)
    assert "near chance" in metrics["warning"] and len(metrics["skipped"]) == 2

    assert plotted == [{"title": "MobileNetV2 0.35, 32 px, from scratch", "best_epoch": metrics["best_epoch"]}]
    unmarked = tmp_path / "unmarked.png"
    plot_history(training.read_history(run / "history.csv"), unmarked, title="MobileNetV2 0.35, 32 px, from scratch")
    assert (run / "training_curves.png").read_bytes() != unmarked.read_bytes()
