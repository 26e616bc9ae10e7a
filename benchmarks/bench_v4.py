"""MobileNetV4-Conv-S vs MobileNetV3-Large and MobileNetV2 1.0: TFLite float32 and int8 latency, MACs.

Batch 1, 224x224x3 [0, 255] input (Rescaling inside every model), 1000 classes, LiteRT with 2 threads
(XNNPACK on), all files timed round-robin in the same run, so ratios are what to read. The networks are
not trained (latency does not depend on weight values); BatchNorm statistics are randomized so int8
ranges are realistic, and int8 is post-training quantization calibrated on real photos. MACs are
`km.profile`'s (Conv2D, DepthwiseConv2D, Dense and the attention matmuls).

    python benchmarks/bench_v4.py --archs v4-conv-small v3-large v2 --runs 30

`--qat ARCH` instead quantizes one real table (QAT wrappers, calibration, qat-int8 conversion) and reports
time per step, the ops that stay float and agreement with the QAT Keras model: too slow for CI, where a
small table of every V4 block is quantized instead.

    nice -n 5 python benchmarks/bench_v4.py --qat v4-hybrid-medium --classes 10
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bench_tflite  # noqa: E402  (photos, randomize_batchnorm, litert_call, interleaved_ms)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["v4-conv-small", "v3-large", "v2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--qat", metavar="ARCH", help="measure QAT to int8 of this table instead")
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    if args.qat:
        return qat_report(args)

    import keras_mobilenets as km
    from keras_mobilenets.deploy import tflite

    images = bench_tflite.photos(args.size, args.calibration)
    calls, macs = {}, {}
    for arch in args.archs:
        model = km.create_model(arch, input_shape=(args.size, args.size, 3), classes=args.classes,
                                include_preprocessing=True)
        bench_tflite.randomize_batchnorm(model)
        macs[arch] = km.profile(model).macs
        for mode in ("float32", "int8"):
            started = time.perf_counter()
            content = tflite.convert(model, mode, representative=images if mode == "int8" else None,
                                     representative_count=len(images))
            print(f"{arch} {mode}: converted in {time.perf_counter() - started:.0f} s, "
                  f"{len(content) / 1e6:.1f} MB", flush=True)
            calls[(arch, mode)] = bench_tflite.litert_call(content, images[0], args.threads)
    ms = bench_tflite.interleaved_ms(calls, args.runs)
    base = args.archs[0]
    print(f"\n| model | MACs (M) | float32 ms | int8 ms | int8 / float32 | float32 vs {base} | int8 vs {base} |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs:
        f32, i8 = ms[(arch, "float32")], ms[(arch, "int8")]
        print(f"| {arch} | {macs[arch] / 1e6:.0f} | {f32:.2f} | {i8:.2f} | {i8 / f32:.2f} | "
              f"{f32 / ms[(base, 'float32')]:.2f}x | {i8 / ms[(base, 'int8')]:.2f}x |")


def qat_report(args):
    import numpy as np

    import keras_mobilenets as km
    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.optimize import qat

    images = bench_tflite.photos(args.size, args.calibration)
    started = time.perf_counter()

    def lap(step):
        nonlocal started
        print(f"{step}: {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()

    model = km.create_model(args.qat, input_shape=(args.size, args.size, 3), classes=args.classes,
                            include_preprocessing=True)
    bench_tflite.randomize_batchnorm(model)
    lap(f"build {args.qat} at {args.size} px, {model.count_params():,} parameters")
    quantized = qat.quantize_model(model)
    lap("quantize_model (tf_keras copy + tfmot wrappers)")
    qat.calibrate(quantized, images, batches=4)
    lap("calibrate (weight and activation ranges)")
    content = tflite.convert(quantized, "qat-int8")
    lap(f"convert qat-int8 ({len(content) / 1e6:.1f} MB)")
    outputs, interpreter = tflite.run_tflite(content, images)
    lap(f"LiteRT on {len(images)} images")
    expected = np.asarray(quantized(images, training=False))
    print(f"ops: {', '.join(sorted({op['op_name'] for op in interpreter._get_ops_details()}))}")
    print(f"non-int8 ops: {tflite.non_int8_ops(interpreter) or 'none'}")
    print(f"top-1 agreement with the QAT Keras model: {(outputs.argmax(1) == expected.argmax(1)).mean():.3f}, "
          f"max |diff| {np.abs(outputs - expected).max():.4f}")


if __name__ == "__main__":
    main()
