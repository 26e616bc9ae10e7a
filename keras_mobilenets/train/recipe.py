"""Transfer learning recipe: a flat new head, a frozen-then-unfrozen two-stage fit, Keras callbacks.

Stage 1 trains the head with the backbone frozen (BatchNorm in inference mode, which is what
`trainable=False` means for Keras BatchNormalization). Stage 2 unfreezes the top N blocks, by the block
boundaries the builder recorded, with a lower learning rate. Training from scratch is stage 1 with
`freeze_backbone=False`. Every fit writes a backup each epoch (BackupAndRestore), so running the same
call again after a crash resumes where it stopped.
"""

import contextlib
import csv
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field, replace

import keras
import numpy as np

from keras_mobilenets.fileio import read_json, write_json
from keras_mobilenets.nets.flavors import flavor_of, get_flavor, unwrapped
from keras_mobilenets.nets.models import create_model
from keras_mobilenets.nets.preprocessing import includes_preprocessing

HEAD_LAYERS = ("head_pool", "head_dropout", "head_logits", "head_softmax")
POOLING_LAYERS = ("head_pool", "avg_pool", "max_pool")
POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")
AUTO_STEPS = 2000  # optimizer steps an "auto" epoch count aims at when training from scratch
AUTO_EPOCHS = (30, 60)


def auto_epochs(train_images, batch_size):
    """Epochs for training from scratch: about AUTO_STEPS steps, within AUTO_EPOCHS (digits: 50)."""
    steps = max(1, math.ceil(train_images / batch_size))
    low, high = AUTO_EPOCHS
    return int(min(high, max(low, math.ceil(AUTO_STEPS / steps))))


@dataclass(frozen=True)
class Recipe:
    """The two-stage transfer-learning recipe; the defaults suit a pretrained backbone.

    For training from scratch use `freeze_backbone=False` (and `fine_tune_epochs=0`). `train_batchnorm`:
    None trains BatchNorm from scratch and keeps it frozen when fine-tuning; True or False forces it
    (QAT fine-tuning uses False on all layers). Each stage starts with `warmup_epochs` of linear warm-up:
    a fresh optimizer at the full rate on just-unfrozen pretrained weights undoes them in a few steps.
    `restore_best=False` returns the last epoch's weights instead of the best checkpoint's (for a
    pruning ramp, whose best epoch can come before the target sparsity). `epochs="auto"` picks the
    count from the training split's size (`auto_epochs`), for training from scratch.
    `recalibrate_batchnorm` training batches re-estimate the statistics of every BatchNorm that trains,
    before each validation (0: off); see `recalibrate_batchnorm`.
    """

    epochs: int | str = 10
    fine_tune_epochs: int = 0
    fine_tune_blocks: int | str = 3
    freeze_backbone: bool = True
    train_batchnorm: bool | None = None
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    early_stopping_patience: int | None = None
    tensorboard: bool = True
    restore_best: bool = True
    recalibrate_batchnorm: int = 16

    def __post_init__(self):
        if self.epochs != "auto":
            _check_int("epochs", self.epochs, 1, 'or "auto"')
        _check_int("fine_tune_epochs", self.fine_tune_epochs, 0)
        if self.fine_tune_blocks != "all":
            _check_int("fine_tune_blocks", self.fine_tune_blocks, 0, 'or "all"')
        for name in ("learning_rate", "fine_tune_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: {name} must be > 0")
        for name, high in (("weight_decay", 1.0), ("label_smoothing", 1.0)):
            if not 0 <= getattr(self, name) < high:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: {name} must be in [0, {high})")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={self.warmup_epochs!r} is not allowed: must be >= 0")
        if self.early_stopping_patience is not None:
            _check_int("early_stopping_patience", self.early_stopping_patience, 1, "or None")
        _check_int("recalibrate_batchnorm", self.recalibrate_batchnorm, 0)


def _check_int(name, value, low, extra=""):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= {low} {extra}".rstrip())


# ------------------------------------------------------------------------------------ the model

@contextlib.contextmanager
def dtype_policy(policy, flavor="keras"):
    """Build layers under a Keras mixed-precision policy, then restore the previous global policy."""
    if policy not in POLICIES:
        raise ValueError(f"mixed_precision={policy!r} is not allowed: must be one of {POLICIES}")
    if policy is None:
        yield
        return
    mixed_precision = get_flavor(flavor).keras.mixed_precision
    previous = mixed_precision.global_policy()
    mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        mixed_precision.set_global_policy(previous)


