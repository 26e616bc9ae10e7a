"""The `keras-mobilenets` command line."""

import argparse
import os
import subprocess
import sys

from keras_mobilenets.app import segmentation_runs
from keras_mobilenets.app.runs import STRATEGIES, TASKS
from keras_mobilenets.deploy.tflite import IO_TYPES, MODES
from keras_mobilenets.nets.models import ARCH_NAMES as ARCHS
from keras_mobilenets.train.recipe import POLICIES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONVERT_MODES = {
    "float32": "float32 weights and activations, the Keras model's numbers",
    "float16": "float16 weights (half the file), float32 compute on CPU",
    "dynamic": "int8 weights, float activations; no calibration data needed",
    "int8": "full integer post-training quantization, calibrated on the training images",
    "qat-int8": "quantization-aware: range calibration, --qat-epochs of QAT, then full integer",
}


PARITY_IMAGES = 256  # segmentation: held-out images in convert's mask parity report


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except None and off switches (and where the help says it already)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Bad command lines get one `Error: ...` line (exit code 2), like every other expected error."""

    def error(self, message):
        self.exit(2, f"Error: {message} (see {self.prog} --help)\n")


def _profile(args):
    from keras_mobilenets.analysis.profiling import profile
    from keras_mobilenets.nets.models import create_model

    model = create_model(args.arch, alpha=args.alpha, minimalistic=args.minimalistic,
                         input_shape=(args.resolution, args.resolution, 3),
                         include_top=not args.no_top, weights=None)
    print(f"{model.name}: {args.arch} alpha={args.alpha} {args.resolution}x{args.resolution}"
          f"{' minimalistic' if args.minimalistic else ''}")
    print(profile(model).table())
    return 0


def _reproduce(args):
    """Rebuild every network the papers report and compare MACs, parameters and peak memory."""
    from keras_mobilenets.analysis.profiling import profile
    from keras_mobilenets.nets.models import create_model
    from keras_mobilenets.analysis.papers import PUBLISHED, PUBLISHED_PEAK_BYTES

    failures = 0
    # the papers count conv and dense kernels only; `profile` counts every weight (BatchNorm, biases)
    print(f"{'model':<24}{'MMACs':>8}{'paper':>8}{'kernel M params':>17}{'paper':>7}{'all M params':>14}"
          "  source")
    for row in PUBLISHED:
        model = create_model(row.arch, alpha=row.alpha, minimalistic=row.minimalistic,
                             input_shape=(row.resolution, row.resolution, 3))
        report = profile(model)
        macs, params = report.macs / 1e6, report.kernel_params / 1e6
        ok = row.agrees(report.macs, report.kernel_params)
        failures += not ok
        label = f"{row.arch}{'-min' if row.minimalistic else ''} {row.alpha} {row.resolution}"
        print(f"{label:<24}{macs:>8.1f}{row.macs:>8}{params:>17.2f}{row.params:>7}"
              f"{report.params / 1e6:>14.2f}  {row.source}{'' if ok else '  MISMATCH'}")
    for arch, paper in PUBLISHED_PEAK_BYTES:
        peak = profile(create_model(arch, input_shape=(224, 224, 3))).peak_activation_bytes
        failures += peak != paper
        print(f"{arch} 1.0 224 peak activation bytes (16-bit): {peak:,} (paper: {paper:,})"
              f"{'' if peak == paper else '  MISMATCH'}")
    failures += _reproduce_v4()
    print("all published numbers reproduced" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


def _reproduce_v4():
    """MobileNetV4: Model Garden's parameter count must hold exactly (a failure otherwise); the paper's
    rounded MACs and parameters are shown beside ours, agreeing or not (see the README)."""
    from keras_mobilenets.analysis.papers import MODEL_GARDEN_CLASSIFIER, PUBLISHED_V4
    from keras_mobilenets.analysis.profiling import layer_macs, profile
    from keras_mobilenets.nets.models import create_model

    if not PUBLISHED_V4:
        return 0
    failures = agree = 0
    print(f"\n{'MobileNetV4':<24}{'GMACs':>7}{'(attention)':>12}{'paper':>7}{'trainable M':>13}{'paper':>7}"
          f"{'params':>12}{'Model Garden + Dense':>22}")
    for row in PUBLISHED_V4:
        model = create_model(row.arch, classes=1000, input_shape=(row.resolution, row.resolution, 3))
        report = profile(model)
        attention = sum(layer_macs(layer) for layer in model.layers if type(layer).__name__ == "Dot")
        garden = row.model_garden + MODEL_GARDEN_CLASSIFIER
        failures += report.params != garden
        paper = row.paper_agrees(report.macs, report.trainable_params)
        agree += paper
        print(f"{row.arch + ' ' + str(row.resolution):<24}{report.macs / 1e9:>7.3f}{attention / 1e9:>12.3f}"
              f"{row.gmacs:>7}{report.trainable_params / 1e6:>13.2f}{row.params:>7}{report.params:>12,}"
              f"{garden:>22,}{'' if report.params == garden else '  MISMATCH'}"
              f"{'' if paper else '  paper differs'}")
    print(f"MobileNetV4: parameter counts are Model Garden's; {agree} of {len(PUBLISHED_V4)} rows round to the "
          "paper's MACs and parameters (MACs count the attention's two matmuls; the larger models' paper "
          "figures are 5-8% below the tables Model Garden and timm build)")
    return failures


def _export(args):
    import keras

    from keras_mobilenets.deploy.serving import export_saved_model, rest_request_body, saved_model_cli_command

    model = keras.saving.load_model(args.model)
    result = export_saved_model(model, args.out, version=args.version, labels=args.labels,
                                overwrite=args.overwrite)
    print(f"exported version {result.version} to {result.path}")
    show = subprocess.run([*saved_model_cli_command(), "show", "--dir", result.path, "--all"],
                          capture_output=True, text=True)
    print(show.stdout if show.returncode == 0 else f"(saved_model_cli failed: {show.stderr[-500:]})")
    import numpy as np
    import tensorflow as tf

    sample = tf.io.encode_png(np.full((8, 8, 3), 128, np.uint8)).numpy()
    name = os.path.basename(os.path.normpath(args.out))
    print(f"REST: POST http://localhost:8501/v1/models/{name}:predict with a body like")
    print(rest_request_body([sample]))
    return 0


def _predict(args):
    from keras_mobilenets.deploy.predictor import Predictor

    if args.top_k < 1:
        raise ValueError(f"--top-k {args.top_k} is not allowed: allowed are 1 to the number of classes")
    predictor = Predictor(args.model, num_threads=args.threads, labels=args.labels)
    if predictor.detector:
        return _print_detections(predictor, args)
    if predictor.segmenter:
        return _write_masks(predictor, args)
    results = predictor.top_k(args.images, k=args.top_k)
    classes = min(len(best) for best in results)
    if args.top_k > classes:
        raise ValueError(f"--top-k {args.top_k} is not allowed: the model has {classes} classes "
                         f"(allowed: 1..{classes})")
    for image, best in zip(args.images, results):
        print(image + ": " + ", ".join(f"{label} {score:.4f}" for label, score in best))
    return 0


def _print_detections(predictor, args):
    """One line per box (label, score, pixel box), and each image drawn with its boxes in --draw."""
    from keras_mobilenets.train.detection_reports import draw_boxes
    from keras_mobilenets.train.reports import _figure

    results = predictor.detect(args.images, min_score=args.min_score)
    os.makedirs(args.draw, exist_ok=True)
    import numpy as np
    from PIL import Image

    for path, found in zip(args.images, results):
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("RGB"))
        height, width = image.shape[:2]
        print(f"{path}: {len(found)} object(s) scoring >= {args.min_score}")
        for item in found:
            ymin, xmin, ymax, xmax = item["box"]
            name = item["label"] if item["label"] is not None else f"class {item['class']}"
            print(f"  {name} {item['score']:.4f} box (x1, y1, x2, y2) = ({xmin * width:.0f}, {ymin * height:.0f}, "
                  f"{xmax * width:.0f}, {ymax * height:.0f}) px; normalized (ymin, xmin, ymax, xmax) = "
                  f"({ymin:.3f}, {xmin:.3f}, {ymax:.3f}, {xmax:.3f})")
        figure = _figure((6, 6 * height / max(1, width)))
        names = predictor.labels or [f"class {i}" for i in range(max([d["class"] for d in found], default=0) + 1)]
        draw_boxes(figure.subplots(), image, [d["box"] for d in found], [d["class"] for d in found], names,
                   [d["score"] for d in found])
        figure.tight_layout()
        target = os.path.join(args.draw, os.path.splitext(os.path.basename(path))[0] + "_boxes.png")
        figure.savefig(target, dpi=100)
        print(f"  drawn: {target}")
    return 0


def _write_masks(predictor, args):
    """Per image: the class map as a palette PNG at the image's own size (nearest-neighbour), an overlay
    of it on the image, both in --draw, and one line with each class' share of the pixels."""
    import numpy as np
    from PIL import Image

    from keras_mobilenets.train.segmentation_reports import overlay, palette

    masks = predictor.segment(args.images)
    classes = predictor._classes()
    names = predictor.labels or [f"class {i}" for i in range(classes)]
    colours = palette(classes)
    os.makedirs(args.draw, exist_ok=True)
    for path, mask in zip(args.images, masks):
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("RGB"))
        full = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(image.shape[1::-1], Image.NEAREST))
        stem = os.path.join(args.draw, os.path.splitext(os.path.basename(path))[0])
        written = Image.frombytes("P", full.shape[::-1], np.ascontiguousarray(full).tobytes())  # VOC-style
        written.putpalette(colours.ravel().tolist())
        written.save(stem + "_mask.png")
        Image.fromarray(overlay(image, full, classes)).save(stem + "_overlay.png")
        shares = ", ".join(f"{names[c]} {np.mean(full == c):.1%}" for c in np.unique(full))
        print(f"{path}: {shares}\n  mask: {stem}_mask.png, overlay: {stem}_overlay.png")
    return 0


