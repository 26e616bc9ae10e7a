"""The detection side of a training run folder (`RunConfig(task="detection")`): what differs from classification.

`runs.train_run` keeps the folder, the lock, the marker, resume, --overwrite and `recipe.fit`; this module
gives it the detection pieces: the "auto" choices, the boxed data (a COCO or VOC folder, or "shapes"), the
SSDLite model, the fit task (`DetectionTask`: targets, SSD loss, best epoch by validation mAP@.5), and the
end of the run: COCO metrics of the validation and test splits in metrics.json, and pictures
(detections.png: boxes on held-out images with the ground truth dashed; precision_recall.png).
"""

import math
import os
from dataclasses import replace

import numpy as np

from keras_mobilenets.fileio import read_json, write_json

SHAPES = "shapes"
MODEL_NAME = "SSDLite on {}"
# `keras-mobilenets train --task detection --data shapes`: measured in BENCHMARKS.md ("Detection training")
AUTO_EPOCHS = (20, 60)  # bounds of the "auto" epoch count from scratch
AUTO_STEPS = 880  # optimizer steps an "auto" epoch count aims at from scratch (shapes: 40 epochs of 22)
AUTO_LR = 1e-2  # peak learning rate from scratch: 5e-3 reached test mAP@.5 0.72 on a seed where 1e-2 reached 0.93
AUTO_CROP = (0.3, 1.0)  # SSD crop areas from scratch: the paper's 0.1 slowed a short run down (BENCHMARKS.md)
SHOW_SCORE = 0.3  # detections drawn in the pictures and printed by `predict` score at least this
PICTURE_IMAGES = 8
MAX_DETECTIONS = 100  # boxes per image in TFLite files made for evaluation, as the Keras evaluation keeps


def data_dir(data):
    """The folder of `data`: "shapes" (the bundled set, written once) or a COCO / VOC folder as given."""
    if data == SHAPES:
        from keras_mobilenets.data.datasets import shapes

        return shapes()
    return data


def _boxes(folder, strict=False):
    from keras_mobilenets.data.detection import read_boxes

    return read_boxes(folder, strict=strict)


def auto_image_size(side):
    """From scratch: the images' own size rounded up to a multiple of 32, within SSDLite's usual 160-320."""
    return int(min(320, max(160, 32 * math.ceil(side / 32))))


def auto_epochs(train_images, batch_size):
    """About AUTO_STEPS optimizer steps, within AUTO_EPOCHS (shapes at batch 16: 40 epochs)."""
    steps = max(1, math.ceil(train_images / batch_size))
    low, high = AUTO_EPOCHS
    return int(min(high, max(low, math.ceil(AUTO_STEPS / steps))))


def resolve(config, folder):
    """`runs.resolve` for a detector: image size from the images, width from their number, SSD crops of
    30-100% of the area, flips, BatchNorm momentum 0.9, focal loss, and the from-scratch recipe (few
    BatchNorm recalibration batches). The class loss "auto" is focal for every backbone: in a short run
    from scratch on `shapes` it learned faster than hard-negative mining (BENCHMARKS.md)."""
    from keras_mobilenets.app.runs import AUTO, auto_alpha, resolve_task

    boxes = _boxes(folder, config.strict)
    images = len(boxes.records)
    side = int(np.median([min(r.width, r.height) for r in boxes.records])) if images else 320

    def choices(scratch, train_images, side):
        return {"image_size": auto_image_size(side) if scratch else 320,
                "alpha": auto_alpha(train_images) if scratch else 1.0,
                "flip": True, "crop_scale": AUTO_CROP, "crop_fraction": 1.0,
                "bn_momentum": 0.9 if scratch else None}

    extra = {"class_loss": "focal"} if config.class_loss in (None, AUTO) else {}
    return resolve_task(config, images, side, choices, auto_epochs, extra)


def load_data(config, folder):
    from keras_mobilenets.app.runs import data_settings
    from keras_mobilenets.data.detection import BoxAugmentation, from_detection_folder

    augmentation = BoxAugmentation(crop_area=tuple(config.crop_scale), flip=bool(config.flip))
    return from_detection_folder(folder, config.image_size, augmentation=augmentation, **data_settings(config))


def build(config, num_classes):
    from keras_mobilenets.app.runs import model_settings
    from keras_mobilenets.train.detection_training import create_detector

    return create_detector(config.arch, num_classes, **model_settings(config))


def task(config, model):
    from keras_mobilenets.train.detection_training import DetectionTask

    return DetectionTask(model.detector_config, config.class_loss)


def split_files(data):
    """split.json of a detection run: the image files of each split (the boxes stay in the annotations)."""
    return {name: [r.path for r in records] for name, records in data.records.items()}


