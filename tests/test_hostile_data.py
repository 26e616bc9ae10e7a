"""Data folders as a hostile or unlucky user leaves them: pipes, devices, links out, odd names, copies."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_mobilenets import data as kd


def _images(folder, count, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


# Runs in its own process with a memory cap and a timeout: on the code before the fix the pipe hangs
# and /dev/zero reads until memory runs out, which must fail this test, not hang or starve CI.
CHECK = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))
from keras_mobilenets import data as kd
data = kd.from_folder(sys.argv[1], 32, batch_size=4)
print(json.dumps({"skipped": {b.path: b.reason for b in data.skipped},
                  "files": sorted(f for split in data.files.values() for f in split)}))
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "data"
    _images(folder / "cat", 4, 0)
    _images(folder / "dog", 4, 1)
    _images(root / "elsewhere", 1, 2)
    os.mkfifo(folder / "cat" / "pipe.png")
    os.symlink("/dev/zero", folder / "dog" / "zero.png")
    os.symlink(root / "elsewhere" / "img0.png", folder / "cat" / "outside.png")
    os.symlink(folder / "dog" / "img0.png", folder / "cat" / "inside_link.png")  # stays in the folder
    with open(folder / "dog" / "huge.png", "wb") as handle:  # sparse: big on paper, nothing on disk
        handle.truncate(kd.MAX_FILE_BYTES + 1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run([sys.executable, "-c", CHECK, str(folder)], capture_output=True, text=True,
                         timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return folder, json.loads(run.stdout.strip().splitlines()[-1])


def test_named_pipe_is_skipped_without_opening_it(hostile):
    folder, report = hostile
    assert "named pipe" in report["skipped"][str(folder / "cat" / "pipe.png")]


def test_symlink_to_dev_zero_is_skipped(hostile):
    folder, report = hostile
    reason = report["skipped"][str(folder / "dog" / "zero.png")]
    assert "resolves outside the data folder (to /dev/zero)" in reason  # and never opened


def test_file_over_the_byte_cap_is_skipped(hostile):
    folder, report = hostile
    assert f"larger than {kd.MAX_FILE_BYTES} bytes" in report["skipped"][str(folder / "dog" / "huge.png")]


def test_symlink_out_of_the_folder_is_reported_not_trained_on(hostile):
    folder, report = hostile
    reason = report["skipped"][str(folder / "cat" / "outside.png")]
    assert "resolves outside the data folder" in reason and "follow_links=True" in reason
    assert str(folder / "cat" / "outside.png") not in report["files"]
    assert str(folder / "cat" / "inside_link.png") in report["files"]  # a link inside is fine
    assert len(report["files"]) == 9


def test_follow_links_allows_links_out(tmp_path):
    folder = tmp_path / "data"
    _images(folder / "cat", 3, 0)
    _images(folder / "dog", 3, 1)
    _images(tmp_path / "elsewhere", 1, 2)
    os.symlink(tmp_path / "elsewhere" / "img0.png", folder / "cat" / "outside.png")
    os.symlink("/dev/zero", folder / "dog" / "zero.png")
    files = kd.scan_folder(folder)[0]
    assert [b.path for b in kd.validate_files(files, root=folder)] == [
        str(folder / "cat" / "outside.png"), str(folder / "dog" / "zero.png")]
    followed = kd.validate_files(files, root=folder, follow_links=True)  # the device is still not read
    assert [(b.path, b.reason.split(";")[0]) for b in followed] == [
        (str(folder / "dog" / "zero.png"), "not a regular file (a character device)")]


@pytest.mark.parametrize("name,problem", [("x\ny", "holds a line break"), ("a\rb", "holds a line break"),
                                          (" ", "is only whitespace")])
def test_class_folder_names_that_cannot_round_trip_are_refused(tmp_path, name, problem):
    _images(tmp_path / "data" / "cat", 2, 0)
    _images(tmp_path / "data" / name, 2, 1)
    with pytest.raises(kd.DataError, match=f"class folder name {name!r} {problem}".replace("\\", "\\\\")):
        kd.scan_folder(tmp_path / "data")


def test_duplicates_stay_in_one_split(tmp_path):
    folder = tmp_path / "data"
    for label, seed in (("cat", 0), ("dog", 1)):
        _images(folder / label, 12, seed)
    copies = {}
    for label in ("cat", "dog"):
        for i in range(3):  # images 0-2 of each class get 1, 2 and 3 copies under other names
            for c in range(i + 1):
                shutil.copy(folder / label / f"img{i}.png", folder / label / f"copy{i}_{c}.png")
                copies.setdefault(str(folder / label / f"img{i}.png"), []).append(
                    str(folder / label / f"copy{i}_{c}.png"))
    for seed in range(6):
        data = kd.from_folder(folder, 32, batch_size=4, validation_split=0.25, test_split=0.25, seed=seed)
        where = {f: split for split, files in data.files.items() for f in files}
        for original, names in copies.items():
            assert {where[f] for f in [original, *names]} == {where[original]}, (seed, original)
        assert sum(len(group) - 1 for group in data.duplicates) == 12 and len(data.duplicates) == 6
        assert "12 duplicate image(s)" in data.report()
        for split in ("train", "validation", "test"):  # stratified still: every class in every split
            assert {os.path.basename(os.path.dirname(f)) for f in data.files[split]} == {"cat", "dog"}


def test_groups_of_distinct_keys_split_like_indices():
    labels = np.random.default_rng(0).integers(0, 3, 50)
    plain = kd.split_indices(labels, (0.2, 0.1), seed=4)
    grouped = kd.split_indices(labels, (0.2, 0.1), seed=4, groups=[f"h{i}" for i in range(50)])
    assert [p.tolist() for p in plain] == [g.tolist() for g in grouped]
