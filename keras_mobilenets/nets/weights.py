"""Pretrained weights: the official keras.applications ImageNet files, and loading with a fit check.

`weights="imagenet"` resolves the same file names (and, for V3, hashes) as keras.applications, looks in the
Keras cache first and downloads otherwise. Set KERAS_MOBILENETS_OFFLINE=1 to never download.
"""

import hashlib
import os
import re
import warnings
from dataclasses import dataclass

import h5py

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

# family -> (alphas with files, minimalistic alphas with files, input sizes with files)
PUBLISHED = {
    "v1": ((0.25, 0.5, 0.75, 1.0), (), (128, 160, 192, 224)),
    "v2": ((0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (), (96, 128, 160, 192, 224)),
    "v3_large": ((0.75, 1.0), (1.0,), (224,)),
    "v3_small": ((0.75, 1.0), (1.0,), (224,)),
}

# keras.applications' md5 hashes of the V3 files: (with top, without top).
V3_HASHES = {
    "large_224_0.75_float": ("765b44a33ad4005b3ac83185abf1d0eb", "40af19a13ebea4e2ee0c676887f69a2e"),
    "large_224_1.0_float": ("59e551e166be033d707958cf9e29a6a7", "07fb09a5933dd0c8eaafa16978110389"),
    "large_minimalistic_224_1.0_float": ("675e7b876c45c57e9e63e6d90a36599c",
                                         "ec5221f64a2f6d1ef965a614bdae7973"),
    "small_224_0.75_float": ("cb65d4e5be93758266aa0a7f2c6708b7", "ebdb5cc8e0b497cd13a7c275d475c819"),
    "small_224_1.0_float": ("8768d4c2e7dee89b9d02b2d03d65d862", "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "small_minimalistic_224_1.0_float": ("99cd97fb2fcdad2bf028eb838de69e37",
                                         "cde8136e733e811080d9fcd8a252f7e4"),
}

_V1_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}


class WeightsUnavailableError(FileNotFoundError):
    """The ImageNet file is neither in the Keras cache nor downloadable (offline, or no network)."""


@dataclass(frozen=True)
class WeightFile:
    """One official weight file: its name in the Keras cache, where it is published, its md5 (V3 only)."""

    name: str
    url: str
    md5: str | None
    published: bool


def keras_cache_dir():
    """The folder keras.utils.get_file caches model files in: $KERAS_HOME/models or ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def nearest_size(family, rows, cols):
    """The published input size closest to (rows, cols), and whether it differs from the model's."""
    sizes = PUBLISHED[family][2]
    if rows is None or cols is None:
        return 224, True
    wanted = (rows + cols) / 2
    size = min(sizes, key=lambda s: (abs(s - wanted), -s))
    return size, not (rows == cols == size)


def imagenet_file(family, alpha, size, include_top, minimalistic=False):
    """Describe the official file for this family / alpha / input size / top / minimalistic."""
    alphas, minimal_alphas, sizes = PUBLISHED[family]
    published = alpha in (minimal_alphas if minimalistic else alphas) and size in sizes
    if family == "v1":
        alpha_text = _V1_ALPHA_TEXT.get(alpha, f"{alpha:g}".replace(".", "_"))
        name = f"mobilenet_{alpha_text}_{size}_tf{'' if include_top else '_no_top'}.h5"
        return WeightFile(name, f"{BASE_URL}mobilenet/{name}", None, published)
    if family == "v2":
        name = (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}"
                f"{'' if include_top else '_no_top'}.h5")
        return WeightFile(name, f"{BASE_URL}mobilenet_v2/{name}", None, published)
    model_type = family.split("_")[1]
    key = f"{model_type}{'_minimalistic' if minimalistic else ''}_224_{float(alpha)}_float"
    name = f"weights_mobilenet_v3_{key}.h5" if include_top else f"weights_mobilenet_v3_{key}_no_top_v2.h5"
    md5 = V3_HASHES[key][0 if include_top else 1] if key in V3_HASHES else None
    return WeightFile(name, f"{BASE_URL}mobilenet_v3/{name}", md5, published)


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(weight_file, description):
    """Path of `weight_file` in the Keras cache, downloading it if published and allowed."""
    cache = keras_cache_dir()
    path = os.path.join(cache, weight_file.name)
    if os.path.isfile(path):
        if weight_file.md5 is None or _md5(path) == weight_file.md5:
            return path
        problem = f"{path} is in the cache but its md5 is not {weight_file.md5} (corrupt or a different file)"
    else:
        problem = f"{weight_file.name} is not in the Keras cache ({cache})"
    if not weight_file.published:
        raise ValueError(
            f"No ImageNet weights are published for {description}: {problem}. Use a published "
            "combination, weights=None, or weights='/path/to/your.h5'; a file of your own named "
            f"{weight_file.name} placed in {cache} is used as is."
        )
    if os.environ.get("KERAS_MOBILENETS_OFFLINE", "") not in ("", "0"):
        raise WeightsUnavailableError(
            f"{problem}, and downloads are off (KERAS_MOBILENETS_OFFLINE). Download {weight_file.url} "
            f"and put it at {path}, or pass weights='/path/to/{weight_file.name}'."
        )
    import keras

    try:
        return keras.utils.get_file(weight_file.name, weight_file.url, cache_subdir="models",
                                    cache_dir=os.path.dirname(cache), file_hash=weight_file.md5)
    except Exception as error:
        raise WeightsUnavailableError(
            f"{problem}, and downloading {weight_file.url} failed ({error}). Download it elsewhere and "
            f"put it at {path}, or pass weights='/path/to/{weight_file.name}'."
        ) from error


