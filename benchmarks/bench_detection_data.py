"""The bundled `shapes` detection set and its input pipeline: write time, validation time, what is in it,
and images per second of the training pipeline (SSD crop, flip, photometric jitter, resize) alone.

    python benchmarks/bench_detection_data.py --sizes 160 320 --repeats 3
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common import timed  # noqa: E402


def main():
    from keras_mobilenets.data import datasets, detection

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 320])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = datasets.shapes(os.path.join(tmp, "shapes"), count=args.count)
        written = time.perf_counter() - start
        start = time.perf_counter()
        boxes = detection.read_coco(root)
        checked = time.perf_counter() - start
        sizes = np.concatenate([np.sqrt((r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1]))
                                for r in boxes.records])
        per_image = np.bincount([len(r.classes) for r in boxes.records])
        per_class = np.bincount(np.concatenate([r.classes for r in boxes.records]))
        print(f"shapes: {len(boxes.records)} images, {len(sizes)} boxes written in {written:.1f} s, "
              f"validated in {checked:.2f} s; skipped {len(boxes.skipped)}")
        print("objects per image (0, 1, 2, ...):", per_image.tolist())
        print("boxes per class", dict(zip(boxes.class_names, per_class.tolist())))
        print("box side sqrt(area) as a fraction of the image: min {:.3f} p10 {:.3f} median {:.3f} max {:.3f}"
              .format(sizes.min(), np.percentile(sizes, 10), np.median(sizes), sizes.max()))
        for size in args.sizes:
            data = detection.from_boxes(boxes, size, batch_size=32)
            count = data.counts["train"]

            def epoch():
                for _ in data.train:
                    pass
            seconds = timed(epoch, args.repeats)
            print(f"train pipeline at {size} px: {count / seconds:.0f} images/s ({count} images, "
                  f"median of {args.repeats} epochs)")


if __name__ == "__main__":
    main()