def backbone_output(model):
    """The feature tensor a new head goes on: the last block's output, or what the pooling layer sees."""
    info = getattr(model, "block_info", None)
    if info:
        return model.get_layer(info[-1].output).output
    names = {layer.name for layer in model.layers}
    for name in POOLING_LAYERS:
        if name in names:
            return model.get_layer(name).input
    if len(model.outputs[0].shape) == 4:
        return model.outputs[0]
    raise ValueError(f"model {model.name!r} has no pooling layer named one of {POOLING_LAYERS} and no "
                     "4-D output: build it with keras_mobilenets (include_top=False is fine)")


def add_head(model, num_classes, dropout=0.2, name=None):
    """A classifier on `model`'s backbone as one flat functional graph (the layers are shared, not nested).

    The softmax (and the logits Dense) run in float32 under mixed precision. The model must carry its own
    preprocessing, because the data pipelines feed [0, 255] pixels.
    """
    _check_int("num_classes", num_classes, 2)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r} is not allowed: dropout must be in [0, 1)")
    if not includes_preprocessing(model):
        raise ValueError(f"model {model.name!r} takes [-1, 1] pixels; the fine-tuning pipelines feed "
                         "[0, 255]. Build it with include_preprocessing=True so the model carries its "
                         "own Rescaling layer")
    layers = flavor_of(model).layers
    x = backbone_output(model)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, dtype="float32", name="head_logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="head_softmax")(x)
    head_model = flavor_of(model).model(model.input, outputs, name=name or f"{model.name}_classifier")
    head_model.block_info = getattr(model, "block_info", ())
    return head_model


def create_classifier(arch, num_classes, *, alpha=1.0, image_size=224, minimalistic=False, weights=None,
                      dropout=0.2, bn_momentum=None, mixed_precision=None, flavor="keras"):
    """Our backbone (with its own preprocessing) plus a new head: ready for `fit` on our pipelines.

    `bn_momentum` overrides the architecture's BatchNorm momentum (0.999 for V2/V3, tuned for ImageNet's
    millions of steps); training from scratch on a small dataset wants about 0.9 so the moving statistics
    catch up within a few hundred steps.
    """
    if bn_momentum is not None and not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum={bn_momentum!r} is not allowed: bn_momentum must be in [0, 1) or None")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    with dtype_policy(mixed_precision, flavor):
        backbone = create_model(arch, input_shape=(*size, 3), alpha=alpha, minimalistic=minimalistic,
                                include_top=False, weights=weights, include_preprocessing=True,
                                flavor=flavor)
        if bn_momentum is not None:
            for layer in backbone.layers:
                if type(layer).__name__ == "BatchNormalization":
                    layer.momentum = bn_momentum
        model = add_head(backbone, num_classes, dropout=dropout, name=f"{backbone.name}_classifier")
    if weights is None:  # fit recognises a backbone still at its random start (see _random_backbone)
        model.random_backbone = [np.array(v) for v in _first_kernels(model)]
    return model


def _first_kernels(model):
    return [layer.kernel for layer in model.layers[:12] if hasattr(layer, "kernel")][:1]


def _random_backbone(model):
    """Whether `model` came from create_classifier(weights=None) and its backbone was not loaded since."""
    start = getattr(model, "random_backbone", None)
    return bool(start) and all(np.array_equal(a, np.array(b)) for a, b in zip(start, _first_kernels(model)))


def blocks(model):
    """[(block output layer name, [layer names])] from the builder's record, bottom to top."""
    info = getattr(model, "block_info", None)
    if not info:
        raise ValueError(f"model {model.name!r} carries no block boundaries (they are not saved in "
                         "files); build it with keras_mobilenets and load the weights into it")
    return [(b.output, b.layers) for b in info]


