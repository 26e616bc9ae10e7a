"""The segmentation side of a training run folder (`RunConfig(task="segmentation")`): what differs.

`runs.train_run` keeps the folder, the lock, the marker, resume, --overwrite and `recipe.fit`; this module
gives it the segmentation pieces: the "auto" choices, the image + mask data (a VOC folder, an images/ +
masks/ folder, or "shapes"), the model (LR-ASPP, or Mobile DeepLabv3 with `head="deeplabv3"`), the fit
task (`SegmentationTask`: sparse cross-entropy without the ignore label, best epoch by validation mIoU), and
the end of the run: mIoU, per-class IoU and pixel accuracy of the validation and test splits in
metrics.json, and pictures (segmentation.png: true and predicted masks over held-out images;
class_iou.png: IoU per class).
"""

import math
import os

import numpy as np

from keras_mobilenets.fileio import read_json, write_json
from keras_mobilenets.train.segmentation_training import HEADS

SHAPES = "shapes"
MODEL_NAME = "{head} on {}"  # RunConfig.describe: the head in words (HEADS), LR-ASPP when config.head is None
# `keras-mobilenets train --task segmentation`: measured in BENCHMARKS.md ("Segmentation training")
AUTO_EPOCHS = (20, 60)
AUTO_STEPS = 440  # optimizer steps an "auto" epoch count aims at from scratch (shapes at batch 16: 20 epochs)
AUTO_SCALE = (0.75, 1.5)  # random scale of image and mask from scratch
PICTURE_IMAGES = 6


def data_dir(data):
    """The folder of `data`: "shapes" (the bundled scenes; their masks/ beside images/) or a folder."""
    if data == SHAPES:
        from keras_mobilenets.data.datasets import shapes

        return shapes()
    return data


def auto_image_size(side):
    """From scratch: the images' own size rounded up to a multiple of 32, within 96-256."""
    return int(min(256, max(96, 32 * math.ceil(side / 32))))


def auto_epochs(train_images, batch_size):
    """About AUTO_STEPS optimizer steps, within AUTO_EPOCHS."""
    steps = max(1, math.ceil(train_images / batch_size))
    low, high = AUTO_EPOCHS
    return int(min(high, max(low, math.ceil(AUTO_STEPS / steps))))