def _train(args):
    from keras_mobilenets.app.runs import RunConfig, scratch_learning_rate, train_run
    from keras_mobilenets.train.recipe import Recipe

    from_scratch = args.weights in (None, "none")
    detection = args.task == "detection"
    segmentation = args.task == "segmentation"
    bundled = args.task != "classification"  # detection and segmentation: the bundled shapes, batch 16
    recipe = Recipe(
        epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_blocks="all" if args.fine_tune_blocks == "all" else int(args.fine_tune_blocks),
        freeze_backbone=not from_scratch, train_batchnorm=True if args.train_batchnorm else None,
        learning_rate=args.lr if args.lr is not None else
        (scratch_learning_rate(args.task) if from_scratch else 1e-3),
        fine_tune_learning_rate=args.fine_tune_lr,
        warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, early_stopping_patience=args.patience,
        recalibrate_batchnorm=4 if bundled else 16)
    config = RunConfig(
        task=args.task, class_loss=args.class_loss if detection else None, head=args.head,
        data=args.data or ("shapes" if bundled else "digits"), arch=args.arch, alpha=args.alpha,
        minimalistic=args.minimalistic,
        image_size=args.image_size, weights=None if from_scratch else args.weights,
        batch_size=args.batch_size or (16 if bundled else 32), validation_split=args.validation_split, test_split=args.test_split,
        seed=args.seed, flip=False if args.no_flip else "auto",
        crop_scale="auto" if args.min_crop == "auto" else (args.min_crop, 1.0),
        crop_fraction=args.crop_fraction, strict=args.strict, dropout=args.dropout,
        bn_momentum=args.bn_momentum,
        mixed_precision=args.mixed_precision, strategy=args.strategy, recipe=recipe)
    result = train_run(args.out, config, overwrite=args.overwrite, export_dir=args.export)
    if not result.metrics:
        return 0  # a non-chief multi-worker process: the chief writes the results
    metrics = result.metrics
    if result.finished_before:
        print(f"{args.out} already holds this finished run (pass --overwrite to train again)")
    for split in ("validation", "test"):
        if split in metrics and detection:
            print(_detection_line(split, metrics[split]))
        elif split in metrics and segmentation:
            print(_segmentation_line(split, metrics[split]))
        elif split in metrics:
            print(f"{split} accuracy: {metrics[split]['accuracy']:.4f} on {metrics[split]['images']} images")
    pictures = {"detection": "detections.png, precision_recall.png",
                "segmentation": "segmentation.png, class_iou.png"}.get(args.task, "confusion_matrix.png")
    print(f"best model: {os.path.join(args.out, 'best.keras')} (epoch {metrics['best_epoch']} of "
          f"{metrics['epochs']}); metrics.json, history.csv, training_curves.png, {pictures}")
    if metrics.get("export"):
        print(f"SavedModel for TF Serving: {metrics['export']}")
    if metrics.get("warning"):
        print(f"warning: {metrics['warning']}")
    return 0


