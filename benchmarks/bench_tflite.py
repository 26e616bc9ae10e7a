"""TFLite latency in every mode vs the Keras model's compiled tf.function, and QAT vs PTQ conversion time.

Batch 1, 224x224, 1000 classes, LiteRT with 2 threads (its default XNNPACK delegate on, as on a phone),
for V1, V2, V3-Large and V3-Small at alpha 1.0. Latency does not depend on the weight values, so the
networks are not trained; BatchNorm statistics are randomized so activations have realistic ranges. PTQ
calibrates on real photos (scikit-learn's and scikit-image's samples); the QAT model is wrapped and
calibrated on the same photos (`quantization.calibrate`), per channel and per tensor (BatchNorm folded,
`quantize_model(per_channel=False)`), and its conversion time is compared with the PTQ conversion of the
same network in the same run. Ratios are what to read: absolute times are noisy.

    python benchmarks/bench_tflite.py --archs v1 v2 v3-large v3-small --runs 30
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import common  # noqa: E402


def photos(size, count):
    import tensorflow as tf
    sources = common.photos()
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        image = sources[i % len(sources)]
        side = int(rng.integers(min(image.shape[:2]) // 2, min(image.shape[:2]) + 1))
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        crop = image[top:top + side, left:left + side]
        out.append(tf.image.resize(crop, (size, size)).numpy())
    return np.stack(out).astype(np.float32)


def randomize_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


def litert_call(content, image, threads):
    """One LiteRT inference on `image` (XNNPACK on, `threads` threads), as a no-argument call."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
    return interpreter.invoke


def interleaved_ms(calls, runs, warmup=5):
    """Median ms per call, timed round-robin (one call of each per round) so drift hits all alike."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: 1e3 * float(np.median(values)) for name, values in times.items()}


def bench(arch, size, runs, threads, calibration):
    import tensorflow as tf

    from keras_mobilenets import optimize as quantization
    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.train import recipe as training

    model = training.create_classifier(arch, 1000, image_size=size)
    randomize_batchnorm(model)
    image = calibration[0]
    compiled = tf.function(lambda x: model(x, training=False), jit_compile=False)
    batch = tf.constant(image[None])
    contents, row = {}, {"arch": arch}
    for mode in ("float32", "float16", "dynamic", "int8"):
        started = time.perf_counter()
        contents[mode] = tflite.convert(model, mode, representative=calibration if mode == "int8" else None,
                                        representative_count=len(calibration))
        row[f"{mode} convert s"] = time.perf_counter() - started
    for mode, per_channel in (("qat-int8", True), ("qat-int8 per-tensor", False)):
        qat = quantization.quantize_model(model, per_channel=per_channel)
        quantization.calibrate(qat, calibration, batches=len(calibration))
        started = time.perf_counter()
        contents[mode] = tflite.convert(qat, "qat-int8")
        row[f"{mode} convert s"] = time.perf_counter() - started
    calls = {"keras tf.function": lambda: compiled(batch).numpy()}
    calls.update({mode: litert_call(content, image, threads) for mode, content in contents.items()})
    row.update(interleaved_ms(calls, runs))
    row.update({f"{mode} MB": len(content) / 1e6 for mode, content in contents.items()})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["v1", "v2", "v3-large", "v3-small"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=16, help="photos for PTQ / QAT range calibration")
    args = parser.parse_args()
    calibration = photos(args.size, args.calibration)
    modes = ["float32", "float16", "dynamic", "int8", "qat-int8", "qat-int8 per-tensor"]
    print(f"batch 1, {args.size}x{args.size}, LiteRT {args.threads} threads (XNNPACK), median of "
          f"{args.runs} interleaved runs; ms, and the speed-up over the Keras tf.function in brackets\n")
    print("| arch | Keras tf.function | " + " | ".join(modes) + " | int8 / float32 latency (PTQ, QAT, QAT "
          "per-tensor) | PTQ int8 convert | QAT int8 convert (ratio) | int8 / float32 size (PTQ, QAT, QAT per-tensor) |")
    print("|---" * (len(modes) + 6) + "|")
    for arch in args.archs:
        row = bench(arch, args.size, args.runs, args.threads, calibration)
        cells = [f"{row[m]:.1f} ({row['keras tf.function'] / row[m]:.1f}x)" for m in modes]
        quantized = ("int8", "qat-int8", "qat-int8 per-tensor")
        ptq, qat = row["int8 convert s"], row["qat-int8 convert s"]
        print(f"| {arch} | {row['keras tf.function']:.1f} | " + " | ".join(cells) + " | "
              + ", ".join(f"{row[m] / row['float32']:.2f}x" for m in quantized)
              + f" | {ptq:.1f} s | {qat:.1f} s ({qat / ptq:.2f}x) | "
              + ", ".join(f"{row[m + ' MB'] / row['float32 MB']:.3f}x" for m in quantized)
              + f" ({row['float32 MB']:.1f} MB float32) |", flush=True)


if __name__ == "__main__":
    main()