def set_trainable(model, trainable_blocks="all", train_batchnorm=False):
    """Freeze the backbone except its top `trainable_blocks` blocks; the head stays trainable.

    BatchNormalization layers stay frozen (inference mode, moving statistics kept) unless
    `train_batchnorm=True`. Returns the names of the trainable backbone layers.
    """
    if trainable_blocks == "all":  # needs no block boundaries, so loaded models work too
        backbone = top = {unwrapped(layer).name for layer in model.layers} - set(HEAD_LAYERS)
    else:
        all_blocks = blocks(model)
        backbone = {name for _, names in all_blocks for name in names}
        _check_int("trainable_blocks", trainable_blocks, 0, 'or "all"')
        top = {n for _, names in all_blocks[len(all_blocks) - trainable_blocks:] for n in names} \
            if trainable_blocks else set()
    trainable = []
    for layer in model.layers:
        inner = unwrapped(layer)
        if inner.name not in backbone:
            layer.trainable = True
            continue
        is_bn = type(inner).__name__ == "BatchNormalization"
        value = inner.name in top and (train_batchnorm or not is_bn)
        layer.trainable = value
        if inner is not layer:
            # tfmot lists a frozen wrapper's weights twice (an h5 file cannot hold them): the wrapper
            # stays trainable and the layer inside is frozen (BatchNorm then runs in inference mode)
            layer.trainable = True
            inner.trainable = value
        if value and inner.weights:
            trainable.append(inner.name)
    return trainable


def no_decay_variables(model):
    """Depthwise kernels (V1 paper: little or no weight decay on them), biases and BatchNorm parameters."""
    excluded = []
    for layer in model.layers:
        kind = type(unwrapped(layer)).__name__
        for variable in layer.trainable_weights:
            name = variable.name.split("/")[-1].split(":")[0]
            if kind in ("DepthwiseConv2D", "BatchNormalization") or name == "bias":
                excluded.append(variable)
    return excluded


def compile_model(model, learning_rate, steps, warmup_steps=0, weight_decay=1e-4, label_smoothing=0.1,
                  task=None):
    """AdamW on a cosine schedule with linear warm-up, and the task's loss and metrics (classification:
    label-smoothed cross-entropy, accuracy)."""
    keras = flavor_of(model).keras
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else learning_rate, decay_steps=max(1, steps - warmup_steps),
        warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    task = task or CLASSIFICATION
    model.compile(optimizer=optimizer, loss=task.loss(keras, label_smoothing), metrics=task.metrics(keras),
                  **({"jit_compile": task.jit_compile} if task.jit_compile is not None else {}))
    return model


class ClassificationTask:
    """What `fit` needs to know about a task, for a classifier: the hook a detector's task replaces
    (train/detection_training.py) so that both share the stages, backups, checkpoints and history."""

    name = "classification"
    mode = "max"  # the monitored value is better when higher
    jit_compile = None  # Keras' choice ("auto": XLA where every layer supports it)

    def check(self, model, data):
        classes = model.outputs[0].shape[-1]
        if classes != data.num_classes:
            raise ValueError(f"model {model.name!r} has {classes} outputs but the data has "
                             f"{data.num_classes} classes {data.class_names[:10]}")

    def prepare(self, dataset, data, distributed):
        """The (inputs, targets) the loss reads, from a pipeline of `data`."""
        return _one_hot(dataset, data.num_classes, distributed)

    def monitor(self, has_validation):
        return "val_accuracy" if has_validation else "accuracy"

    def loss(self, keras, label_smoothing):
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def metrics(self, keras):
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]

    def callbacks(self, model, data):
        """Callbacks that run before the checkpoint and CSVLogger (they may add to the epoch's logs)."""
        return []


CLASSIFICATION = ClassificationTask()


# --------------------------------------------------------------------------------------- fitting

@dataclass
class FitResult:
    """What `fit` produced: the model holding the best weights, the run folder's files, history rows."""

    model: object
    history: list
    best_weights: str | None
    monitor: str
    best: float | None
    epochs_run: int
    last_stage: str = "stage1"
    files: dict = field(default_factory=dict)


def _one_hot(dataset, num_classes, distributed):
    import tensorflow as tf

    if dataset is None:
        return None
    dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    if distributed:  # shard batches, not files: our pipelines read one list of files
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


