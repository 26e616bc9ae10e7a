"""Pictures of a segmentation run: masks over images, and IoU per class."""

import numpy as np

from keras_mobilenets.extras import require
from keras_mobilenets.train.reports import _figure

IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes):
    """An RGB colour per class id (class 0, usually background, black), as uint8 [num_classes, 3]."""
    colormaps = require("matplotlib", "train").colormaps

    colours = (np.asarray(colormaps["tab10" if num_classes <= 11 else "tab20"].colors) * 255).astype(np.uint8)
    return np.concatenate([[[0, 0, 0]], colours[np.arange(num_classes - 1) % len(colours)]]).astype(np.uint8)


def overlay(image, mask, num_classes, alpha=0.6, ignore_label=255):
    """`image` (uint8 [H, W, 3]) with every non-background pixel of `mask` tinted by its class colour
    (ignore-label pixels white)."""
    colours = np.concatenate([palette(num_classes), np.tile(IGNORE_COLOUR, (256 - num_classes, 1))]).astype(np.float32)
    mask = np.asarray(mask).astype(np.int64).clip(0, 255)
    tinted = (1 - alpha) * image.astype(np.float32) + alpha * colours[mask]
    return np.where((mask > 0)[..., None], tinted, image).round().astype(np.uint8)


def plot_masks(images, truths, predictions, class_names, path, title=None):
    """One row per image: the image, its true mask over it, the predicted mask over it."""
    rows = max(1, len(images))
    fig = _figure((9, 3 * rows))
    axes = np.asarray(fig.subplots(rows, 3)).reshape(rows, 3)
    for row, (image, truth, predicted) in enumerate(zip(images, truths, predictions)):
        for ax, shown, name in zip(axes[row], (image, overlay(image, truth, len(class_names)),
                                               overlay(image, predicted, len(class_names))),
                                   ("image", "true mask", "predicted mask")):
            ax.imshow(shown)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    colours = palette(len(class_names)) / 255
    Patch = require("matplotlib.patches", "train").Patch
    handles = [Patch(color=c, label=n) for c, n in zip(colours[1:], class_names[1:])]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(path, dpi=80)
    return path


def plot_class_iou(per_class_iou, path, title=None):
    """A bar per class (by name) with its IoU written on it; a class without pixels shows n/a."""
    names = list(per_class_iou)
    values = [per_class_iou[n] for n in names]
    fig = _figure((max(5.5, 0.6 * len(names) + 2), 3.5))
    ax = fig.subplots()
    ax.bar(range(len(names)), [v or 0.0 for v in values], color="tab:blue")
    for i, value in enumerate(values):
        ax.text(i, (value or 0.0) + 0.02, "n/a" if value is None else f"{value:.2f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), labels=names, rotation=90 if len(names) > 10 else 0)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("IoU")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
