"""The one preprocessing contract, and ImageNet label decoding.

Models built with include_preprocessing=True (the V3 default) take [0, 255] pixels and carry their own
Rescaling layer; the others take [-1, 1], which `preprocess_input` produces from [0, 255].
"""

import json
import os
import warnings

import numpy as np

from keras_mobilenets.nets.flavors import flavor_of, unwrapped
from keras_mobilenets.nets.weights import WeightFile, fetch

CLASS_INDEX = WeightFile(
    "imagenet_class_index.json",
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
    "c2c37ea517e94d9795004a39431a14cb",
    True,
)
_class_index = None


def includes_preprocessing(model):
    """True when `model` rescales [0, 255] pixels itself (a Rescaling layer right after its input)."""
    rescaling = flavor_of(model).layers.Rescaling  # QAT's QuantizableRescaling is a Rescaling too
    return any(isinstance(unwrapped(layer), rescaling) for layer in model.layers[:3])


def preprocess_input(x, data_format=None, model=None):
    """Scale [0, 255] pixels to [-1, 1] (keras.applications' "tf" mode for MobileNetV1/V2).

    Pass `model` to make the call safe for every version: a model that includes its own preprocessing
    gets `x` unchanged, so pixels are never normalized twice.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(f"data_format={data_format!r} is not allowed: only 'channels_last' is supported")
    if model is not None and includes_preprocessing(model):
        return x
    if isinstance(x, np.ndarray):
        return x.astype("float32", copy=False) / 127.5 - 1.0
    return x / 127.5 - 1.0


def _load_class_index():
    """keras' imagenet_class_index.json from the Keras cache (or a download); ImageNet wnids otherwise."""
    global _class_index
    if _class_index is None:
        try:
            with open(fetch(CLASS_INDEX, "decode_predictions")) as handle:
                _class_index = {int(k): tuple(v) for k, v in json.load(handle).items()}
        except OSError as error:
            import tensorflow_datasets

            labels = os.path.join(os.path.dirname(tensorflow_datasets.__file__), "datasets",
                                  "imagenet2012", "labels.txt")
            with open(labels) as handle:
                wnids = handle.read().split()
            warnings.warn(f"{error} Returning WordNet ids as class descriptions.", stacklevel=3)
            _class_index = {i: (wnid, wnid) for i, wnid in enumerate(wnids)}
    return _class_index


def decode_predictions(preds, top=5):
    """[(wnid, description, score)] for the `top` classes of each row of (n, 1000) ImageNet scores."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            f"preds with shape {preds.shape} is not allowed: decode_predictions expects (samples, 1000)"
        )
    index = _load_class_index()
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([index[int(i)] + (float(row[i]),) for i in best])
    return results
