"""LR-ASPP as TFLite at 512x512: float32 and int8 (PTQ, and QAT-form with calibrated ranges) latency vs the
Keras model's compiled call, file sizes, and how far the int8 masks move from the float ones.

The weights do not change the speed: the models are built untrained, their BatchNorm statistics set from
the bundled `shapes` scenes (so int8 calibration sees real activations), and every file is converted from
the same model. Batch 1, LiteRT with 2 threads (XNNPACK), timed round-robin in one run: read the ratios.
Pixel agreement is the fraction of pixels whose int8 class equals the float32 file's on held-out scenes.
For mIoU of a trained model against float, use `keras-mobilenets convert RUN/best.keras --mode int8`.

    python benchmarks/bench_segmentation_tflite.py --archs v3-small v2 --size 512
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench_tflite import interleaved_ms, litert_call  # noqa: E402


def scenes(size, count):
    """`count` bundled shapes scenes resized to size x size, float32 [0, 255]."""
    import tensorflow as tf
    from PIL import Image

    import keras_mobilenets as km

    folder = os.path.join(km.datasets.shapes(), "images")
    names = sorted(os.listdir(folder))[:count]
    images = [np.asarray(Image.open(os.path.join(folder, n)).convert("RGB"), np.float32) for n in names]
    return np.stack([tf.image.resize(image, (size, size)).numpy() for image in images])


def bench(arch, size, runs, threads, calibration, held_out):
    import tensorflow as tf

    from keras_mobilenets import optimize
    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.train.recipe import recalibrate_batchnorm
    from keras_mobilenets.train.segmentation_training import create_segmenter

    model = create_segmenter(arch, 4, alpha=0.35 if arch == "v2" else 1.0, image_size=size)
    recalibrate_batchnorm(model, tf.data.Dataset.from_tensor_slices(
        (calibration, np.zeros(len(calibration)))).batch(4), batches=len(calibration) // 4)
    compiled = tf.function(lambda x: model(x, training=False), jit_compile=False)
    batch = tf.constant(held_out[:1])
    contents, row = {}, {"arch": arch, "params": model.count_params()}
    started = time.perf_counter()
    contents["float32"] = tflite.convert(model, "float32")
    row["float32 convert s"] = time.perf_counter() - started
    started = time.perf_counter()
    contents["int8"] = tflite.convert(model, "int8", representative=calibration,
                                      representative_count=len(calibration))
    row["int8 convert s"] = time.perf_counter() - started
    qat = optimize.quantize_model(model)
    optimize.calibrate(qat, calibration, batches=len(calibration))
    started = time.perf_counter()
    contents["qat-int8"] = tflite.convert(qat, "qat-int8")
    row["qat-int8 convert s"] = time.perf_counter() - started

    classes = {mode: np.argmax(tflite.run_tflite(content, held_out)[0], -1) for mode, content in contents.items()}
    for mode in ("int8", "qat-int8"):
        row[f"{mode} agreement"] = float((classes[mode] == classes["float32"]).mean())
    calls = {"keras": lambda: compiled(batch).numpy()}
    calls.update({mode: litert_call(content, held_out[0], threads) for mode, content in contents.items()})
    row.update(interleaved_ms(calls, runs))
    row.update({f"{mode} MB": len(content) / 1e6 for mode, content in contents.items()})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["v3-small", "v2"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=16)
    args = parser.parse_args()
    images = scenes(args.size, args.calibration + 8)
    calibration, held_out = images[:args.calibration], images[args.calibration:]
    print(f"LR-ASPP, batch 1, {args.size}x{args.size}, LiteRT {args.threads} threads (XNNPACK), median of "
          f"{args.runs} interleaved runs; ms and the ratio to the Keras call\n")
    print("| backbone | params | Keras ms | float32 ms | int8 PTQ ms | int8 QAT-form ms | int8 / float32 "
          "(PTQ, QAT) | MB float32 / PTQ / QAT | pixel agreement with float32 (PTQ, QAT) |")
    print("|---" * 9 + "|")
    for arch in args.archs:
        r = bench(arch, args.size, args.runs, args.threads, calibration, held_out)
        keras_ms = r["keras"]
        cells = " | ".join(f"{r[m]:.1f} ({r[m] / keras_ms:.2f}x)" for m in ("float32", "int8", "qat-int8"))
        print(f"| {arch} | {r['params']:,} | {keras_ms:.1f} | {cells} | {r['int8'] / r['float32']:.2f}x, "
              f"{r['qat-int8'] / r['float32']:.2f}x | {r['float32 MB']:.2f} / {r['int8 MB']:.2f} / "
              f"{r['qat-int8 MB']:.2f} | {r['int8 agreement']:.3f}, {r['qat-int8 agreement']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
