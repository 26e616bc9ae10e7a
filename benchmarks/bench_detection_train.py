"""The detection main job: `keras-mobilenets train --task detection --data shapes` (the plain command, every
choice automatic), timed from the command's start to its end, then the run's test-split COCO numbers.

    python benchmarks/bench_detection_train.py --out runs/bench-shapes [--overwrite]

Prints the wall time, the auto choices the command printed, and metrics.json's test mAP@.5,
mAP@[.5:.95] and AP@.5 per class (the goal of the detection issue: mAP@.5 >= 0.8 within 15 minutes).
"""

import argparse
import json
import os
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-shapes", help="the run folder")
    parser.add_argument("--overwrite", action="store_true", help="train again in a finished --out")
    parser.add_argument("extra", nargs="*", help="extra flags for `train` (none: the plain command)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "keras_mobilenets.app.cli", "train", "--task", "detection", "--data",
               "shapes", "--out", args.out, *(["--overwrite"] if args.overwrite else []), *args.extra]
    print("command:", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"))
    seconds = time.perf_counter() - started
    if result.returncode:
        sys.exit(result.returncode)
    with open(os.path.join(args.out, "metrics.json")) as handle:
        metrics = json.load(handle)
    test = metrics["test"]
    print(f"wall time {seconds / 60:.1f} min ({seconds:.0f} s); {metrics['epochs']} epochs, best epoch "
          f"{metrics['best_epoch']} (validation mAP@.5 {metrics['best']:.3f})")
    print(f"test: mAP@.5 {test['map_50']:.3f}, mAP@[.5:.95] {test['map']:.3f}, AP@.5 per class "
          + ", ".join(f"{k} {v:.3f}" for k, v in test["per_class_ap_50"].items() if v is not None)
          + f" ({test['num_images']} images, {test['num_boxes']} boxes)")


if __name__ == "__main__":
    main()