def read_history(path):
    """Rows of a CSVLogger file, one per epoch (a row repeated by a resume keeps its last copy).

    A row cut short (a kill while CSVLogger wrote it) or edited raises a ValueError naming the file
    and the line, instead of a TypeError deep in a re-run.
    """
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        rows = {}
        reader = csv.DictReader(handle)
        for row in reader:  # CSVLogger writes NA for a metric an epoch did not have
            try:
                if None in row or None in row.values() or "epoch" not in row:
                    raise ValueError("wrong number of fields")
                rows[int(row["epoch"])] = {k: (int(v) if k == "epoch" else float(v))
                                           for k, v in row.items() if v not in ("NA", "")}
            except ValueError as error:
                raise ValueError(f"{path} line {reader.line_num} is cut short or edited ({error}): delete "
                                 "that line (the run resumes without it), or start the run again with "
                                 "--overwrite (overwrite=True)") from None
    return [rows[k] for k in sorted(rows)]


def _state(out_dir):
    path = os.path.join(out_dir, "state.json")
    if not os.path.exists(path):
        return {}
    state = read_json(path, what="training state")
    wrong = {k: v for k, v in state.items() if v != "done"}
    if wrong:
        raise ValueError(f"{path} holds {wrong} where only {{stage: \"done\"}} entries belong; the training "
                         "state was edited: delete the file (finished stages run again) or start again with "
                         "--overwrite (overwrite=True)")
    return state


def rank(row, monitor):
    """How good an epoch's `row` (history or logs) is: the monitored accuracy, then the lower loss.

    On a small validation set the accuracy saturates early (6 images: 100% by epoch 4 of 60); by accuracy
    alone the first such epoch, the least trained one, would be kept."""
    loss = row.get("val_loss" if monitor.startswith("val_") else "loss")
    return float(row[monitor]), -float(loss) if loss is not None else 0.0


def best_row(rows, monitor):
    """The history row `rank` puts first (the earliest among exact ties), or None."""
    scored = [row for row in rows if monitor in row]
    return max(scored, key=lambda row: (rank(row, monitor), -row["epoch"])) if scored else None


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes a `.weights.h5` file under a temporary name and renames it into place,
    so a kill during the write leaves the previous best file whole (Keras writes in place); "best" is by
    `rank` (accuracy, then loss), starting from `initial_row` (the best epoch of an interrupted run)."""

    def __init__(self, *args, initial_row=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._best_rank = rank(initial_row, self.monitor) if initial_row else None

    def _should_save_model(self, epoch, batch, logs, filepath):
        logs = logs or {}
        if not self.save_best_only or logs.get(self.monitor) is None:
            return super()._should_save_model(epoch, batch, logs, filepath)
        current = rank(logs, self.monitor)
        if self._best_rank is not None and current <= self._best_rank:
            return False
        self._best_rank, self.best = current, current[0]
        return True

    def _save_model(self, epoch, batch, logs):
        final = self.filepath
        if not final.endswith(".weights.h5"):
            return super()._save_model(epoch, batch, logs)
        tmp = _temporary_name(final)
        if os.path.lexists(tmp):  # what a kill left mid-write
            os.remove(tmp)
        try:
            self.filepath = tmp
            super()._save_model(epoch, batch, logs)  # writes tmp only when the monitored value improved
        finally:
            self.filepath = final
        if os.path.exists(tmp):
            os.replace(tmp, final)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose backups survive a kill at any instant.

    Each backup (weights + epoch) is written into a hidden folder that is renamed into place when
    complete, and the previous one is kept until then. On resume the newest backup that reads is used,
    so a truncated file costs one epoch, not the run. (Keras' `double_checkpoint=True` copies the old
    files first but still writes the new ones in place, and does not fall back on a cut-short
    training_metadata.json or a missing latest file.)
    """

    KEEP = 2

    def _backups(self):
        """Complete backup folders, newest first."""
        if not os.path.isdir(self.backup_dir):
            return []
        names = [n for n in os.listdir(self.backup_dir) if n.startswith("epoch-")]
        return [os.path.join(self.backup_dir, n) for n in sorted(names, reverse=True)]

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        final = os.path.join(self.backup_dir, f"epoch-{self._current_epoch:06d}-{self._last_batch_seen:09d}")
        tmp = tempfile.mkdtemp(dir=self.backup_dir, prefix=".tmp-")
        self.model.save_weights(os.path.join(tmp, "latest.weights.h5"))
        write_json(os.path.join(tmp, "training_metadata.json"),
                   {"epoch": self._current_epoch, "batch": self._last_batch_seen})
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self._backups()[self.KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
        for name in os.listdir(self.backup_dir):
            if name.startswith(".tmp-") and os.path.join(self.backup_dir, name) != tmp:
                shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)  # a kill's leftovers

    def on_train_begin(self, logs=None):
        backups = self._backups()
        if not backups:  # nothing yet, or a backup in Keras' own layout (runs from before this callback)
            super().on_train_begin(logs)
            return
        failures = []
        for folder in backups:
            self._weights_path = os.path.join(folder, "latest.weights.h5")
            self._training_metadata_path = os.path.join(folder, "training_metadata.json")
            try:
                if not os.path.exists(self._training_metadata_path):
                    raise OSError("no training_metadata.json")
                self._load_model()
            except Exception as error:  # any unreadable backup: try the one before it
                failures.append(f"{folder} ({type(error).__name__}: {str(error)[:200]})")
                continue
            if failures:
                warnings.warn(f"backup {failures[0]} does not read; resumed from {folder} instead",
                              stacklevel=2)
            return
        raise ValueError(f"no backup in {self.backup_dir} reads: {'; '.join(failures)}. Delete that folder "
                         "to restart this stage, or start the run again with --overwrite (overwrite=True)")


