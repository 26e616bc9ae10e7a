"""A trained SSDLite detector as TFLite: float32, int8 PTQ and QAT int8 files (all ending in
TFLite_Detection_PostProcess), their latency vs the Keras model's compiled call, sizes, and COCO mAP on
the run's held-out test split against the float Keras model.

Batch 1, LiteRT with 2 threads (its default XNNPACK delegate on, as on a phone), timed round-robin in one
run; ratios are what to read. PTQ calibrates on 100 training images; QAT is `fine_tune_qat_detector`
(calibration, then `--qat-epochs` over the training split). Train the detector first with the plain command:

    keras-mobilenets train --task detection --out runs/det
    python benchmarks/bench_detection_tflite.py --model runs/det/best.keras --out runs/det-tflite [--regular-nms]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench_tflite import interleaved_ms, litert_call  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/det/best.keras")
    parser.add_argument("--out", default="runs/det-tflite")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--regular-nms", action="store_true",
                        help="also float32 and int8 PTQ files with the op's regular (per-class) NMS, as Keras'")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from keras_mobilenets import optimize
    from keras_mobilenets.app import detection_runs
    from keras_mobilenets.deploy.detection_tflite import export_detector_tflite
    from keras_mobilenets.train.detection_training import evaluate_detector

    os.makedirs(args.out, exist_ok=True)
    model = keras.saving.load_model(args.model)
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    data = detection_runs.model_data(args.model, None, size)
    test, records = data.test, data.records["test"]
    sample = np.concatenate([np.asarray(x) for x, _ in test])
    train_images = np.concatenate([np.asarray(x) for x, _ in data.train.take(7)])[:100]
    rows, contents = {}, {}
    keras_map = evaluate_detector(model, test, records, data.class_names)[0]
    rows["Keras float32"] = {"mAP@.5": keras_map["map_50"], "mAP": keras_map["map"]}
    files = [("TFLite float32", "float32", False), ("TFLite int8 PTQ", "int8", False),
             ("TFLite int8 QAT", "qat-int8", False)]
    if args.regular_nms:
        files += [("TFLite float32, regular NMS", "float32", True), ("TFLite int8 PTQ, regular NMS", "int8", True)]
    for name, mode, regular in files:
        started = time.perf_counter()
        source, reference = model, None
        if mode == "qat-int8":
            source = reference = optimize.fine_tune_qat_detector(model, data, epochs=args.qat_epochs)
        path = os.path.join(args.out, f"detector_{mode}{'_regular' if regular else ''}.tflite")
        report = export_detector_tflite(source, path, mode=mode, representative=train_images, sample=sample[:32],
                                        reference=reference, min_match=0.0, overwrite=True,
                                        max_detections=detection_runs.MAX_DETECTIONS, use_regular_nms=regular)
        seconds = time.perf_counter() - started
        print(report)
        metrics = detection_runs.evaluate_tflite(path, test, records, data.class_names)[0]
        contents[name] = open(path, "rb").read()
        rows[name] = {"mAP@.5": metrics["map_50"], "mAP": metrics["map"], "MB": len(contents[name]) / 1e6,
                      "matched": report.matched, "max score diff": report.max_score_diff,
                      "make s": seconds, "float ops": ", ".join(report.non_int8_ops) or "-"}
    compiled = tf.function(lambda x: model(x, training=False), jit_compile=False)
    batch = tf.constant(sample[:1])
    calls = {"Keras float32": lambda: [t.numpy() for t in compiled(batch)]}
    # LiteRT 2.3's multi-threaded regular NMS drops a class (README): those files run on one thread
    calls.update({name: litert_call(content, sample[0], 1 if "regular" in name else args.threads)
                  for name, content in contents.items()})
    latency = interleaved_ms(calls, args.runs)
    base = latency["Keras float32"]
    print(f"\n{os.path.basename(args.model)} ({size[0]} px, {len(records)} test images); load {os.getloadavg()}")
    print("| model | ms / image | vs Keras | MB | test mAP@.5 | test mAP | boxes matched (IoU>=.5) | max score diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        size_mb = f"{row['MB']:.2f}" if "MB" in row else "-"
        print(f"| {name} | {latency[name]:.2f} | {latency[name] / base:.2f}x | {size_mb} | "
              f"{row['mAP@.5']:.3f} | {row['mAP']:.3f} | {row.get('matched', 1.0):.3f} | "
              f"{row.get('max score diff', 0.0):.4f} |")
    for name, row in rows.items():
        if "make s" in row:
            print(f"{name}: made in {row['make s']:.0f} s; ops computing in float: {row['float ops']}")


if __name__ == "__main__":
    main()
