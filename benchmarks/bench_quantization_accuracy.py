"""Accuracy of float Keras, PTQ int8 and QAT int8 TFLite on the bundled digits, and the file sizes.

Each network is trained from scratch on 70% of scikit-learn's 1,797 digit scans (32x32), then
converted: full-integer PTQ calibrated on the training split, and QAT (`fine_tune_qat`: wrap, range
calibration, a short fit with BatchNorm frozen). Accuracies are on the 20% held-out test split, run
with LiteRT; PTQ and QAT also with per-tensor weights (`per_channel=False`; QAT folds BatchNorm first). Acceptance (the quantization
issue): QAT int8 within 0.5 points of float, PTQ int8 within 1.5 points, int8 file <= 0.3x the float32 file.

    python benchmarks/bench_quantization_accuracy.py --archs v2:0.35 v3-small:1.0 --epochs 20 --seeds 0 1 2
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import common  # noqa: E402

QUANTIZED = ("int8", "int8 per-tensor", "qat-int8", "qat-int8 per-tensor")  # compared with float Keras


def run(arch, alpha, epochs, qat_epochs, folder):
    from keras_mobilenets import optimize as quantization
    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.train import recipe as training

    data, images, labels = common.digits()
    model = training.create_classifier(arch, 10, alpha=alpha, image_size=32, bn_momentum=0.9)
    training.fit(model, data, os.path.join(folder, "float"),
                 training.Recipe(epochs=epochs, freeze_backbone=False, learning_rate=5e-3, tensorboard=False),
                 verbose=0)
    row = {"float Keras": float((np.asarray(model(images)).argmax(-1) == labels).mean())}
    qat = {}
    for per_channel in (True, False):
        result = quantization.fine_tune_qat(model, data, os.path.join(folder, f"qat_{per_channel}"),
                                            epochs=qat_epochs, verbose=0, per_channel=per_channel)
        qat[per_channel] = result.model
        row[f"QAT kept {per_channel}"] = os.path.basename(result.best_weights or "last").split(".")[0]
    for mode, source, per_channel in (("float32", model, True), ("int8", model, True),
                                      ("int8 per-tensor", model, False), ("qat-int8", qat[True], True),
                                      ("qat-int8 per-tensor", qat[False], False)):
        path = os.path.join(folder, f"{mode}.tflite".replace(" ", "_"))
        report = tflite.export_tflite(source, path, mode=mode.split()[0], representative=data.train,
                                      sample=images, input_type="float32", min_top1_agreement=0.0,
                                      per_channel=per_channel)
        outputs, _ = tflite.run_tflite(path, images)
        row[mode] = float((outputs.argmax(-1) == labels).mean())
        row[f"{mode} MB"] = report.size_bytes / 1e6
        row[f"{mode} ops"] = report.non_int8_ops
    return row, len(labels)


def main():
    import keras

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["v2:0.35", "v3-small:1.0"], help="ARCH:ALPHA")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run per seed (keras.utils.set_random_seed); single runs vary by a few points")
    args = parser.parse_args()
    print("| arch | seed | float Keras | float32 TFLite | PTQ int8 (diff) | PTQ per-tensor (diff) | QAT int8 (diff) | "
          "QAT per-tensor (diff) | QAT weights kept | int8 / float32 size | non-int8 ops |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for spec in args.archs:
        arch, alpha = spec.split(":")
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            with tempfile.TemporaryDirectory() as folder:
                row, count = run(arch, float(alpha), args.epochs, args.qat_epochs, folder)
            base = row["float Keras"]
            summary.setdefault(spec, []).append([(row[mode] - base) * 100 for mode in QUANTIZED])
            print(f"| {arch} {alpha} ({count} test images) | {seed} | {base:.2%} | {row['float32']:.2%} | "
                  + "".join(f"{row[m]:.2%} ({(row[m] - base) * 100:+.2f}) | " for m in QUANTIZED)
                  + f"{row['QAT kept True']}, {row['QAT kept False']} | "
                  f"PTQ {row['int8 MB'] / row['float32 MB']:.3f}x, "
                  f"per-tensor {row['int8 per-tensor MB'] / row['float32 MB']:.3f}x, "
                  f"QAT {row['qat-int8 MB'] / row['float32 MB']:.3f}x, "
                  f"per-tensor {row['qat-int8 per-tensor MB'] / row['float32 MB']:.3f}x "
                  f"({row['float32 MB']:.2f} MB float32) | "
                  f"{sum(len(row[m + ' ops']) for m in QUANTIZED)} |", flush=True)
    print()
    for spec, diffs in summary.items():
        means = ", ".join(f"{mode} mean {np.mean(d):+.2f} (worst {np.min(d):+.2f})"
                          for mode, d in zip(QUANTIZED, zip(*diffs)))
        print(f"{spec}: {len(diffs)} seeds, points vs float: {means}")


if __name__ == "__main__":
    main()
