"""Transfer learning without ImageNet: a backbone trained on digits 0-4 moved to 10% of 5-9.

A MobileNetV2 0.35 at 32x32 is trained from scratch on the digits 0-4 (12 epochs). For each seed it gets a
new head on 10% of the 5-9 training images (64 images): stage 1 head only (10 epochs), stage 2 every
block with BatchNorm frozen (20 epochs); against the same network trained from scratch on those images
for 30 epochs. Accuracies are on the 5-9 test split (30%, never trained on). With 64 training images
one run of either side varies by about +-0.08, so the figure is the mean over seeds.
`tests/test_training.py` runs seeds 0 and 1 of this same experiment.

    python benchmarks/bench_transfer.py --seeds 0 1 2
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

EPOCHS = 30  # each side, per seed
HEAD_EPOCHS = 10  # of the transfer side's 30: stage 1


def _accuracy(model, images, labels):
    from keras_mobilenets.data import pipelines as kd
    from keras_mobilenets.train import recipe as kt

    data = kd.from_arrays(images, labels, 32, validation_split=0.0, test_split=0.0, augmentation=None,
                          crop_fraction=1.0)
    return kt.evaluate(model, data.train, data.class_names)["accuracy"]


def compare(images, labels, seeds, work):
    """{"transfer": [accuracy per seed], "scratch": [...]} and the number of training and test images."""
    import keras

    from keras_mobilenets.data import pipelines as kd
    from keras_mobilenets.train import recipe as kt

    keras.utils.set_random_seed(0)
    augmentation = kd.Augmentation(crop_scale=(0.6, 1.0), flip=False)
    first = labels < 5
    source = kd.from_arrays(images[first], labels[first], 32, batch_size=32, validation_split=0.1,
                            test_split=0.0, augmentation=augmentation, crop_fraction=1.0, seed=1)
    base = kt.create_classifier("v2", 5, alpha=0.35, image_size=32, bn_momentum=0.9)
    kt.fit(base, source, os.path.join(work, "source"),
           kt.Recipe(epochs=12, freeze_backbone=False, learning_rate=5e-3, tensorboard=False), verbose=0)
    base_weights = os.path.join(work, "base.weights.h5")
    base.save_weights(base_weights)

    x, y = images[~first], labels[~first] - 5
    train_part, test_part = kd.split_indices(y, (0.3,), seed=0)[:2]
    few = train_part[kd.split_indices(y[train_part], (0.9,), seed=0)[0]]  # 10% of the training images
    assert 0.09 <= len(few) / len(train_part) <= 0.11 and not set(few) & set(test_part)
    runs = {"transfer": [], "scratch": []}
    for seed in seeds:
        target = kd.from_arrays(x[few], y[few], 32, batch_size=16, validation_split=0.0, test_split=0.0,
                                augmentation=augmentation, crop_fraction=1.0, seed=2 + seed)
        keras.utils.set_random_seed(seed)
        base.load_weights(base_weights)  # add_head shares the backbone's layers
        transfer = kt.add_head(base, 5)
        kt.fit(transfer, target, os.path.join(work, f"transfer{seed}"),
               kt.Recipe(epochs=HEAD_EPOCHS, fine_tune_epochs=EPOCHS - HEAD_EPOCHS, fine_tune_blocks="all",
                         learning_rate=1e-2, fine_tune_learning_rate=2e-3, tensorboard=False), verbose=0)
        runs["transfer"].append(_accuracy(transfer, x[test_part], y[test_part]))
        keras.utils.set_random_seed(seed)
        scratch = kt.create_classifier("v2", 5, alpha=0.35, image_size=32, bn_momentum=0.9)
        kt.fit(scratch, target, os.path.join(work, f"scratch{seed}"),
               kt.Recipe(epochs=EPOCHS, freeze_backbone=False, learning_rate=5e-3, tensorboard=False),
               verbose=0)
        runs["scratch"].append(_accuracy(scratch, x[test_part], y[test_part]))
    return runs, len(few), len(test_part)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    from sklearn.datasets import load_digits

    scans = load_digits()
    pixels = np.round(scans.images * 255 / 16).astype(np.uint8)
    with tempfile.TemporaryDirectory() as work:
        runs, trained, tested = compare(pixels, scans.target, args.seeds, work)
    print(f"digits 5-9, {trained} training images, {tested} test images, seeds {args.seeds}")
    print("| run | mean | per seed |\n|---|---|---|")
    for side, accuracies in runs.items():
        print(f"| {side} | {np.mean(accuracies):.3f} | {', '.join(f'{a:.3f}' for a in accuracies)} |")


if __name__ == "__main__":
    main()