def _detection_line(split, metrics):
    """One line of COCO numbers: mAP@[.5:.95], mAP@.5 and AP@.5 per class."""
    def number(value):
        return "n/a" if value is None else f"{value:.4f}"

    per_class = ", ".join(f"{name} {number(v)}" for name, v in metrics["per_class_ap_50"].items())
    return (f"{split}: mAP@.5 {number(metrics['map_50'])}, mAP@[.5:.95] {number(metrics['map'])} on "
            f"{metrics['num_images']} images with {metrics['num_boxes']} boxes; AP@.5 per class: {per_class}")


def _segmentation_line(split, metrics):
    """One line: mIoU, pixel accuracy and IoU per class."""
    per_class = ", ".join(f"{name} {'n/a' if v is None else f'{v:.4f}'}" for name, v in metrics["per_class_iou"].items())
    return (f"{split}: mIoU {metrics['miou']:.4f}, pixel accuracy {metrics['pixel_accuracy']:.4f} on "
            f"{metrics['images']} images; IoU per class: {per_class}")


def _evaluate(args):
    from keras_mobilenets.app.runs import evaluate_model

    metrics = evaluate_model(args.model, data_dir=args.data, split=args.split,
                             batch_size=args.batch_size, out_dir=args.out)
    if "map_50" in metrics:
        print(_detection_line(args.split if args.data is None else "data", metrics))
        return 0
    if "miou" in metrics:
        print(_segmentation_line(args.split if args.data is None else "data", metrics))
        return 0
    print(f"accuracy: {metrics['accuracy']:.4f} on {metrics['images']} images")
    for name, value in metrics["per_class_accuracy"].items():
        print(f"  {name}: {value:.4f}")
    return 0