def _sides(folder, sample=50):
    from keras_mobilenets.data.segmentation import _image_size, scan_pairs

    pairs = scan_pairs(folder)
    sides = []
    for image, _ in pairs[::max(1, len(pairs) // sample)]:
        try:
            sides.append(min(_image_size(image)))
        except Exception:  # noqa: BLE001 - a bad file is reported by the validation pass, not here
            continue
    return len(pairs), int(np.median(sides)) if sides else 160


def resolve(config, folder):
    """`runs.resolve` for segmentation: image size from the images, width from their number, random
    scale 0.75-1.5 and flips, BatchNorm momentum 0.9, and the from-scratch recipe."""
    from keras_mobilenets.app.runs import auto_alpha, resolve_task

    images, side = _sides(folder)

    def choices(scratch, train_images, side):
        return {"image_size": auto_image_size(side) if scratch else 224,
                "alpha": auto_alpha(train_images) if scratch else 1.0,
                "flip": True, "crop_scale": AUTO_SCALE, "crop_fraction": 1.0,
                "bn_momentum": 0.9 if scratch else None}

    resolved, chosen = resolve_task(config, images, side, choices, auto_epochs)
    if "crop_scale" in chosen:  # here it is the random scale of image and mask, not a crop's area
        chosen["random_scale"] = chosen.pop("crop_scale")
    return resolved, chosen


def load_data(config, folder):
    from keras_mobilenets.app.runs import data_settings
    from keras_mobilenets.data.segmentation import SegmentationAugmentation, from_segmentation_folder

    augmentation = SegmentationAugmentation(scale=tuple(config.crop_scale), flip=bool(config.flip))
    return from_segmentation_folder(folder, config.image_size, augmentation=augmentation, **data_settings(config))


def build(config, num_classes):
    from keras_mobilenets.app.runs import model_settings
    from keras_mobilenets.train.segmentation_training import create_segmenter

    return create_segmenter(config.arch, num_classes, head=config.head or "lraspp", **model_settings(config))


def task(config, model):
    from keras_mobilenets.train.segmentation_training import SegmentationTask

    return SegmentationTask(int(model.outputs[0].shape[-1]))


def split_files(data):
    """split.json of a segmentation run: [image, mask] pairs of each split."""
    return {name: [list(pair) for pair in pairs] for name, pairs in data.files.items()}


def is_model(model):
    from keras_mobilenets.train.segmentation_training import is_segmenter

    return is_segmenter(model)


def _named(result, class_names):
    """metrics.json's form of `evaluate_segmenter`'s result: per-class IoU by class name."""
    result = dict(result)
    result["per_class_iou"] = dict(zip(class_names, result["per_class_iou"]))
    return result


def _pictures(out_dir, prefix, split, result, shown, class_names):
    from keras_mobilenets.train.segmentation_reports import plot_class_iou, plot_masks

    images, truths, predictions = shown
    plot_masks(images, truths, predictions, class_names, os.path.join(out_dir, f"{prefix}segmentation.png"),
               title=f"{split} images: true masks (middle) and predicted (right), mIoU {result['miou']:.3f}")
    plot_class_iou(result["per_class_iou"], os.path.join(out_dir, f"{prefix}class_iou.png"),
                   title=f"{split} split: IoU per class, mIoU {result['miou']:.3f}, pixel accuracy "
                         f"{result['pixel_accuracy']:.3f}")


def evaluate_splits(model, data, splits=("validation", "test")):
    """{split: metrics} of `model` on the data's held-out splits, and the last split's pictures' inputs."""
    from keras_mobilenets.train.segmentation_training import compiled_forward, evaluate_segmenter

    forward = compiled_forward(model)
    results, last = {}, None
    for split in splits:
        dataset = getattr(data, split)
        if dataset is None:
            continue
        result, shown = evaluate_segmenter(model, dataset, data.num_classes, data.ignore_label,
                                           keep=PICTURE_IMAGES, forward=forward)
        results[split] = _named(result, data.class_names)
        last = (split, results[split], shown)
    return results, last


def finish(out_dir, model, data, config, result, seconds, resumed):
    """best.keras, metrics.json's content (without writing it), training curves and mask pictures;
    returns (the uncompiled model saved as best.keras, metrics)."""
    from keras_mobilenets.app.runs import _save_model, task_metrics
    from keras_mobilenets.train import reports

    trained, model = model, build(config, data.num_classes)  # best.keras without optimizer or compile state
    model.set_weights(trained.get_weights())
    results, last = evaluate_splits(model, data)
    metrics = dict(task_metrics(config, data, result, seconds, resumed), ignore_label=data.ignore_label)
    best_epoch = metrics["best_epoch"]
    metrics.update(results)
    _save_model(model, os.path.join(out_dir, "best.keras"))
    reports.plot_history(result.history, os.path.join(out_dir, "training_curves.png"), title=config.describe(),
                         best_epoch=best_epoch if config.recipe.restore_best else None, metric="miou")
    if last is not None:
        _pictures(out_dir, "", *last, data.class_names)
        if last[1]["miou"] < 0.3:
            metrics["warning"] = (f"{last[0]} mIoU is {last[1]['miou']:.3f}: the model learned little. Try "
                                  "more epochs (--epochs), a larger --image-size for thin objects, and check "
                                  "that the mask values are the class ids")
    return model, metrics


def stored_pairs(model_path, split):
    """The [image, mask] pairs of one split (or the first non-empty of several, "test validation") that
    the run folder of `model_path` stored, and its class names."""
    run_dir = os.path.dirname(os.path.abspath(model_path))
    split_path = os.path.join(run_dir, "split.json")
    if not os.path.exists(split_path):
        raise ValueError(f"no data given and no split.json next to {model_path!r}: pass --data with a "
                         "segmentation folder (or shapes)")
    splits = read_json(split_path, what="run's split")
    name = next((n for n in split.split() if splits.get(n)), None)
    if name is None:
        raise ValueError(f"split={split!r} is not allowed: the run has splits "
                         f"{sorted(k for k, v in splits.items() if v)}")
    labels = os.path.join(run_dir, "labels.txt")
    with open(labels, encoding="utf-8") as handle:
        class_names = tuple(handle.read().split("\n")[:-1])
    return [tuple(pair) for pair in splits[name]], class_names


def pairs_pipeline(pairs, size, batch_size=16):
    """An ordered, unaugmented (images, masks) pipeline of `pairs` at `size`."""
    from keras_mobilenets.data.segmentation import _file_pairs, pipeline

    return pipeline(_file_pairs(pairs), tuple(size), batch_size, training=False, augmentation=None)


def model_pipelines(model_path, data, size, batch_size=16):
    """(train, held-out) pipelines for a saved segmentation model: its run's stored splits, or `data` (a
    folder or "shapes", split 80/20)."""
    if data is None:
        train, _ = stored_pairs(model_path, "train")
        held_out, _ = stored_pairs(model_path, "test validation")
        return pairs_pipeline(train, size, batch_size), pairs_pipeline(held_out, size, batch_size)
    from keras_mobilenets.data.segmentation import from_segmentation_folder

    loaded = from_segmentation_folder(data_dir(data), tuple(size), batch_size=batch_size, validation_split=0.2,
                                      test_split=0.0, augmentation=None)
    return loaded.train, loaded.validation


def model_data(model_path, data, size):
    """The (image, mask) data a saved segmentation model is quantized with: its run folder's own splits
    and augmentation (config.json next to it), or `data` (a folder or "shapes", split 70/10/20, no
    augmentation)."""
    from dataclasses import replace

    from keras_mobilenets.app.runs import saved_run_config
    from keras_mobilenets.data.segmentation import from_segmentation_folder

    if data is None:
        config = saved_run_config(model_path, "--data with a segmentation folder (or shapes)")
        return load_data(replace(config, image_size=size[0]), data_dir(config.data))
    return from_segmentation_folder(data_dir(data), tuple(size), validation_split=0.1, test_split=0.2,
                                    augmentation=None)


def fine_tune_qat(model, data, out_dir, epochs, learning_rate, per_channel=True, verbose=1):
    """`optimize.fine_tune_qat` with the segmentation task (sparse cross-entropy without the ignore label,
    the kept epoch the best by validation mIoU); the FitResult, its `.model` the QAT model."""
    from keras_mobilenets import optimize
    from keras_mobilenets.train.segmentation_training import SegmentationTask

    return optimize.fine_tune_qat(model, data, out_dir, epochs=epochs, learning_rate=learning_rate,
                                  per_channel=per_channel, verbose=verbose,
                                  task=SegmentationTask(data.num_classes, data.ignore_label))


def quantize(model, data, out_dir, epochs, learning_rate, input_type, output_type, min_agreement,
             per_channel, verbose=1):
    """`runs.quantize_run` for a segmentation model: QAT (`fine_tune_qat`), model_int8.tflite (qat-int8,
    int8 from input to classifier; its pixel agreement with the QAT model must reach `min_agreement`),
    and in metrics.json the mIoU of the float Keras model, the QAT Keras model and the int8 file on the
    whole held-out split, with the file's parity report (`segmentation_parity` against the QAT model)."""
    from dataclasses import asdict

    from keras_mobilenets.deploy.segmentation_tflite import segmentation_parity
    from keras_mobilenets.deploy.tflite import export_tflite
    from keras_mobilenets.train.segmentation_training import evaluate_segmenter

    split = "test" if data.test is not None else "validation"
    held_out = getattr(data, split)
    result = fine_tune_qat(model, data, out_dir, epochs, learning_rate, per_channel, verbose)
    path = os.path.join(out_dir, "model_int8.tflite")
    report = export_tflite(result.model, path, mode="qat-int8", sample=held_out, input_type=input_type,
                           output_type=output_type, min_top1_agreement=min_agreement, overwrite=True,
                           per_channel=per_channel)
    parity = segmentation_parity(result.model, path, held_out, data.ignore_label, limit=None)
    float_miou = evaluate_segmenter(model, held_out, data.num_classes, data.ignore_label, keep=0)[0]["miou"]
    metrics = {"task": "segmentation", "split": split, "images": parity["images"],
               "qat_epochs": result.epochs_run, "float_keras_miou": float_miou,
               "qat_keras_miou": parity["keras_miou"], "int8_tflite_miou": parity["tflite_miou"],
               "parity": parity, "tflite": asdict(report), "best": result.best, "monitor": result.monitor}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def evaluate_model(model, model_path, data=None, split="test", batch_size=32, out_dir=None):
    """mIoU, per-class IoU and pixel accuracy of a saved segmentation model on a folder (or "shapes"), or
    on its run's stored split; written to evaluation[_<split>].json with the pictures next to it."""
    from keras_mobilenets.data.segmentation import from_segmentation_folder
    from keras_mobilenets.train.segmentation_training import evaluate_segmenter

    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    classes = int(model.outputs[0].shape[-1])
    if data is None:
        pairs, class_names = stored_pairs(model_path, split)
        dataset, name = pairs_pipeline(pairs, size, batch_size), f"evaluation_{split}"
    else:
        loaded = from_segmentation_folder(data_dir(data), size, num_classes=classes, batch_size=batch_size,
                                          validation_split=0.0, test_split=0.0, augmentation=None)
        dataset = pairs_pipeline(loaded.files["train"], size, batch_size)
        class_names, name = loaded.class_names, "evaluation"
    if len(class_names) != classes:
        raise ValueError(f"the model scores {classes} classes but the data has {len(class_names)} "
                         f"{tuple(class_names[:10])}")
    result, shown = evaluate_segmenter(model, dataset, classes, keep=PICTURE_IMAGES)
    result = _named(result, class_names)
    out_dir = out_dir or os.path.dirname(os.path.abspath(model_path))
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, f"{name}.json"), result)
    _pictures(out_dir, f"{name}_", split if data is None else "data", result, shown, class_names)
    return result