def weights_file(model, out_dir, stem):
    """Keras 3 writes `<stem>.weights.h5`; tf_keras the legacy `<stem>.h5` layout (see _restore), or a
    TF checkpoint `<stem>.ckpt` for tfmot-wrapped models (a wrapper around a frozen layer lists its
    weights twice, which an h5 file cannot hold)."""
    if flavor_of(model).name == "keras":
        return os.path.join(out_dir, stem + ".weights.h5")
    wrapped = any(unwrapped(layer) is not layer for layer in model.layers)
    return os.path.join(out_dir, stem + (".ckpt" if wrapped else ".h5"))


def weights_exist(path):
    """Whether a file weights_file named was written (a TF checkpoint is `<path>.index` + data)."""
    return os.path.exists(path) or os.path.exists(path + ".index")


def _temporary_name(path):
    """The name a `.weights.h5`/`.h5` file is written under before it is renamed to `path`."""
    ext = ".weights.h5" if path.endswith(".weights.h5") else ".h5"
    return f"{path[:-len(ext)]}.tmp{ext}"


def _save_weights_atomic(model, path):
    """save_weights to a temporary name, then rename: a kill leaves the old file or the new one."""
    if path.endswith(".ckpt"):  # a TF checkpoint: written atomically by TF itself
        model.save_weights(path)
        return
    tmp = _temporary_name(path)
    model.save_weights(tmp)
    os.replace(tmp, path)


def _multi_worker(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is not None and len(resolver.cluster_spec().as_dict()) > 0


def _restore(model, path):
    """Load a weights file fit wrote. tf_keras files are read into numpy first: tf_keras' own h5 loader
    cannot assign to the SyncOnRead (BatchNorm statistic) variables of a multi-worker model."""
    if flavor_of(model).name == "keras" or path.endswith(".ckpt"):
        model.load_weights(path)
        return
    import h5py

    with h5py.File(path, "r") as handle:
        values = [np.asarray(handle[layer.name][name])
                  for layer in model.layers if layer.weights
                  for name in (n.decode() if isinstance(n, bytes) else n
                               for n in handle[layer.name].attrs["weight_names"])]
    model.set_weights(values)


def _callbacks(model, out_dir, stage, monitor, best, recipe, verbose):
    keras = flavor_of(model).keras
    # tf_keras' own BackupAndRestore (the multi-worker path) writes TF checkpoints, which are atomic
    backup = AtomicBackupAndRestore if flavor_of(model).name == "keras" else keras.callbacks.BackupAndRestore
    # Order at each epoch's end: the best checkpoint, then its history row, then the backup. A kill between
    # them costs at most a repeated epoch (its row is written again; read_history keeps the last copy);
    # never a history row whose best weights were not kept, nor a backup past a missing row.
    settings = dict(monitor=monitor, mode="max", save_best_only=True, save_weights_only=True,
                    verbose=0)  # fit's own lines say enough
    if flavor_of(model).name == "keras":
        callbacks = [AtomicModelCheckpoint(weights_file(model, out_dir, "best"), initial_row=best, **settings)]
    else:  # tf_keras (multi-worker): by accuracy alone
        callbacks = [keras.callbacks.ModelCheckpoint(
            weights_file(model, out_dir, "best"), initial_value_threshold=best and best[monitor], **settings)]
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=True))
    # the backup is deleted by fit once state.json marks the stage done, not at the end of model.fit
    callbacks.append(backup(os.path.join(out_dir, "backup", stage), delete_checkpoint=False))
    if recipe.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max",
                                                       patience=recipe.early_stopping_patience))
    if recipe.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")))
    return callbacks