def _convert_data(args, model):
    """(representative, sample) [0, 255] pipelines: the run's stored splits, or --data."""
    from keras_mobilenets import data as kd
    from keras_mobilenets.app.runs import stored_split
    from keras_mobilenets.data.datasets import digits

    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    run_dir = os.path.dirname(os.path.abspath(args.model))
    from keras_mobilenets.app import segmentation_runs

    if segmentation_runs.is_model(model):  # (image, mask) pipelines: the run's splits, or --data
        return segmentation_runs.model_pipelines(args.model, args.data, size)
    if args.data is None and os.path.exists(os.path.join(run_dir, "split.json")):
        return (stored_split(args.model, "train", size)[0],
                stored_split(args.model, "test validation", size)[0])
    if args.data is None:
        raise ValueError("--data is needed: the model is not in a run folder with a split.json")
    folder = digits() if args.data == "digits" else args.data
    data = kd.from_folder(folder, size, validation_split=0.2, augmentation=None)
    return data.train, data.validation


def _convert(args):
    import keras

    from keras_mobilenets.deploy.tflite import INT8_MODES, export_tflite

    if args.per_tensor and args.mode not in INT8_MODES:
        raise ValueError(f"--per-tensor is not allowed with --mode {args.mode}: it is for --mode int8 "
                         "and qat-int8")
    model = keras.saving.load_model(args.model)
    from keras_mobilenets.app import detection_runs, segmentation_runs

    if detection_runs.is_model(model):
        return _convert_detector(args, model)
    if args.regular_nms:
        raise ValueError("--regular-nms is not allowed for this model: it is for an SSDLite detector's file "
                         "(its TFLite_Detection_PostProcess op)")
    representative, sample = _convert_data(args, model)

    segmentation, float_model = segmentation_runs.is_model(model), model
    if args.mode == "qat-int8" and args.qat_epochs:
        # `fine_tune_qat`, the same QAT fit as `keras-mobilenets quantize` (which resumes; this does not)
        import tempfile

        from keras_mobilenets import optimize
        from keras_mobilenets.app.runs import model_data

        size = tuple(int(d) for d in model.inputs[0].shape[1:3])
        with tempfile.TemporaryDirectory() as scratch:
            if segmentation:  # the task's loss (ignore label left out), the best epoch by validation mIoU
                data = segmentation_runs.model_data(args.model, args.data, size)
                model = segmentation_runs.fine_tune_qat(model, data, scratch, args.qat_epochs, args.qat_lr,
                                                        per_channel=not args.per_tensor).model
            else:
                data = model_data(args.model, args.data, size)
                model = optimize.fine_tune_qat(model, data, scratch, epochs=args.qat_epochs,
                                               learning_rate=args.qat_lr, per_channel=not args.per_tensor).model
    elif args.mode == "qat-int8":  # calibration only
        from keras_mobilenets import optimize

        model = optimize.quantize_model(model, per_channel=not args.per_tensor)
        optimize.calibrate(model, representative)
    report = export_tflite(model, args.out, mode=args.mode, representative=representative, sample=sample,
                           input_type=args.input_type, output_type=args.output_type,
                           min_top1_agreement=args.min_agreement, overwrite=args.overwrite,
                           per_channel=not args.per_tensor)
    print(f"wrote {args.out}")
    print(report)
    if segmentation:
        from keras_mobilenets.deploy.segmentation_tflite import segmentation_parity

        parity = segmentation_parity(model, args.out, sample, limit=PARITY_IMAGES)
        keras = "QAT Keras" if model is not float_model else "Keras"
        print(f"held-out masks of {parity['images']} images: pixel agreement with {keras} "
              f"{parity['pixel_agreement']:.4f}; mIoU {keras} {parity['keras_miou']:.4f}, TFLite "
              f"{parity['tflite_miou']:.4f}; TFLite vs {keras} masks mIoU {parity['tflite_vs_keras_miou']:.4f}")
        if model is not float_model:  # QAT changed the weights: the file against the float model too
            against = segmentation_parity(float_model, args.out, sample, limit=PARITY_IMAGES)
            print(f"float Keras mIoU {against['keras_miou']:.4f} on the same images; pixel agreement of the "
                  f"file with the float model {against['pixel_agreement']:.4f}")
    return 0