def _pictures(out_dir, split, metrics, detections, images, records, class_names):
    from keras_mobilenets.train.detection_reports import plot_detections, plot_precision_recall

    shown = [{k: v[d["scores"] >= SHOW_SCORE] for k, v in d.items()} for d in detections[:PICTURE_IMAGES]]
    truths = [{"boxes": r.boxes, "classes": r.classes} for r in records[:PICTURE_IMAGES]]
    plot_detections(images[:PICTURE_IMAGES], shown, class_names, os.path.join(out_dir, "detections.png"),
                    truths=truths, title=f"{split} images: detections scoring >= {SHOW_SCORE} (ground truth "
                                         "dashed green)")
    plot_precision_recall(metrics, os.path.join(out_dir, "precision_recall.png"),
                          title=f"{split} split: precision-recall at IoU 0.5, mAP@.5 {metrics['map_50'] or 0:.3f}")


def evaluate_splits(model, data, splits=("validation", "test")):
    """{split: COCO metrics} of `model` on the data's held-out splits, and the last split's detections
    and images for the pictures."""
    from keras_mobilenets.train.detection_training import compiled_forward, evaluate_detector

    forward = compiled_forward(model)
    results, last = {}, None
    for split in splits:
        dataset = getattr(data, split)
        if dataset is None:
            continue
        metrics, detections, images = evaluate_detector(model, dataset, data.records[split], data.class_names,
                                                        pr_curve=True, forward=forward)
        last = (split, metrics, detections, images, data.records[split])
        results[split] = metrics
    return results, last


def _compact(metrics):
    """metrics.json keeps the numbers, not the 101-point curves (those are in precision_recall.png)."""
    return {k: v for k, v in metrics.items() if k not in ("recall", "precision_50")}


def finish(out_dir, model, data, config, result, seconds, resumed):
    """best.keras, metrics.json's content (without writing it), training curves and detection pictures;
    returns (the uncompiled model saved as best.keras, metrics)."""
    from keras_mobilenets.app.runs import _save_model, task_metrics
    from keras_mobilenets.train import reports

    # best.keras without the training losses in its compile config: it loads without this package's
    # loss classes (safe mode, Predictor, TF Serving export in a fresh process)
    trained, model = model, build(config, data.num_classes)
    model.set_weights(trained.get_weights())
    results, last = evaluate_splits(model, data)
    metrics = dict(task_metrics(config, data, result, seconds, resumed), detector=model.detector_config.to_dict())
    best_epoch = metrics["best_epoch"]
    metrics.update({split: _compact(values) for split, values in results.items()})
    _save_model(model, os.path.join(out_dir, "best.keras"))
    reports.plot_history(result.history, os.path.join(out_dir, "training_curves.png"), title=config.describe(),
                         best_epoch=best_epoch if config.recipe.restore_best else None, metric="map_50")
    if last is not None:
        _pictures(out_dir, *last, data.class_names)
        if (last[1]["map_50"] or 0.0) < 0.1:
            metrics["warning"] = (f"{last[0]} mAP@.5 is {last[1]['map_50'] or 0:.3f}: the detector found little. "
                                  "Try more epochs (--epochs), a larger --image-size for small objects, and "
                                  "check the boxes in the annotations")
    return model, metrics


def is_model(model):
    from keras_mobilenets.nets.detection import is_detector

    return is_detector(model)


def model_data(model_path, data, size):
    """The boxed data a saved detector is converted / quantized / evaluated with: its run folder's own
    splits (config.json next to it), or `data` (a COCO / VOC folder or "shapes", split 70/10/20)."""
    from keras_mobilenets.app.runs import saved_run_config
    from keras_mobilenets.data.detection import from_detection_folder

    if data is None:
        config = saved_run_config(model_path, "--data with a COCO or VOC folder (or shapes)")
        return load_data(replace(config, image_size=size[0]), data_dir(config.data))
    return from_detection_folder(data_dir(data), size, validation_split=0.1, test_split=0.2, augmentation=None)


def tflite_size(path):
    """The (height, width) a detector's TFLite file takes."""
    from keras_mobilenets.deploy.tflite import plain_interpreter

    return tuple(int(d) for d in plain_interpreter(path).get_input_details()[0]["shape"][1:3])


def evaluate_tflite(path, dataset, records, class_names, pr_curve=False):
    """`evaluate_detector` for a detector's TFLite file (LiteRT, its own post-processing op): (COCO
    metrics, detections, uint8 images)."""
    from keras_mobilenets.data.detection_metrics import coco_evaluate, split_detections
    from keras_mobilenets.deploy.detection_tflite import run_detector_tflite

    detections, images = [], []
    for batch, _ in dataset:
        detections += split_detections(run_detector_tflite(path, np.asarray(batch)))
        images.append(np.clip(np.asarray(batch), 0, 255).astype(np.uint8))
    return coco_evaluate(records, detections, class_names, pr_curve=pr_curve), detections, np.concatenate(images)