def recalibrate_batchnorm(model, dataset, batches=16):
    """Replace the moving statistics of every trainable BatchNorm by their average over `batches` batches
    of `dataset` under the current weights; returns how many batches were seen.

    In a short run from scratch the weights move faster than a moving average follows: after ~40 steps
    the stored statistics no longer fit the weights, and a model that trains at 96% scored 33% in
    inference mode (one class for everything). Frozen BatchNorm layers run in inference mode and are left
    alone.
    """
    return _Recalibration(model, batches)(dataset)


class _Recalibration:
    """`recalibrate_batchnorm` as a reusable pass: one traced forward, kept across epochs.

    The forward runs with momentum 0 (the moving statistics become the batch's own), and the batch
    statistics are averaged here; the layers' momentum is restored after every pass.
    """

    def __init__(self, model, batches):
        import tensorflow as tf

        layers = [unwrapped(layer) for layer in model.layers]
        self.norms = [layer for layer in layers if type(layer).__name__ == "BatchNormalization" and layer.trainable]
        self.batches = batches
        self.forward = tf.function(lambda images: model(images, training=True), reduce_retracing=True)

    def __call__(self, dataset):
        if not self.norms or not self.batches:
            return 0
        saved = [layer.momentum for layer in self.norms]
        sums = [[0.0, 0.0] for _ in self.norms]
        seen = 0
        try:
            for layer in self.norms:
                layer.momentum = 0.0  # read when the forward is traced, on its first call
            for images, _ in dataset.take(self.batches):
                self.forward(images)
                for total, layer in zip(sums, self.norms):
                    total[0] += np.asarray(layer.moving_mean)
                    total[1] += np.asarray(layer.moving_variance)
                seen += 1
        finally:
            for layer, momentum in zip(self.norms, saved):
                layer.momentum = momentum
        if seen:
            for (mean, variance), layer in zip(sums, self.norms):
                layer.moving_mean.assign(mean / seen)
                layer.moving_variance.assign(variance / seen)
        return seen


def _recalibration(keras, model, dataset, batches):
    """A callback that recalibrates BatchNorm before each validation pass of `fit` (so validation, the
    best checkpoint and the final model all use statistics that fit the weights)."""
    recalibrate = _Recalibration(model, batches)

    class BatchNormRecalibration(keras.callbacks.Callback):
        validated = False

        def on_test_begin(self, logs=None):
            recalibrate(dataset)
            self.validated = True

        def on_epoch_end(self, epoch, logs=None):  # runs before the checkpoint callbacks (first in line)
            if not self.validated:
                recalibrate(dataset)
            self.validated = False

    return BatchNormRecalibration()


