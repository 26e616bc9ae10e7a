"""fit() fed by our JPEG-folder pipeline vs fit() on the same images already decoded in memory.

Same model, same run, interleaved repeats; the ratio pipeline/in-memory images per second should be
>= 0.9 (the input pipeline is never the bottleneck). Also the pipeline alone in images per second.
The JPEG folder is made from the real photos scikit-learn and scikit-image ship (random crops, so
every file differs), written once into a temporary folder.

    python benchmarks/bench_pipeline.py --images 512 --repeats 3
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from common import photos  # noqa: E402


def write_jpeg_folder(root, count, size=288, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    sources = photos()
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
    for i in range(count):
        image = sources[i % len(sources)]
        side = int(rng.integers(size, min(image.shape[:2]) + 1))
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        crop = Image.fromarray(image[top:top + side, left:left + side]).resize((size, size))
        crop.save(os.path.join(root, f"class_{i % classes}", f"{i:05d}.jpg"), quality=90)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import tensorflow as tf

    from keras_mobilenets.data import pipelines as kd
    from keras_mobilenets.train import recipe as kt

    root = write_jpeg_folder(os.path.join(tempfile.mkdtemp(), "jpegs"), args.images)
    data = kd.from_folder(root, args.size, batch_size=args.batch_size, validation_split=0.0, test_split=0.0)
    n = data.counts["train"]
    eval_pipeline = kd.from_files(*kd.scan_folder(root)[:2], None, args.size, args.batch_size)
    pixels = np.concatenate([x.numpy() for x, _ in eval_pipeline])
    labels = np.concatenate([y.numpy() for _, y in eval_pipeline])
    onehot = tf.one_hot(labels, 4).numpy()

    model = kt.create_classifier("v2", 4, alpha=args.alpha, image_size=args.size)
    kt.set_trainable(model, "all", train_batchnorm=True)
    kt.compile_model(model, 1e-3, steps=10_000)
    train = data.train.map(lambda x, y: (x, tf.one_hot(y, 4)))

    def pipeline_epoch():
        start = time.perf_counter()
        model.fit(train, epochs=1, verbose=0)
        return n / (time.perf_counter() - start)

    def memory_epoch():
        start = time.perf_counter()
        model.fit(pixels, onehot, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
        return n / (time.perf_counter() - start)

    def pipeline_alone():
        start = time.perf_counter()
        count = sum(int(x.shape[0]) for x, _ in data.train)
        return count / (time.perf_counter() - start)

    pipeline_epoch(), memory_epoch(), pipeline_alone()  # warm-up: tracing, first decode
    results = {"pipeline": [], "memory": [], "alone": []}
    for _ in range(args.repeats):
        results["pipeline"].append(pipeline_epoch())
        results["memory"].append(memory_epoch())
        results["alone"].append(pipeline_alone())
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"MobileNetV2 alpha {args.alpha} at {args.size}, batch {args.batch_size}, {n} JPEGs "
          f"({args.repeats} interleaved epochs each, median; {os.cpu_count()} CPU cores)")
    print(f"fit() from the JPEG folder pipeline : {med['pipeline']:8.1f} img/s  {results['pipeline']}")
    print(f"fit() on decoded in-memory arrays   : {med['memory']:8.1f} img/s  {results['memory']}")
    print(f"ratio pipeline / in-memory          : {med['pipeline'] / med['memory']:8.2f}  (goal >= 0.9)")
    print(f"pipeline alone (decode+augment)     : {med['alone']:8.1f} img/s")


if __name__ == "__main__":
    main()