def evaluate_model(model, model_path, data=None, split="test", batch_size=32, out_dir=None):
    """COCO metrics of a saved detector (a .keras model, or `model=None` and a .tflite `model_path`) on a
    COCO / VOC folder (or "shapes"), or on its run's stored split; written to evaluation[_<split>].json with
    the pictures next to it (or in `out_dir`)."""
    from keras_mobilenets.app.runs import _read_config
    from keras_mobilenets.data.detection import detection_pipeline, record_dataset
    from keras_mobilenets.train.detection_training import evaluate_detector

    run_dir = os.path.dirname(os.path.abspath(model_path))
    size = tflite_size(model_path) if model is None else tuple(int(d) for d in model.inputs[0].shape[1:3])
    if data is None:
        split_path, config_path = (os.path.join(run_dir, n) for n in ("split.json", "config.json"))
        if not (os.path.exists(split_path) and os.path.exists(config_path)):
            raise ValueError(f"no data given and no split.json / config.json next to {model_path!r}: pass "
                             "--data with a COCO or VOC folder (or shapes)")
        config = _read_config(config_path)
        files = read_json(split_path, what="run's split").get(split) or []
        if not files:
            raise ValueError(f"split={split!r} is not allowed: the run has no images in that split")
        boxes = _boxes(data_dir(config.data))
        by_path = {r.path: r for r in boxes.records}
        records = [by_path[f] for f in files if f in by_path]
        name = f"evaluation_{split}"
    else:
        boxes = _boxes(data_dir(data))
        records = list(boxes.records)
        name = "evaluation"
    class_names = tuple(boxes.class_names)
    classes = len(class_names) if model is None else model.get_layer("class_logits").output.shape[-1] - 1
    if classes != len(class_names):
        raise ValueError(f"the model detects {classes} classes but the data has {len(class_names)} "
                         f"{class_names[:10]}")
    dataset = detection_pipeline(record_dataset(records), size, batch_size, training=False)
    if model is None:
        metrics, detections, images = evaluate_tflite(model_path, dataset, records, class_names, pr_curve=True)
        name += "_tflite"
    else:
        metrics, detections, images = evaluate_detector(model, dataset, records, class_names, pr_curve=True)
    out_dir = out_dir or run_dir
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, f"{name}.json"), _compact(metrics))
    from keras_mobilenets.train.detection_reports import plot_detections, plot_precision_recall

    shown = [{k: v[d["scores"] >= SHOW_SCORE] for k, v in d.items()} for d in detections[:PICTURE_IMAGES]]
    plot_detections(images[:PICTURE_IMAGES], shown, class_names, os.path.join(out_dir, f"{name}_detections.png"),
                    truths=[{"boxes": r.boxes, "classes": r.classes} for r in records[:PICTURE_IMAGES]])
    plot_precision_recall(metrics, os.path.join(out_dir, f"{name}_precision_recall.png"))
    return _compact(metrics)


def quantize_detector(model, data, out_dir, epochs, learning_rate, input_type, min_match, per_channel, verbose=1,
                      output_type="float32"):
    """`runs.quantize_run` for a detector: `fine_tune_qat_detector` on the training split, model_int8.tflite
    (qat-int8, ending in TFLite_Detection_PostProcess, parity report against the QAT model), and the COCO
    mAP of the float Keras model and of the int8 file on the held-out split in metrics.json."""
    from dataclasses import asdict

    from keras_mobilenets import optimize
    from keras_mobilenets.deploy.detection_tflite import export_detector_tflite
    from keras_mobilenets.train.detection_training import evaluate_detector

    split = "test" if data.test is not None else "validation"
    images = np.concatenate([np.asarray(x) for x, _ in getattr(data, split)])
    qat = optimize.fine_tune_qat_detector(model, data, epochs=epochs, learning_rate=learning_rate,
                                          per_channel=per_channel, verbose=verbose, out_dir=out_dir)
    path = os.path.join(out_dir, "model_int8.tflite")
    report = export_detector_tflite(qat, path, mode="qat-int8", sample=images, input_type=input_type,
                                    per_channel=per_channel, min_match=min_match, overwrite=True,
                                    max_detections=MAX_DETECTIONS, output_type=output_type)
    records, dataset = data.records[split], getattr(data, split)
    float_metrics = evaluate_detector(model, dataset, records, data.class_names)[0]
    int8_metrics = evaluate_tflite(path, dataset, records, data.class_names)[0]
    metrics = {"task": "detection", "split": split, "images": len(records), "qat_epochs": epochs,
               "float_keras_map_50": float_metrics["map_50"], "float_keras_map": float_metrics["map"],
               "int8_tflite_map_50": int8_metrics["map_50"], "int8_tflite_map": int8_metrics["map"],
               "tflite": asdict(report)}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
