"""Pictures of a detector: boxes drawn on images, and precision-recall curves from `coco_evaluate`."""

import os

import numpy as np

from keras_mobilenets.extras import require
from keras_mobilenets.train.reports import _figure

TRUTH_COLOUR = "lime"


def _colour(label):
    return f"C{int(label) % 10}"


def draw_boxes(ax, image, boxes=(), classes=(), class_names=None, scores=None, truth=None, title=None):
    """Draw `image` ([H, W, 3], uint8 or float in [0, 255]) on `ax` with normalized (ymin, xmin, ymax, xmax)
    `boxes` labelled by class (and score); `truth` (boxes, classes) adds the ground truth dashed in green."""
    Rectangle = require("matplotlib.patches", "train").Rectangle

    image = np.asarray(image)
    height, width = image.shape[:2]
    ax.imshow(np.clip(image, 0, 255).astype(np.uint8) if image.dtype != np.uint8 else image)
    layers = []
    if truth is not None:
        layers.append((np.asarray(truth[0]).reshape(-1, 4), np.asarray(truth[1]).reshape(-1), None, True))
    layers.append((np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes).reshape(-1),
                   None if scores is None else np.asarray(scores).reshape(-1), False))
    for layer_boxes, layer_classes, layer_scores, is_truth in layers:
        for index, (box, label) in enumerate(zip(layer_boxes, layer_classes)):
            if label < 0:
                continue  # padding of a fixed-size target
            ymin, xmin, ymax, xmax = box * [height, width, height, width]
            colour = TRUTH_COLOUR if is_truth else _colour(label)
            ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=colour,
                                   linewidth=1.5, linestyle="--" if is_truth else "-"))
            if not is_truth:
                name = class_names[label] if class_names is not None else str(label)
                text = name if layer_scores is None else f"{name} {layer_scores[index]:.2f}"
                ax.text(xmin, ymin, text, color="white", fontsize=7, va="bottom",
                        bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def plot_detections(images, detections, class_names, path, truths=None, columns=4, title=None):
    """A grid of images with their detections (dicts of "boxes", "classes", "scores") and, given
    `truths` (dicts of "boxes", "classes"), the ground truth dashed in green; written to `path`."""
    images = list(images)
    rows = max(1, -(-len(images) // columns))
    fig = _figure((3 * columns, 3 * rows))
    axes = np.asarray(fig.subplots(rows, columns)).reshape(-1)
    for index, ax in enumerate(axes):
        if index >= len(images):
            ax.set_axis_off()
            continue
        found = detections[index]
        truth = None if truths is None else (truths[index]["boxes"], truths[index]["classes"])
        draw_boxes(ax, images[index], found["boxes"], found["classes"], class_names, found.get("scores"), truth)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return os.fspath(path)


def plot_precision_recall(metrics, path, title=None):
    """Precision against recall at IoU 0.5, one line per class, from `coco_evaluate(..., pr_curve=True)`."""
    if "precision_50" not in metrics:
        raise ValueError("metrics has no 'precision_50': compute it with coco_evaluate(..., pr_curve=True)")
    fig = _figure((5, 4))
    ax = fig.subplots()
    recall = metrics["recall"]
    for index, (name, precision) in enumerate(metrics["precision_50"].items()):
        ap = metrics.get("per_class_ap_50", {}).get(name)
        label = f"{name} (AP@.5 {ap:.3f})" if ap is not None else f"{name} (no boxes)"
        ax.plot(recall, precision, color=_colour(index), label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    value = metrics.get("map_50")
    ax.set_title(title or ("precision-recall at IoU 0.5" + (f", mAP@.5 {value:.3f}" if value is not None else "")))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return os.fspath(path)