def fit(model, data, out_dir, recipe=Recipe(), strategy=None, verbose=1, callbacks=(), task=None):
    """Run the recipe on `model` with `data` (an `ImageData`), keeping everything in `out_dir`.

    Re-running the same call on the same `out_dir` after a crash resumes: BackupAndRestore restores the
    last finished epoch (weights, optimizer, schedule); a finished stage 1 is not repeated. The model
    comes back holding the best weights (by validation accuracy when there is a validation split).
    Create the model inside `strategy.scope()` when you pass a strategy. `callbacks` are added to ours
    (e.g. `quantization.pruning_callbacks()`). `task` (default: classification) says how targets are
    prepared, the loss, and what "best" monitors (a detector: `DetectionTask`, validation mAP@.5).
    """
    task = task or CLASSIFICATION
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe={recipe!r} is not allowed: recipe must be a keras_mobilenets.train.recipe.Recipe")
    if not includes_preprocessing(model):
        raise ValueError(f"model {model.name!r} takes [-1, 1] pixels but the pipelines feed [0, 255]; "
                         "use create_classifier or add_head (the model carries its own preprocessing)")
    task.check(model, data)
    if recipe.freeze_backbone and _random_backbone(model):
        warnings.warn("the model's backbone has random weights (create_classifier(weights=None)) and "
                      "recipe.freeze_backbone=True would train only the head on random features: training "
                      "every layer instead. Pass Recipe(freeze_backbone=False) to train from scratch, or "
                      "weights='imagenet' (or a weights file) for transfer learning", UserWarning,
                      stacklevel=2)
        recipe = replace(recipe, freeze_backbone=False)
    if recipe.epochs == "auto":
        recipe = replace(recipe, epochs=auto_epochs(data.counts["train"], data.batch_size))
    os.makedirs(out_dir, exist_ok=True)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    train = task.prepare(data.train, data, strategy is not None)
    validation = task.prepare(data.validation, data, strategy is not None)
    monitor = task.monitor(validation is not None)
    steps = math.ceil(data.counts["train"] / data.batch_size)
    history_path = os.path.join(out_dir, "history.csv")
    state = _state(out_dir)

    # From scratch (freeze_backbone=False) every layer trains, BatchNorm included unless told otherwise.
    stages = [("stage1", 0, recipe.epochs, recipe.learning_rate, 0 if recipe.freeze_backbone else "all",
               not recipe.freeze_backbone and recipe.train_batchnorm is not False)]
    if recipe.fine_tune_epochs:
        stages.append(("stage2", recipe.epochs, recipe.epochs + recipe.fine_tune_epochs,
                       recipe.fine_tune_learning_rate, recipe.fine_tune_blocks, bool(recipe.train_batchnorm)))
    for stage, first, last, learning_rate, trainable_blocks, train_bn in stages:
        done_weights = weights_file(model, out_dir, stage)
        if state.get(stage) == "done":
            _restore(model, done_weights)
            continue
        set_trainable(model, trainable_blocks, train_bn)
        with scope:
            compile_model(model, learning_rate, steps * (last - first),
                          warmup_steps=int(round(recipe.warmup_epochs * steps)),
                          weight_decay=recipe.weight_decay, label_smoothing=recipe.label_smoothing, task=task)
        rows = read_history(history_path)
        ours = task.callbacks(model, data) + _callbacks(model, out_dir, stage, monitor, best_row(rows, monitor),
                                                        recipe, verbose)
        if recipe.recalibrate_batchnorm and strategy is None and flavor_of(model).name == "keras":
            ours.insert(0, _recalibration(flavor_of(model).keras, model, train, recipe.recalibrate_batchnorm))
        model.fit(train, validation_data=validation, epochs=last, initial_epoch=first,
                  callbacks=ours + list(callbacks), verbose=verbose,
                  shuffle=False)  # (the pipelines shuffle; True only makes Keras warn)
        _save_weights_atomic(model, done_weights)
        state[stage] = "done"
        write_json(os.path.join(out_dir, "state.json"), state)
        shutil.rmtree(os.path.join(out_dir, "backup", stage), ignore_errors=True)

    rows = read_history(history_path)
    best_path = weights_file(model, out_dir, "best")
    kept = best_row(rows, monitor)
    best = kept[monitor] if kept else None
    if recipe.restore_best and weights_exist(best_path) and not _multi_worker(strategy):
        _restore(model, best_path)  # (one worker alone must not touch synced variables: see runs.to_keras)
    return FitResult(model, rows, best_path if weights_exist(best_path) else None, monitor, best,
                     len(rows), stages[-1][0], {"history": history_path, "state": os.path.join(out_dir, "state.json")})


def evaluate(model, dataset, class_names):
    """Accuracy, per-class accuracy and the confusion matrix of `model` on a (pixels, label) dataset."""
    if dataset is None:
        raise ValueError("dataset=None is not allowed: evaluate needs a (pixels, label) dataset, e.g. "
                         "data.test (from_folder/from_arrays with test_split > 0, the default 0.2) or "
                         "data.validation")
    truth, predicted = [], []
    for images, labels in dataset:
        probs = model(images, training=False)
        predicted.append(np.argmax(np.asarray(probs), axis=-1))
        truth.append(np.asarray(labels))
    truth = np.concatenate(truth)
    predicted = np.concatenate(predicted)
    n = len(class_names)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    per_class = {name: float(matrix[i, i] / max(1, matrix[i].sum())) for i, name in enumerate(class_names)}
    return {"accuracy": float((truth == predicted).mean()), "images": int(len(truth)),
            "per_class_accuracy": per_class, "confusion_matrix": matrix.tolist()}