def _convert_detector(args, model):
    """`convert` for an SSDLite .keras file: the same modes' int8 files end in TFLite_Detection_PostProcess;
    --min-agreement is the fraction of TFLite boxes matching a Keras box of the same class (IoU >= 0.5)."""
    from keras_mobilenets import optimize
    from keras_mobilenets.app import detection_runs
    from keras_mobilenets.deploy.detection_tflite import check_detector_arguments, export_detector_tflite

    check_detector_arguments(args.mode, args.output_type)  # before the data is read and QAT trains
    data = detection_runs.model_data(args.model, args.data, tuple(int(d) for d in model.inputs[0].shape[1:3]))
    sample = data.test if data.test is not None else data.validation
    reference = None
    if args.mode == "qat-int8":
        reference = model = optimize.fine_tune_qat_detector(model, data, epochs=args.qat_epochs,
                                                            learning_rate=args.qat_lr,
                                                            per_channel=not args.per_tensor)
    report = export_detector_tflite(model, args.out, mode=args.mode, representative=data.train, sample=sample,
                                    input_type=args.input_type, per_channel=not args.per_tensor,
                                    min_match=args.min_agreement, overwrite=args.overwrite, reference=reference,
                                    max_detections=detection_runs.MAX_DETECTIONS, output_type=args.output_type,
                                    use_regular_nms=args.regular_nms)
    print(f"wrote {args.out}")
    print(report)
    return 0


