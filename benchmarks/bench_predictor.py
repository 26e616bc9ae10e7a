"""Predictor (float32 TFLite, int8 TFLite, SavedModel) vs keras.applications' model.predict, same run.

Single-image latency (one JPEG file per call, decode included on both sides) and 100-image throughput,
MobileNetV2 1.0 at 224x224, LiteRT with 2 threads. Goal: the TFLite path >= 5x faster per image.

    python benchmarks/bench_predictor.py [--repeats 30]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mobilenets as km  # noqa: E402
from keras_mobilenets.deploy.serving import decode_image_bytes  # noqa: E402

from common import photos, timed  # noqa: E402

SIZE = 224


def photos_as_files(folder):
    images = photos()
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"photo_{i}.jpg")
        with open(path, "wb") as handle:
            handle.write(tf.io.encode_jpeg(image).numpy())
        paths.append(path)
    return paths


def convert(saved_model, representative=None):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serving_default"])
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter.convert()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench_predictor_")
    files = photos_as_files(folder)
    hundred = [files[i % len(files)] for i in range(100)]

    reference = keras.applications.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3))
    ours = km.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3))
    ours.set_weights(reference.get_weights())
    export = km.export_saved_model(ours, os.path.join(folder, "serving"))
    decoded = np.stack([decode_image_bytes(tf.constant(open(f, "rb").read()), SIZE, SIZE).numpy()
                        for f in files])
    paths = {}
    for name, representative in (("float32", None), ("int8", decoded)):
        start = time.perf_counter()
        paths[name] = os.path.join(folder, f"model_{name}.tflite")
        with open(paths[name], "wb") as handle:
            handle.write(convert(export.path, representative))
        print(f"converted {name} TFLite in {time.perf_counter() - start:.1f}s, "
              f"{os.path.getsize(paths[name]) / 1e6:.2f} MB")

    def reference_predict(image_files):
        images = np.stack([decode_image_bytes(tf.constant(open(f, "rb").read()), SIZE, SIZE).numpy()
                           for f in image_files])
        return reference.predict(images / 127.5 - 1.0, verbose=0)

    rows = [("keras.applications model.predict", reference_predict)]
    for label, path in (("Predictor float32 TFLite", paths["float32"]),
                        ("Predictor int8 TFLite", paths["int8"]),
                        ("Predictor SavedModel", export.path)):
        rows.append((label, km.Predictor(path, num_threads=2).predict))

    expected = reference_predict(files)
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs; MobileNetV2 1.0/224")
    print("| engine | top-1 agreement with Keras | single-image latency (ms) | speed-up per image "
          "| 100-image throughput (img/s) | throughput ratio |")
    print("|---|---|---|---|---|---|")
    base_latency = base_throughput = None
    for label, predict in rows:
        agreement = float((predict(files).argmax(1) == expected.argmax(1)).mean())
        latency = timed(lambda: predict(files[:1]), args.repeats)
        throughput = 100 / timed(lambda: predict(hundred), max(3, args.repeats // 10))
        base_latency = base_latency or latency
        base_throughput = base_throughput or throughput
        print(f"| {label} | {agreement:.2f} | {1e3 * latency:.1f} | {base_latency / latency:.1f}x "
              f"| {throughput:.1f} | {throughput / base_throughput:.2f}x |")


if __name__ == "__main__":
    main()
