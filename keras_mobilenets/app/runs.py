"""A training run folder: data -> classifier -> recipe -> best model, metrics and pictures, resumable.

`train_run(out_dir, RunConfig(...))` is what `keras-mobilenets train` calls. The folder keeps
config.json (a resumed run must use the same settings), split.json, labels.txt, history.csv, the backups,
and at the end best.keras, metrics.json, training_curves.png and confusion_matrix.png.
"""

import contextlib
import fcntl
import json
import math
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from keras_mobilenets.app import detection_runs, segmentation_runs
from keras_mobilenets.data import pipelines as kd
from keras_mobilenets.data.datasets import digits
from keras_mobilenets.fileio import read_json, write_atomic, write_json
from keras_mobilenets.nets.flavors import flavor_of
from keras_mobilenets.train import recipe as training
from keras_mobilenets.train import reports
from keras_mobilenets.extras import require

STRATEGIES = (None, "mirrored", "multi-worker")
# Each task but classification is a module with the same functions (data_dir, resolve, load_data, build,
# task, split_files, finish, is_model, evaluate_model, MODEL_NAME): `train_run` looks the task up here,
# so a new task is a new entry, not a new branch in every step.
TASK_RUNS = {"detection": detection_runs, "segmentation": segmentation_runs}
TASKS = ("classification", *TASK_RUNS)
CLASS_LOSSES = (None, "auto", "focal", "sigmoid_hard_negative")  # a detector's class loss
AUTO = "auto"
ARCH_NAMES = {"v1": "MobileNetV1", "v2": "MobileNetV2", "v3-large": "MobileNetV3-Large",
              "v3-small": "MobileNetV3-Small",
              "v4-conv-small": "MobileNetV4-Conv-S", "v4-conv-medium": "MobileNetV4-Conv-M",
              "v4-conv-large": "MobileNetV4-Conv-L", "v4-hybrid-medium": "MobileNetV4-Hybrid-M",
              "v4-hybrid-large": "MobileNetV4-Hybrid-L", "edgetpu": "MobileNet-EdgeTPU",
              "multi-avg": "MobileNet-MultiAVG", "multi-max": "MobileNet-MultiMAX",
              "multi-avg-seg": "MobileNet-MultiAVG-Seg", "multi-max-seg": "MobileNet-MultiMAX-Seg"}


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run trains; stored in config.json and checked on resume.

    Fields set to "auto" (the defaults) are chosen from the data by `resolve` when the run starts, and
    config.json stores the chosen values. From scratch: the image size from the images' own size, the
    width and epoch count from the number of training images, crops that keep most of the image,
    BatchNorm momentum 0.9, no flips on digits. With `weights`: 224 px, width 1.0, ImageNet crops and the
    two-stage transfer recipe. `recipe=None` is the recipe that suits `weights`.
    """

    data: str = "digits"
    arch: str = "v2"
    alpha: float | str = AUTO
    minimalistic: bool = False
    image_size: int | str = AUTO
    weights: str | None = None
    batch_size: int = 32
    validation_split: float = 0.1
    test_split: float = 0.2
    seed: int = 0
    flip: bool | str = AUTO
    crop_scale: tuple | str = AUTO
    crop_fraction: float | str = AUTO
    strict: bool = False
    cache: bool = True
    dropout: float = 0.2
    bn_momentum: float | None | str = AUTO
    mixed_precision: str | None = None
    strategy: str | None = None
    recipe: training.Recipe | None = None
    task: str = "classification"
    class_loss: str | None = None  # detection: "auto" picks one (see detection_runs.resolve)
    head: str | None = None  # segmentation: "lraspp" (None: the same) or "deeplabv3"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not allowed: task must be one of {TASKS}")
        if self.class_loss not in CLASS_LOSSES:
            raise ValueError(f"class_loss={self.class_loss!r} is not allowed: class_loss must be one of "
                             f"{CLASS_LOSSES} (None: the task's choice)")
        if self.head is not None and self.task != "segmentation":
            raise ValueError(f"head={self.head!r} is not allowed with task={self.task!r}: the head is chosen "
                             "for segmentation runs only")
        if self.head not in (None, *segmentation_runs.HEADS):
            raise ValueError(f"head={self.head!r} is not allowed: head must be one of "
                             f"{tuple(segmentation_runs.HEADS)} (None: lraspp)")
        if self.task in TASK_RUNS and self.strategy == "multi-worker":
            raise ValueError(f"strategy='multi-worker' is not allowed with task={self.task!r}: only "
                             "classifiers train in tf_keras, and Keras 3 multi-worker runs fail "
                             "(keras-team/keras#20585)")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not allowed: strategy must be one of {STRATEGIES}")
        if self.mixed_precision not in training.POLICIES:
            raise ValueError(f"mixed_precision={self.mixed_precision!r} is not allowed: must be one of "
                             f"{training.POLICIES}")

    def to_json(self):
        payload = asdict(self)
        if not isinstance(self.crop_scale, str):
            payload["crop_scale"] = list(self.crop_scale)
        return payload

    @classmethod
    def from_json(cls, payload):
        payload = dict(payload)
        if payload["recipe"] is not None:
            payload["recipe"] = training.Recipe(**payload["recipe"])
        if not isinstance(payload["crop_scale"], str):
            payload["crop_scale"] = tuple(payload["crop_scale"])
        return cls(**payload)

    @property
    def from_scratch(self):
        return self.weights in (None, "none", "None")

    def describe(self):
        """The architecture in words, e.g. "MobileNetV2 0.35, 64 px" (a resolved config)."""
        name = ARCH_NAMES.get(self.arch, self.arch) + (" minimalistic" if self.minimalistic else "")
        if self.task in TASK_RUNS:
            name = TASK_RUNS[self.task].MODEL_NAME.format(name, head=segmentation_runs.HEADS[self.head or "lraspp"])
        return f"{name} {self.alpha:g}, {self.image_size} px" + (", from scratch" if self.from_scratch else "")

    @property
    def flavor(self):
        """Keras 3's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): use tf_keras."""
        return "tf_keras" if self.strategy == "multi-worker" else "keras"