def _quantize(args):
    from keras_mobilenets.app.runs import quantize_run

    metrics = quantize_run(args.model, args.out, data_dir=args.data, epochs=args.epochs,
                           learning_rate=args.lr, input_type=args.input_type, output_type=args.output_type,
                           min_top1_agreement=args.min_agreement, overwrite=args.overwrite,
                           per_channel=not args.per_tensor)
    if metrics.get("task") == "detection":
        print(f"{metrics['split']} mAP@.5 on {metrics['images']} images: float Keras "
              f"{metrics['float_keras_map_50']:.4f}, QAT int8 TFLite {metrics['int8_tflite_map_50']:.4f}")
        print(f"wrote {metrics['tflite']['path']} ({metrics['tflite']['size_bytes'] / 1e6:.2f} MB); computing "
              f"in float: {', '.join(metrics['tflite']['non_int8_ops']) or 'none'}")
        return 0
    if metrics.get("task") == "segmentation":
        parity = metrics["parity"]
        print(f"{metrics['split']} mIoU on {metrics['images']} images: float Keras {metrics['float_keras_miou']:.4f}, "
              f"QAT Keras {metrics['qat_keras_miou']:.4f}, int8 TFLite {metrics['int8_tflite_miou']:.4f}; "
              f"pixel agreement with QAT Keras {parity['pixel_agreement']:.4f}, TFLite vs QAT Keras masks mIoU "
              f"{parity['tflite_vs_keras_miou']:.4f}")
        print(f"wrote {metrics['tflite']['path']} ({metrics['tflite']['size_bytes'] / 1e6:.2f} MB); "
              f"non-int8 ops: {', '.join(metrics['tflite']['non_int8_ops']) or 'none'}")
        return 0
    print(f"{metrics['split']} accuracy on {metrics['images']} images: float Keras "
          f"{metrics['float_keras_accuracy']:.4f}, QAT Keras {metrics['qat_keras_accuracy']:.4f}, "
          f"int8 TFLite {metrics['int8_tflite_accuracy']:.4f}")
    print(f"wrote {metrics['tflite']['path']} ({metrics['tflite']['size_bytes'] / 1e6:.2f} MB); "
          f"non-int8 ops: {', '.join(metrics['tflite']['non_int8_ops']) or 'none'}")
    return 0