def resolve_imagenet(arch, alpha, input_shape, include_top):
    """The cached path of the ImageNet file for this model; warns once when the resolution differs."""
    if arch.family not in PUBLISHED:
        raise ValueError(
            f'weights="imagenet" is not available for the custom architecture {arch.name!r}: '
            "pass weights=None or the path of a weights file"
        )
    rows, cols = input_shape[0], input_shape[1]
    size, differs = nearest_size(arch.family, rows, cols)
    if differs:
        given = "an open input size" if rows is None or cols is None else f"input size {rows}x{cols}"
        warnings.warn(
            f"No ImageNet weights are published for {given}; loading the "
            f"{size}x{size} weights (published sizes: {PUBLISHED[arch.family][2]}).",
            UserWarning, stacklevel=3,
        )
    weight_file = imagenet_file(arch.family, alpha, size, include_top, arch.minimalistic)
    description = (f"{arch.family} alpha={alpha}{' minimalistic' if arch.minimalistic else ''} "
                   f"at {size}x{size} (include_top={include_top})")
    return fetch(weight_file, description)


def _snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _model_entries(model, keyed_by_class):
    """[(key, layer name, shapes)] for the layers with weights, in the order the format stores them."""
    entries, used = [], {}
    for layer in model.layers:
        key = layer.name
        if keyed_by_class:
            base = _snake_case(type(layer).__name__)
            count = used.get(base)
            used[base] = 0 if count is None else count + 1
            key = base if count is None else f"{base}_{count + 1}"
        weights = layer.trainable_weights + layer.non_trainable_weights
        if weights:
            entries.append((key, layer.name, [tuple(w.shape) for w in weights]))
    return entries


def _file_entries(path):
    """[(key, shapes)] of the layers with weights in a legacy .h5 or a Keras 3 .weights.h5 file."""
    with h5py.File(path, "r") as handle:
        if "layer_names" in handle.attrs or "model_weights" in handle:
            group = handle["model_weights"] if "model_weights" in handle else handle
            entries = []
            for raw in group.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else raw
                weight_names = [w.decode() if isinstance(w, bytes) else w
                                for w in group[name].attrs["weight_names"]]
                if weight_names:
                    entries.append((name, [tuple(group[name][w].shape) for w in weight_names]))
            return entries, False
        entries = []
        for key, layer_group in handle.get("layers", {}).items():
            variables = layer_group.get("vars", {})
            if len(variables):
                entries.append((key, [tuple(variables[str(i)].shape) for i in range(len(variables))]))
        return entries, True


def _unreadable(path, error):
    return ValueError(f"weights={path!r} cannot be read as a Keras weights file (HDF5 .h5 or .weights.h5): "
                      f"{error}. Pass the path of an intact weights file, or weights=None.")


def check_fit(model, path):
    """Raise a ValueError naming the first layer whose weights in `path` do not fit `model`.

    Keras 3 files (.weights.h5) are matched by key, legacy .h5 files (the official ones, written by
    tf.keras 2.x with its own layer names) by order and shapes, as Keras' loader matches them.
    """
    try:
        file_entries, keyed_by_class = _file_entries(path)
    except (OSError, KeyError, ValueError) as error:  # not HDF5, truncated, or not a weights layout
        raise _unreadable(path, error) from None
    model_entries = _model_entries(model, keyed_by_class)
    if keyed_by_class:
        found = dict(file_entries)
        for key, layer_name, shapes in model_entries:
            if found.get(key) != shapes:
                raise ValueError(
                    f"Weights file {path} does not fit this model: layer {layer_name!r} ({key}) needs "
                    f"weights of shapes {shapes}, the file has {found.get(key, 'none')}."
                )
        return
    for position, (_, layer_name, shapes) in enumerate(model_entries):
        if position >= len(file_entries):
            raise ValueError(
                f"Weights file {path} does not fit this model: it has {len(file_entries)} layers with "
                f"weights, the model needs {len(model_entries)}; first missing layer: {layer_name!r}."
            )
        file_name, file_shapes = file_entries[position]
        if file_shapes != shapes:
            raise ValueError(
                f"Weights file {path} does not fit this model: first mismatching layer is {layer_name!r} "
                f"(layer {position + 1} with weights, shapes {shapes}); the file has {file_name!r} "
                f"(shapes {file_shapes}) in its place."
            )
    if len(file_entries) > len(model_entries):
        raise ValueError(
            f"Weights file {path} does not fit this model: it has {len(file_entries)} layers with "
            f"weights, the model has {len(model_entries)}; first extra layer: "
            f"{file_entries[len(model_entries)][0]!r}."
        )


def load_weights(model, path):
    """Check that `path` fits `model` layer by layer, then load it."""
    check_fit(model, path)
    try:
        model.load_weights(path)
    except OSError as error:  # the layout read, the data did not (a file cut short)
        raise _unreadable(path, error) from None
    return model