@dataclass
class RunResult:
    out_dir: str
    model: object
    metrics: dict
    resumed: bool = False
    finished_before: bool = False
    export: object = None


def make_strategy(name):
    """None, a MirroredStrategy over every GPU (or every logical CPU) or a MultiWorkerMirroredStrategy."""
    import tensorflow as tf

    if name is None:
        return None
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


def _task_runs(config):
    """The module of the run's task (detection_runs, segmentation_runs), or None for classification."""
    return TASK_RUNS.get(config.task)


def _data_dir(config):
    if _task_runs(config):
        return _task_runs(config).data_dir(config.data)
    return digits() if config.data == "digits" else config.data


def _folder_stats(directory, sample=200):
    """(number of images, median short side in pixels) of a class-per-subfolder folder, from the
    headers of up to `sample` files spread over it (unreadable files are left out)."""
    Image = require("PIL.Image", "train")

    files, _, _ = kd.scan_folder(directory)
    sides = []
    for path in files[::max(1, len(files) // sample)]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # noqa: BLE001 - a bad file is reported by the validation pass, not here
            continue
    return len(files), int(np.median(sides)) if sides else 224


def auto_image_size(side):
    """From scratch: the images' own size rounded up to a multiple of 32 (MobileNets downsample by 32),
    at least 64 (a 2x2 last feature map) and at most 224 (ImageNet's)."""
    return int(min(224, max(64, 32 * math.ceil(side / 32))))


def auto_alpha(train_images):
    """From scratch: a narrow network for few images (fewer weights to fit, faster epochs)."""
    for limit, alpha in ((5_000, 0.35), (20_000, 0.5), (100_000, 0.75)):
        if train_images <= limit:
            return alpha
    return 1.0


def resolve(config):
    """(`config` with every "auto" field chosen, {field: chosen value}) -- see `RunConfig`."""
    if _task_runs(config):
        return _task_runs(config).resolve(config, _data_dir(config))
    scratch = config.from_scratch
    images, side = _folder_stats(_data_dir(config))
    train_images = max(1, round(images * (1 - config.validation_split - config.test_split)))
    chosen = {"image_size": auto_image_size(side) if scratch else 224,
              "alpha": auto_alpha(train_images) if scratch else 1.0,
              "flip": config.data != "digits",
              "crop_scale": (0.6, 1.0) if scratch else (0.08, 1.0),
              "crop_fraction": 1.0 if scratch else 0.875,
              "bn_momentum": 0.9 if scratch else None}
    chosen = {k: v for k, v in chosen.items() if getattr(config, k) == AUTO}
    recipe = config.recipe
    if recipe is None:
        recipe = training.Recipe(epochs=AUTO, freeze_backbone=False, learning_rate=5e-3) if scratch \
            else training.Recipe()
    if recipe.epochs == AUTO:
        epochs = training.auto_epochs(train_images, config.batch_size) if scratch else 10
        chosen["epochs"] = epochs
        recipe = replace(recipe, epochs=epochs)
    resolved = replace(config, recipe=recipe, **{k: v for k, v in chosen.items() if k != "epochs"})
    chosen["images"], chosen["side"], chosen["train_images"] = images, side, train_images
    return resolved, chosen


def scratch_learning_rate(task):
    """The peak learning rate of a run from scratch: the task's own `AUTO_LR` where it has one, else 5e-3."""
    return getattr(TASK_RUNS.get(task), "AUTO_LR", 5e-3)


def resolve_task(config, images, side, choices, auto_epochs, extra=None):
    """`resolve` for a task of TASK_RUNS: `choices(scratch, train_images, side)` gives the task's "auto"
    values (those the config leaves "auto" are taken), `extra` what the task adds (a class loss); the
    recipe is the from-scratch one (few BatchNorm recalibration batches), epochs from `auto_epochs`."""
    scratch = config.from_scratch
    train_images = max(1, round(images * (1 - config.validation_split - config.test_split)))
    chosen = {k: v for k, v in choices(scratch, train_images, side).items() if getattr(config, k) == AUTO}
    chosen.update(extra or {})
    recipe = config.recipe or training.Recipe(epochs=AUTO, freeze_backbone=not scratch,
                                              learning_rate=scratch_learning_rate(config.task),
                                              fine_tune_epochs=0 if scratch else 10, recalibrate_batchnorm=4)
    if recipe.epochs == AUTO:
        epochs = auto_epochs(train_images, config.batch_size) if scratch else 10
        chosen["epochs"] = epochs
        recipe = replace(recipe, epochs=epochs)
    resolved = replace(config, recipe=recipe, **{k: v for k, v in chosen.items() if k != "epochs"})
    chosen.pop("crop_fraction", None)  # a classifier's evaluation crop: these tasks see the whole image
    chosen["images"], chosen["side"], chosen["train_images"] = images, side, train_images
    return resolved, chosen


def data_settings(config):
    """The keyword arguments every run's folder reader takes from the config (besides image size and augmentation)."""
    return dict(batch_size=config.batch_size, validation_split=config.validation_split,
                test_split=config.test_split, seed=config.seed, strict=config.strict, cache=config.cache)


def model_settings(config):
    """The keyword arguments every run's model builder takes from the config (besides the architecture)."""
    return dict(alpha=config.alpha, image_size=config.image_size, minimalistic=config.minimalistic,
                weights=config.weights if config.weights not in ("none", "None") else None,
                bn_momentum=config.bn_momentum)


def task_metrics(config, data, result, seconds, resumed, replicas=1):
    """The head of a run's metrics.json (what every task records before its own numbers)."""
    return {"config": config.to_json(), "task": config.task, "class_names": list(data.class_names),
            "counts": data.counts, "skipped": [{"path": b.path, "reason": b.reason} for b in data.skipped],
            "epochs": result.epochs_run, "monitor": result.monitor, "best": result.best,
            "best_epoch": _best_epoch(result.history, result.monitor),
            "train_seconds_this_session": round(seconds, 1), "resumed": resumed, "replicas": replicas}


def choices_line(chosen):
    """One line naming what "auto" chose and from what, e.g. for the start of `keras-mobilenets train`."""
    words = {"image_size": lambda v: f"image size {v} px",
             "alpha": lambda v: f"width (alpha) {v:g}",
             "epochs": lambda v: f"{v} epochs",
             "crop_scale": lambda v: f"training crops of {v[0]:.0%}-{v[1]:.0%} of the image area",
             "random_scale": lambda v: f"image and mask scaled by {v[0]:g}-{v[1]:g} at random",
             "crop_fraction": lambda v: f"evaluation crop {v:.0%}",
             "flip": lambda v: "horizontal flips" if v else "no flips",
             "bn_momentum": lambda v: "the architecture's BatchNorm momentum" if v is None
             else f"BatchNorm momentum {v}",
             "class_loss": lambda v: f"{v} class loss"}
    parts = [words[k](chosen[k]) for k in words if k in chosen]
    if not parts:
        return ""
    return (f"auto choices for {chosen['images']} images of about {chosen['side']} px "
            f"({chosen['train_images']} for training): " + ", ".join(parts) + " (flags override each)")


def near_chance(split, result):
    """A plain warning (with what to try) when `result`'s accuracy is near the majority-class rate."""
    rows = np.asarray(result["confusion_matrix"]).sum(axis=1)
    chance = rows.max() / max(1, rows.sum())
    if result["accuracy"] >= chance + 0.25 * (1 - chance):
        return None
    return (f"{split} accuracy {result['accuracy']:.2%} is near chance ({chance:.2%}, always guessing the "
            "largest class): the model learned little. Try more epochs (--epochs), ImageNet weights "
            "(--weights imagenet) if the images are photos, more images per class, and check that each "
            "class folder holds what its name says")


def load_data(config):
    if _task_runs(config):
        return _task_runs(config).load_data(config, _data_dir(config))
    augmentation = kd.Augmentation(crop_scale=tuple(config.crop_scale), flip=config.flip)
    return kd.from_folder(_data_dir(config), config.image_size, augmentation=augmentation,
                          crop_fraction=config.crop_fraction, **data_settings(config))


def build_classifier(config, num_classes, flavor=None):
    """The run's model: a classifier, or the task's model (a detector, a segmentation model)."""
    if _task_runs(config):
        return _task_runs(config).build(config, num_classes)
    return training.create_classifier(config.arch, num_classes, dropout=config.dropout,
                                      mixed_precision=config.mixed_precision, flavor=flavor or config.flavor,
                                      **model_settings(config))


MARKER = ".keras_mobilenets_run.json"
LOCK = ".keras_mobilenets_run.lock"
FORMAT = 1
# config.json's keys in runs written before the marker existed: such a folder is recognised as ours
LEGACY_CONFIG_KEYS = frozenset({
    "data", "arch", "alpha", "minimalistic", "image_size", "weights", "batch_size", "validation_split",
    "test_split", "seed", "flip", "crop_scale", "crop_fraction", "strict", "cache", "dropout", "bn_momentum",
    "mixed_precision", "strategy", "recipe"})
LEGACY_QUANTIZE_KEYS = frozenset({"model", "data", "epochs", "learning_rate", "per_channel"})


class RunLockedError(RuntimeError):
    """Another process is training in this run folder."""


def _ignored(name):
    """Entries that do not make a folder someone's: our lock, other workers of a multi-worker run."""
    return name == LOCK or name.startswith(".worker-")


def _is_ours(out_dir, kind):
    """Whether out_dir holds a run this package wrote (its marker, or a config of the pre-marker format);
    None when it is missing or empty. Raises when the marker says another kind or a newer format."""
    if not os.path.isdir(out_dir) or all(_ignored(n) for n in os.listdir(out_dir)):
        return None
    marker = os.path.join(out_dir, MARKER)
    if os.path.exists(marker):
        payload = read_json(marker, what="run-folder marker")
        if payload.get("package") != "keras_mobilenets" or payload.get("kind") != kind:
            return False
        if not isinstance(payload.get("format"), int) or payload["format"] > FORMAT:
            raise ValueError(f"{marker} says format {payload.get('format')!r}: this folder was written by a "
                             f"newer keras-mobilenets (this one reads format {FORMAT}); upgrade it")
        return True
    legacy, keys = (("config.json", LEGACY_CONFIG_KEYS) if kind == "train"
                    else ("quantize.json", LEGACY_QUANTIZE_KEYS))
    path = os.path.join(out_dir, legacy)
    if not os.path.exists(path):
        return False
    try:
        return set(read_json(path, what=legacy)) == keys
    except ValueError:
        return False


def _check_ours(out_dir, kind):
    """Refuse (even with overwrite) a folder with content this package did not write."""
    if _is_ours(out_dir, kind) is False:
        raise FileExistsError(
            f"out={out_dir!r} exists and is not a keras-mobilenets run folder (no {MARKER} of a {kind} run): "
            "--overwrite (overwrite=True) only ever replaces a folder keras-mobilenets wrote; choose "
            "another folder, or empty this one yourself")


def _write_marker(out_dir, kind):
    from keras_mobilenets.version import __version__

    write_json(os.path.join(out_dir, MARKER), {"package": "keras_mobilenets", "kind": kind,
                                               "format": FORMAT, "version": __version__})


def _clear_run(out_dir):
    """Delete what a run of ours left in out_dir, except the lock this process holds."""
    for name in os.listdir(out_dir):
        if name != LOCK:
            path = os.path.join(out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


@contextlib.contextmanager
def run_lock(out_dir):
    """Hold out_dir's lock file (with this process' pid) while a process trains in it.

    The lock is an flock on the file, which the kernel drops when its process dies: a lock file left by
    a killed process is taken over. A second process gets a RunLockedError naming the folder and the pid.
    """
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, LOCK)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            try:
                holder = json.loads(holder)
                who = f"pid {holder['pid']} on {holder['host']}"
            except (ValueError, KeyError, TypeError):
                who = "a process that is starting (pid not written yet)"
            raise RunLockedError(f"out={out_dir!r} is in use: {who} is training in it ({path}); wait for "
                                 "it to finish or stop it, or choose another folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # (else the holder before us deleted the file after we opened it: lock the new one)
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        yield
    finally:
        os.remove(path)
        os.close(fd)
        if created and not os.listdir(out_dir):
            os.rmdir(out_dir)


def _check_resume(out_dir, config, overwrite):
    """True when out_dir holds a finished run of this config; raise if it holds another run.

    Deletes nothing: with `overwrite` the caller clears the folder once every input is checked.
    """
    _check_ours(out_dir, "train")
    path = os.path.join(out_dir, "config.json")
    if overwrite or not os.path.exists(path):
        return False
    stored = read_json(path, what="run configuration")
    stored.setdefault("task", "classification")  # runs written before detection existed
    stored.setdefault("class_loss", None)
    current = json.loads(json.dumps(config.to_json()))
    differing = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if differing:
        details = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in differing)
        raise ValueError(f"out={out_dir!r} holds a run with other settings ({details}); resume it with "
                         "the same settings, choose another folder, or pass overwrite=True (--overwrite)")
    return os.path.exists(os.path.join(out_dir, "metrics.json"))


def _save_model(model, path):
    tmp = f"{path[:-len('.keras')]}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def to_keras(model, config, num_classes, weights_path=None):
    """The same classifier as a Keras 3 model, for a run trained in tf_keras.

    The weights come from the file fit wrote (legacy .h5, which Keras 3 reads), not from the live
    multi-worker model: reading its SyncOnRead variables would start collectives the other workers,
    already finished, never join.
    """
    if flavor_of(model).name == "keras":
        return model
    keras_model = build_classifier(config, num_classes, flavor="keras")
    if weights_path is None:
        keras_model.set_weights(model.get_weights())
    else:
        keras_model.load_weights(weights_path)
    return keras_model


def train_run(out_dir, config=RunConfig(), overwrite=False, export_dir=None, strategy=None, verbose=1):
    """Train (or resume, or report a finished) run in `out_dir` and return a `RunResult`.

    With `verbose`, prints the "auto" choices and the data report (skipped files) before the first epoch.

    `overwrite=True` replaces only a run this package wrote (its marker file), after the data is read.
    While a process trains, `out_dir` is locked: a second one gets a RunLockedError.
    """
    out_dir = os.fspath(out_dir)
    if not isinstance(config, RunConfig):
        raise ValueError(f"config={config!r} is not allowed: config must be a RunConfig")
    config, chosen = resolve(config)
    strategy = strategy if strategy is not None else make_strategy(config.strategy)
    chief = strategy is None or is_chief(strategy)
    if not chief:  # the chief holds the lock; the other workers write under .worker-N
        return _train_run(out_dir, config, chosen, overwrite, export_dir, strategy, verbose, chief)
    _check_ours(out_dir, "train")
    with run_lock(out_dir):
        return _train_run(out_dir, config, chosen, overwrite, export_dir, strategy, verbose, chief)


def _train_run(out_dir, config, chosen, overwrite, export_dir, strategy, verbose, chief):
    import keras

    resumed = False
    if chief:
        if _check_resume(out_dir, config, overwrite):
            metrics = read_json(os.path.join(out_dir, "metrics.json"), what="run's metrics")
            model = keras.saving.load_model(os.path.join(out_dir, "best.keras"))
            return RunResult(out_dir, model, metrics, resumed=True, finished_before=True)
        resumed = not overwrite and os.path.exists(os.path.join(out_dir, "config.json"))
    work_dir = out_dir if chief else os.path.join(out_dir, f".worker-{strategy.cluster_resolver.task_id}")
    os.makedirs(work_dir, exist_ok=True)
    data = load_data(config)
    if chief and verbose:
        line = choices_line(chosen)
        print("\n".join(([line] if line else []) + [data.report()]), flush=True)
    if chief:
        if overwrite:  # every input is checked by now
            _clear_run(out_dir)
        _write_marker(out_dir, "train")
        write_json(os.path.join(out_dir, "config.json"), config.to_json())
        write_json(os.path.join(out_dir, "split.json"),
                   _task_runs(config).split_files(data) if _task_runs(config) else data.files)
        write_atomic(os.path.join(out_dir, "labels.txt"), "\n".join(data.class_names) + "\n")

    keras.utils.set_random_seed(config.seed)  # the initial weights and dropout follow the run's seed too
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = build_classifier(config, data.num_classes)
    task = _task_runs(config).task(config, model) if _task_runs(config) else None
    started = time.perf_counter()
    result = training.fit(model, data, work_dir, config.recipe, strategy=strategy, verbose=verbose, task=task)
    seconds = time.perf_counter() - started
    if not chief:
        return RunResult(out_dir, None, {}, resumed=resumed)
    final_weights = result.best_weights or training.weights_file(model, work_dir, result.last_stage)
    model = to_keras(result.model, config, data.num_classes, final_weights)

    if _task_runs(config):
        model, metrics = _task_runs(config).finish(out_dir, model, data, config, result, seconds, resumed)
        return _finish(out_dir, model, metrics, resumed, export_dir)
    metrics = task_metrics(config, data, result, seconds, resumed,
                           replicas=strategy.num_replicas_in_sync if strategy is not None else 1)
    for split in ("validation", "test"):
        dataset = getattr(data, split)
        if dataset is not None:
            metrics[split] = training.evaluate(model, dataset, data.class_names)
    _save_model(model, os.path.join(out_dir, "best.keras"))
    reports.plot_history(result.history, os.path.join(out_dir, "training_curves.png"),
                         title=config.describe(),
                         best_epoch=metrics["best_epoch"] if config.recipe.restore_best else None)
    final = metrics.get("test") or metrics.get("validation")
    if final:
        split = "test" if "test" in metrics else "validation"
        metrics["warning"] = near_chance(split, final)
        reports.plot_confusion(final["confusion_matrix"], data.class_names,
                               os.path.join(out_dir, "confusion_matrix.png"),
                               title=f"{split} accuracy {final['accuracy']:.2%} ({final['images']} images)")
    return _finish(out_dir, model, metrics, resumed, export_dir)


def _finish(out_dir, model, metrics, resumed, export_dir):
    """Export (when asked) and write metrics.json last: its presence marks the run finished."""
    exported = None
    if export_dir is not None:
        from keras_mobilenets.deploy.serving import export_saved_model

        exported = export_saved_model(model, export_dir, labels=os.path.join(out_dir, "labels.txt"))
        metrics["export"] = exported.path
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return RunResult(out_dir, model, metrics, resumed=resumed, export=exported)


def _best_epoch(rows, monitor):
    row = training.best_row(rows, monitor)
    return int(row["epoch"]) + 1 if row else None


def evaluate_model(model_path, data_dir=None, split="test", batch_size=32, out_dir=None):
    """Evaluate a saved classifier on a folder, or on its run's stored split (split.json next to it); a
    detector gets COCO metrics (`detection_runs.evaluate_model`), a segmentation model mIoU
    (`segmentation_runs.evaluate_model`)."""
    import keras

    if os.fspath(model_path).endswith(".tflite"):  # a detector's file (TFLite_Detection_PostProcess)
        return detection_runs.evaluate_model(None, model_path, data_dir, split, batch_size, out_dir)
    model = keras.saving.load_model(model_path)
    for module in TASK_RUNS.values():
        if module.is_model(model):
            return module.evaluate_model(model, model_path, data_dir, split, batch_size, out_dir)
    run_dir = os.path.dirname(os.path.abspath(model_path))
    size = tuple(model.inputs[0].shape[1:3])
    if data_dir is None:
        dataset, class_names = stored_split(model_path, split, size, batch_size)
    else:
        directory = digits() if data_dir == "digits" else data_dir
        files, labels, class_names = kd.scan_folder(directory)
        bad = {b.path for b in kd.validate_files(files)}
        keep = [i for i, f in enumerate(files) if f not in bad]
        files, labels = [files[i] for i in keep], np.asarray(labels)[keep]
        dataset = kd.from_files(files, labels, class_names, size, batch_size, _crop_fraction(run_dir))
    classes = model.outputs[0].shape[-1]
    if classes != len(class_names):
        raise ValueError(f"the model has {classes} outputs but the data has {len(class_names)} classes")
    metrics = training.evaluate(model, dataset, class_names)
    out_dir = out_dir or run_dir
    os.makedirs(out_dir, exist_ok=True)
    name = f"evaluation_{split}" if data_dir is None else "evaluation"
    write_json(os.path.join(out_dir, f"{name}.json"), metrics)
    reports.plot_confusion(metrics["confusion_matrix"], class_names,
                           os.path.join(out_dir, f"{name}_confusion_matrix.png"))
    return metrics


def quantize_run(model_path, out_dir, data_dir=None, epochs=2, learning_rate=1e-4, input_type="float32",
                 output_type="float32", min_top1_agreement=0.98, overwrite=False, verbose=1, per_channel=True):
    """QAT fine-tuning of a trained classifier, ending in its int8 TFLite file (what `quantize` runs); a
    detector: `detection_runs.quantize_detector` (mAP instead of accuracy; `min_top1_agreement` is the
    fraction of TFLite boxes that must match a QAT Keras box); a segmentation model:
    `segmentation_runs.quantize` (mIoU; `min_top1_agreement` is the pixel agreement).

    Data: the model's run folder (same splits and augmentation as its training), or `data_dir` (a folder
    or "digits", split 70/10/20). `out_dir` keeps quantize.json (re-running the same call resumes the
    QAT fit), the QAT checkpoints, history.csv, model_int8.tflite and metrics.json with the float Keras,
    QAT Keras and int8 TFLite accuracies on the held-out split and the TFLite parity report.
    `per_channel=False`: one weight range per tensor (`quantize_model`), a smaller file.
    """
    import keras

    out_dir = os.fspath(out_dir)
    settings = {"model": os.path.abspath(model_path), "data": data_dir, "epochs": epochs,
                "learning_rate": learning_rate, "per_channel": per_channel}
    marker = os.path.join(out_dir, "quantize.json")
    _check_ours(out_dir, "quantize")  # --overwrite never empties a folder we did not write
    same = read_json(marker, what="quantize settings") == settings if os.path.exists(marker) else \
        not (os.path.isdir(out_dir) and any(not _ignored(n) for n in os.listdir(out_dir)))
    if not same and not overwrite:
        raise FileExistsError(f"out={out_dir!r} holds another quantize run; choose another folder or pass "
                              "overwrite=True (--overwrite)")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model={model_path!r} does not exist or is not a file: pass a .keras "
                                "classifier, e.g. runs/NAME/best.keras")
    model = keras.saving.load_model(model_path)
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    detector = detection_runs.is_model(model)
    segmenter = segmentation_runs.is_model(model)
    if detector:  # before the QAT epochs
        from keras_mobilenets.deploy.detection_tflite import check_detector_arguments

        check_detector_arguments("qat-int8", output_type)
    reader = detection_runs.model_data if detector else segmentation_runs.model_data if segmenter else model_data
    data = reader(model_path, data_dir, size)
    with run_lock(out_dir):
        if not same:  # every input is checked by now
            _clear_run(out_dir)
        _write_marker(out_dir, "quantize")
        write_json(marker, settings)
        if detector:  # the QAT fit keeps its checkpoints in out_dir: a re-run resumes it
            return detection_runs.quantize_detector(model, data, out_dir, epochs, learning_rate, input_type,
                                                    min_top1_agreement, per_channel, verbose, output_type)
        if segmenter:  # min_top1_agreement: the share of pixels whose class agrees with the QAT model's
            return segmentation_runs.quantize(model, data, out_dir, epochs, learning_rate, input_type,
                                              output_type, min_top1_agreement, per_channel, verbose)
        return _quantize(model, data, out_dir, epochs, learning_rate, input_type, output_type,
                         min_top1_agreement, verbose, per_channel)


def saved_run_config(model_path, allowed):
    """The RunConfig of the run folder `model_path` was saved in (its config.json); a ValueError saying
    to pass `allowed` (the data the caller takes instead) when there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"{model_path!r} is not in a run folder (no config.json next to it): pass {allowed}")
    return _read_config(config_path)


def model_data(model_path, data_dir, size):
    """The data a saved classifier is quantized with: its run folder's own splits and augmentation
    (config.json next to it), or `data_dir` (a folder or "digits", split 70/10/20, no augmentation)."""
    if data_dir is None:
        return load_data(saved_run_config(model_path, "data_dir (--data DIR or digits)"))
    return kd.from_folder(digits() if data_dir == "digits" else data_dir, size, validation_split=0.1,
                          test_split=0.2, augmentation=None)


def stored_split(model_path, split, size, batch_size=32):
    """(pipeline, class_names) of one split a run stored (split.json, labels.txt, its evaluation crop),
    for the model saved in that run folder; `split` may name several to try in order ("test validation")."""
    run_dir = os.path.dirname(os.path.abspath(model_path))
    split_path = os.path.join(run_dir, "split.json")
    if not os.path.exists(split_path):
        raise ValueError(f"no data given and no split.json next to {model_path!r}: pass --data DIR")
    splits = read_json(split_path, what="run's split")
    with open(os.path.join(run_dir, "labels.txt"), encoding="utf-8") as handle:
        class_names = tuple(handle.read().split("\n")[:-1])
    name = next((n for n in split.split() if splits.get(n)), None)
    if name is None:
        raise ValueError(f"split={split!r} is not allowed: the run has splits "
                         f"{sorted(k for k, v in splits.items() if v)}")
    files = splits[name]
    labels = [class_names.index(os.path.basename(os.path.dirname(f))) for f in files]
    return kd.from_files(files, labels, class_names, size, batch_size, _crop_fraction(run_dir)), class_names


def _crop_fraction(run_dir):
    """The evaluation crop of the run in `run_dir` (0.875, keras.applications', outside a run folder)."""
    config_path = os.path.join(run_dir, "config.json")
    return _read_config(config_path).crop_fraction if os.path.exists(config_path) else 0.875


def _read_config(path):
    """The RunConfig stored in a run's config.json; a truncated or edited file names itself."""
    try:
        return RunConfig.from_json(read_json(path, what="run configuration"))
    except (TypeError, KeyError) as error:
        raise ValueError(f"{path} does not hold a keras-mobilenets run configuration ({error}); restore it "
                         "or start the run again with --overwrite (overwrite=True)") from None


def _quantize(model, data, out_dir, epochs, learning_rate, input_type, output_type, min_top1_agreement,
              verbose, per_channel):
    from keras_mobilenets import optimize as quantization
    from keras_mobilenets.deploy import tflite

    result = quantization.fine_tune_qat(model, data, out_dir, epochs=epochs, learning_rate=learning_rate,
                                        verbose=verbose, per_channel=per_channel)
    split = "test" if data.test is not None else "validation"
    images, labels = (np.concatenate(parts) for parts in zip(*[(np.asarray(x), np.asarray(y))
                                                               for x, y in getattr(data, split)]))
    path = os.path.join(out_dir, "model_int8.tflite")
    report = tflite.export_tflite(result.model, path, mode="qat-int8", sample=images, input_type=input_type,
                                  output_type=output_type, min_top1_agreement=min_top1_agreement,
                                  overwrite=True)
    outputs, _ = tflite.run_tflite(path, images)

    def accuracy(probabilities):
        return float((np.argmax(probabilities, -1) == labels).mean())

    metrics = {"split": split, "images": int(len(labels)),
               "float_keras_accuracy": accuracy(np.asarray(model.predict(images, verbose=0))),
               "qat_keras_accuracy": accuracy(np.asarray(result.model.predict(images, verbose=0))),
               "int8_tflite_accuracy": accuracy(outputs), "tflite": asdict(report),
               "qat_epochs": result.epochs_run, "best": result.best, "monitor": result.monitor}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
