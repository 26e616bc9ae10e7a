"""A training run as a user's separate process: its environment, its history.csv rows, and a SIGKILL
inside epoch 2 (after epoch 1's backup is written), for the resume tests of every task."""

import csv
import os
import signal
import subprocess
import sys
import time


def cli_env():
    """The environment of a `keras-mobilenets` child process (quiet TF, unbuffered, no cluster config)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    return env


def history(run):
    with open(os.path.join(run, "history.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def kill_inside_epoch_two(args, run, timeout=400):
    """Start `keras-mobilenets *args`, SIGKILL it once epoch 1's backup is written (inside epoch 2), check
    that the kill ended it and left no metrics.json, and return the history rows it left."""
    process = subprocess.Popen([sys.executable, "-m", "keras_mobilenets.app.cli", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
    backups, deadline = os.path.join(run, "backup", "stage1"), time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if os.path.isdir(backups) and any(n.startswith("epoch-") for n in os.listdir(backups)):
            break  # epoch 1 is done: its checkpoint, history row and backup are written, in that order
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run, "metrics.json"))
    return history(run)
