"""Pictures of a training run: curves from the CSV history and the confusion matrix."""

import os

import numpy as np

from keras_mobilenets.extras import require


def _figure(figsize):
    """A pyplot-free figure: writing a PNG never switches the caller's backend (notebooks keep theirs)."""
    Figure = require("matplotlib.figure", "train").Figure

    return Figure(figsize=figsize)


def plot_history(rows, path, title=None, best_epoch=None, metric="accuracy"):
    """Loss and `metric` (accuracy; a detector's map_50) per epoch, train and validation, from
    `training.read_history` rows.

    `best_epoch` (1-based) marks the epoch whose weights the run kept, with a vertical line.
    """
    epochs = [r["epoch"] + 1 for r in rows]
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("loss", metric)):
        for prefix, style in (("", "-"), ("val_", "--")):
            if rows and prefix + name in rows[0]:
                ax.plot(epochs, [r[prefix + name] for r in rows], style,
                        label=("validation " if prefix else "train ") + name)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:red", linestyle=":", label=f"kept: best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_confusion(matrix, class_names, path, title=None):
    """Counts per (true, predicted) class, with the numbers written in the cells."""
    matrix = np.asarray(matrix)
    size = max(4, 0.5 * len(class_names) + 2)
    fig = _figure((size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=90 if len(class_names) > 10 else 0)
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > threshold else "black", fontsize=8)
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(title or f"accuracy {accuracy:.2%} on {matrix.sum()} images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return os.fspath(path)
