"""Accuracy kept by magnitude pruning on the bundled digits, with the gzipped file size.

A MobileNetV2 0.35 is trained from scratch at 32x32 on 70% of scikit-learn's digit scans, then pruned
with tfmot (`quantization.prune_model`, PolynomialDecay to the target sparsity) in two fits: a ramp that
reaches the target at its last step (`restore_best=False`: its best epoch can predate the target), then
a recovery at the target sparsity whose best validation epoch is kept. Accuracies are on the 20%
held-out test split, with the stripped weights back in a Keras 3 model.

    python benchmarks/bench_pruning.py --sparsity 0.5 0.75 --epochs 20 --ramp-epochs 4 --recovery-epochs 6
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import common  # noqa: E402


def accuracy(model, images, labels):
    return float((np.asarray(model.predict(images, verbose=0)).argmax(-1) == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--epochs", type=int, default=20, help="float training from scratch")
    parser.add_argument("--ramp-epochs", type=int, default=4)
    parser.add_argument("--recovery-epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    from keras_mobilenets.data import pipelines as kd
    from keras_mobilenets.deploy import tflite
    from keras_mobilenets import optimize as quantization
    from keras_mobilenets.train import recipe as training

    data, images, labels = common.digits(kd.Augmentation(crop_scale=(0.6, 1.0), flip=False))
    steps = sum(1 for _ in data.train)
    folder = tempfile.mkdtemp(prefix="bench-pruning-")
    dense = training.create_classifier("v2", 10, alpha=0.35, image_size=32, bn_momentum=0.9)
    training.fit(dense, data, os.path.join(folder, "float"),
                 training.Recipe(epochs=args.epochs, freeze_backbone=False, learning_rate=5e-3,
                                 tensorboard=False), verbose=0)
    base = accuracy(dense, images, labels)
    print(f"MobileNetV2 0.35, 32x32, {len(labels)} test images; float {base:.2%}; pruning: "
          f"{args.ramp_epochs} ramp + {args.recovery_epochs} recovery epochs at lr {args.lr}, BatchNorm frozen\n")
    print("| target sparsity | reached | test accuracy (points) | gzipped float32 TFLite |")
    print("|---|---|---|---|")
    for target in args.sparsity:
        pruned = quantization.prune_model(dense, target_sparsity=target,
                                          end_step=args.ramp_epochs * steps, frequency=max(1, steps // 2))
        for stage, epochs, keep_best in (("ramp", args.ramp_epochs, False),
                                         ("recovery", args.recovery_epochs, True)):
            recipe = training.Recipe(epochs=epochs, freeze_backbone=False, train_batchnorm=False,
                                     learning_rate=args.lr, warmup_epochs=0.0, tensorboard=False,
                                     restore_best=keep_best)
            training.fit(pruned, data, os.path.join(folder, f"{target}-{stage}"), recipe, verbose=0,
                         callbacks=quantization.pruning_callbacks())
        kept = quantization.strip_pruning(
            pruned, into=training.create_classifier("v2", 10, alpha=0.35, image_size=32))
        report = tflite.pruning_report(dense, kept)
        score = accuracy(kept, images, labels)
        print(f"| {target:.2f} | {report.sparsity:.3f} | {score:.2%} ({(score - base) * 100:+.2f}) | "
              f"{report.dense_gzip_bytes / 1e6:.2f} -> {report.pruned_gzip_bytes / 1e6:.2f} MB "
              f"({report.pruned_gzip_bytes / report.dense_gzip_bytes:.2f}x) |", flush=True)


if __name__ == "__main__":
    main()