def _auto(kind):
    """An argparse type: "auto" (chosen from the data when the run starts) or a `kind` value."""
    def parse(text):
        return "auto" if text == "auto" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def build_parser():
    parser = _Parser(prog="keras-mobilenets", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command name too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, **kwargs):
        return commands.add_parser(name, parents=[common], formatter_class=_Formatter, **kwargs)

    prof = command("profile", help="per-block params, MACs and activation memory")
    prof.add_argument("--arch", choices=ARCHS, default="v2", help="architecture")
    prof.add_argument("--alpha", type=float, default=1.0, help="width multiplier")
    prof.add_argument("--resolution", type=int, default=224, help="input size in pixels (square)")
    prof.add_argument("--minimalistic", action="store_true", help="V3 minimalistic variant")
    prof.add_argument("--no-top", action="store_true", help="profile the backbone without classifier")
    prof.set_defaults(run=_profile)

    export = command("export", help="SavedModel for TF Serving from a .keras model")
    export.add_argument("model", help="a .keras file")
    export.add_argument("--out", required=True, help="TF Serving base folder, e.g. saved_models/NAME")
    export.add_argument("--labels", help="class names, one per line")
    export.add_argument("--version", type=int, help="integer version (default: the next free one)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.set_defaults(run=_export)

    predict = command("predict", help="top-k classes of image files (a detector: boxes, printed and drawn; "
                                      "a segmentation model: mask and overlay PNGs)")
    predict.add_argument("--model", required=True, help="a .tflite file, a .keras file or a SavedModel")
    predict.add_argument("--labels", help="class names, one per line")
    predict.add_argument("--top-k", type=int, default=5, help="how many classes to print (1..classes)")
    predict.add_argument("--threads", type=int, default=2, help="LiteRT threads for .tflite")
    predict.add_argument("--min-score", type=float, default=0.3, help="detectors: the lowest score printed and drawn")
    predict.add_argument("--draw", default="predictions",
                         help="detectors: the folder where each image is written with its boxes drawn; "
                              "segmentation: where <name>_mask.png and <name>_overlay.png go")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF, BMP, WebP)")
    predict.set_defaults(run=_predict)

    train = command("train", help="fine-tune or train a classifier (or an SSDLite detector) on an image folder")
    train.add_argument("--task", choices=TASKS, default="classification",
                       help="classification, detection (SSDLite; COCO or VOC folders) or segmentation "
                            "(LR-ASPP; VOC or images/ + masks/ folders)")
    train.add_argument("--class-loss", choices=("auto", "focal", "sigmoid_hard_negative"), default="auto",
                       help='detection: the class-score loss ("auto": focal)')
    train.add_argument("--head", choices=tuple(segmentation_runs.HEADS),
                       help="segmentation: the model's head (default lraspp: LR-ASPP; deeplabv3: Mobile DeepLabv3 "
                            "without ASPP, output stride 16)")
    train.add_argument("--data", help='a class-per-subfolder image folder or "digits" (the bundled scans, the '
                       'default); detection: a COCO folder (instances.json), a VOC folder (Annotations/) or '
                       '"shapes" (the bundled boxes, the default); segmentation: a VOC folder (JPEGImages/, '
                       'SegmentationClass/), an images/ + masks/ folder or "shapes" (the default)')
    train.add_argument("--arch", choices=ARCHS, default="v2", help="architecture")
    train.add_argument("--alpha", type=_auto(float), default="auto",
                       help='width multiplier ("auto": 0.35 up to 5,000 training images, then wider)')
    train.add_argument("--minimalistic", action="store_true", help="V3 minimalistic variant")
    train.add_argument("--image-size", type=_auto(int), default="auto",
                       help='input size in pixels, square ("auto": from the images\' own size, 64-224)')
    train.add_argument("--weights", default="none",
                       help='"none" (from scratch, the default), "imagenet" or a weights file')
    train.add_argument("--epochs", type=_auto(int), default="auto",
                       help="stage 1 (head, or all layers from scratch)")
    train.add_argument("--fine-tune-epochs", type=int, default=0, help="stage 2: top blocks unfrozen")
    train.add_argument("--fine-tune-blocks", default="3", help='blocks unfrozen in stage 2, or "all"')
    train.add_argument("--train-batchnorm", action="store_true",
                       help="let BatchNorm layers train in stage 2 (frozen by default)")
    train.add_argument("--batch-size", type=int, help="images per training step (default 32; detection 16)")
    train.add_argument("--lr", type=float, help="peak learning rate (default from scratch 5e-3, detection 1e-2; 1e-3 else)")
    train.add_argument("--fine-tune-lr", type=float, default=1e-4, help="peak learning rate of stage 2")
    train.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up at each stage's start")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    train.add_argument("--label-smoothing", type=float, default=0.1, help="cross-entropy label smoothing")
    train.add_argument("--dropout", type=float, default=0.2, help="dropout before the new head")
    train.add_argument("--bn-momentum", type=_auto(float), default="auto",
                       help="BatchNorm momentum (default 0.9 from scratch, the architecture's otherwise)")
    train.add_argument("--patience", type=int, help="early stopping patience in epochs (default: none)")
    train.add_argument("--validation-split", type=float, default=0.1, help="fraction of each class held out "
                       "to pick the best epoch")
    train.add_argument("--test-split", type=float, default=0.2, help="fraction of each class held out for "
                       "the final test accuracy")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the augmentation and the initial weights")
    train.add_argument("--no-flip", action="store_true", help="no horizontal flips (digits, text)")
    train.add_argument("--min-crop", type=_auto(float), default="auto",
                       help="smallest random crop (area fraction)")
    train.add_argument("--crop-fraction", type=_auto(float), default="auto", help="eval center-crop fraction")
    train.add_argument("--strict", action="store_true", help="fail on the first bad image file")
    train.add_argument("--mixed-precision", choices=tuple(p for p in POLICIES if p and p.startswith("mixed")),
                       help="Keras mixed-precision policy (default: float32)")
    train.add_argument("--strategy", choices=tuple(s for s in STRATEGIES if s),
                       help="tf.distribute strategy (multi-worker reads TF_CONFIG)")
    train.add_argument("--out", required=True, help="the run folder, e.g. runs/NAME (re-run to resume)")
    train.add_argument("--export", help="export the best model for TF Serving here, e.g. saved_models/NAME")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a finished or different run in --out (only a folder keras-mobilenets wrote)")
    train.set_defaults(run=_train)

    evaluate = command("evaluate", help="accuracy and confusion matrix (a detector: COCO mAP) of a trained model")
    evaluate.add_argument("model", help="a .keras classifier or detector, e.g. runs/NAME/best.keras, or a "
                          "detector's .tflite file (COCO mAP with LiteRT)")
    evaluate.add_argument("--data", help='an image folder or "digits"; a detector: a COCO or VOC folder or '
                          '"shapes" (default: the run\'s stored split)')
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"),
                          help="which stored split of the run to use when --data is not given")
    evaluate.add_argument("--batch-size", type=int, default=32, help="images per step")
    evaluate.add_argument("--out", help="where evaluation.json and the PNG go (default: next to the model)")
    evaluate.set_defaults(run=_evaluate)

    convert = command("convert", help="TFLite file with a LiteRT parity report",
                      description="TFLite file with a LiteRT parity report. Modes:\n" + "\n".join(
                          f"  {mode:<9} {text}" for mode, text in CONVERT_MODES.items()))
    convert.add_argument("model", help="a .keras classifier, SSDLite detector or segmentation model (e.g. "
                         "runs/NAME/best.keras); a detector's file ends in TFLite_Detection_PostProcess (modes "
                         "float32, int8, qat-int8)")
    convert.add_argument("--mode", default="float32", choices=MODES,
                         help="what the file stores (see the modes above)")
    convert.add_argument("--out", required=True, help="the .tflite file to write")
    convert.add_argument("--data", help='image folder or "digits" (default: the run\'s stored splits)')
    convert.add_argument("--input-type", default="float32", choices=IO_TYPES,
                         help="the file's input type (integer types: int8 and qat-int8 modes)")
    convert.add_argument("--output-type", default="float32", choices=IO_TYPES,
                         help="the file's output type (integer types: int8 and qat-int8 modes)")
    convert.add_argument("--min-agreement", type=float, default=0.98,
                         help="fail (and write nothing) below this top-1 agreement with the Keras model")
    convert.add_argument("--qat-epochs", type=int, default=1, help="QAT epochs after range calibration (qat-int8); 0: calibration only")
    convert.add_argument("--qat-lr", type=float, default=1e-4, help="learning rate of the QAT epochs (qat-int8)")
    convert.add_argument("--per-tensor", action="store_true",
                         help="int8, qat-int8: one weight range per tensor instead of per channel "
                              "(a smaller file; QAT folds BatchNorm first)")
    convert.add_argument("--regular-nms", action="store_true",
                         help="detector: per-class NMS in the post-processing op (as the Keras model and the "
                              "SavedModel) instead of TFLite's fast NMS, one class per box")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    convert.set_defaults(run=_convert)

    quantize = command("quantize", help="QAT fine-tuning of a trained model, then int8 TFLite")
    quantize.add_argument("model", help="a .keras classifier, SSDLite detector or segmentation model (e.g. "
                          "runs/NAME/best.keras)")
    quantize.add_argument("--out", required=True, help="the QAT run folder (re-run to resume)")
    quantize.add_argument("--data", help='image folder or "digits"; a segmentation model: a VOC or images/ + '
                          'masks/ folder or "shapes" (default: the model\'s run folder)')
    quantize.add_argument("--epochs", type=int, default=2, help="QAT epochs")
    quantize.add_argument("--lr", type=float, default=1e-4, help="QAT learning rate")
    quantize.add_argument("--input-type", default="float32", choices=IO_TYPES,
                          help="the int8 file's input type")
    quantize.add_argument("--output-type", default="float32", choices=IO_TYPES,
                          help="the int8 file's output type")
    quantize.add_argument("--min-agreement", type=float, default=0.98,
                          help="fail (and write no .tflite) below this top-1 agreement with the QAT model")
    quantize.add_argument("--per-tensor", action="store_true",
                          help="one weight range per tensor (BatchNorm folded first): a smaller file")
    quantize.add_argument("--overwrite", action="store_true",
                          help="replace another quantize run in --out (only a folder keras-mobilenets wrote)")
    quantize.set_defaults(run=_quantize)

    repro = command("reproduce", help="check the papers' MACs and memory numbers")
    repro.set_defaults(run=_reproduce)

    # --- micro: TFLite Micro arena / flash (issue 18); the command lives in app/micro_cli.py ---
    from keras_mobilenets.app.micro_cli import add_micro_command

    add_micro_command(command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.debug:
        _quiet_libraries()
    try:
        return args.run(args)
    except Exception as error:
        if args.debug or not isinstance(error, _expected_errors()):
            raise
        from keras_mobilenets.nets.weights import WeightsUnavailableError

        message = " ".join(str(error).split())  # one line
        if isinstance(error, WeightsUnavailableError):
            message += " To train without pretrained weights use --weights none (weights=None in Python)."
        print(f"Error: {message}", file=sys.stderr)
        return 2


def _expected_errors():
    """What main() reports as one `Error:` line (exit code 2): bad input our code names; --debug shows
    the traceback. Anything else is a bug and keeps its traceback."""
    from keras_mobilenets.app.runs import RunLockedError

    return (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, RunLockedError)


def _quiet_libraries():
    """Silence library logging the user did not ask for (the converter's absl and TF Python logging)."""
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
