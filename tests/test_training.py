"""The transfer-learning recipe: flat heads, freezing by block, BatchNorm frozen, the optimizer's options,
mixed precision, and the acceptance check that transfer beats training from scratch on real digits."""

import os

import numpy as np
import pytest

from keras_mobilenets.data import pipelines as kd
from keras_mobilenets.train import recipe as kt


def _backbone_weights(model):
    head = set(kt.HEAD_LAYERS)
    return {w.path: np.array(w) for layer in model.layers if layer.name not in head for w in layer.weights}


def test_head_is_flat_and_keeps_block_boundaries():
    model = kt.create_classifier("v3-small", 7, alpha=0.75, image_size=64)
    assert not any(hasattr(layer, "layers") for layer in model.layers)  # no nested model
    assert model.output.shape[-1] == 7 and model.layers[-1].name == "head_softmax"
    assert model.layers[1].name == "rescaling" and len(kt.blocks(model)) == 13
    # a second head on a trained classifier replaces the first one, reusing the backbone layers
    again = kt.add_head(model, 3)
    assert again.output.shape[-1] == 3 and again.get_layer("conv") is model.get_layer("conv")
    plain = kt.create_classifier("v2", 4, alpha=0.35, image_size=32)
    assert plain.get_layer("out_relu").output.shape[-1] == 1280  # V2 keeps its 1280-channel last conv
    from keras_mobilenets import MobileNetV2

    with pytest.raises(ValueError, match="include_preprocessing=True"):
        kt.add_head(MobileNetV2(weights=None, input_shape=(32, 32, 3)), 3)
    with pytest.raises(ValueError, match="num_classes"):
        kt.add_head(plain, 1)


def test_set_trainable_unfreezes_top_blocks_and_keeps_batchnorm_frozen():
    model = kt.create_classifier("v2", 5, alpha=0.35, image_size=32)
    assert kt.set_trainable(model, 0) == []
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head_logits"}
    names = kt.set_trainable(model, 2)
    top = [n for _, layers in kt.blocks(model)[-2:] for n in layers]
    assert set(names) == {n for n in top if not n.endswith("_BN") and not n.endswith("_bn")
                          and model.get_layer(n).weights}
    assert "Conv_1" in names and "block_16_project" in names and "block_15_project" not in names
    assert not any(type(model.get_layer(n)).__name__ == "BatchNormalization" for n in names)
    names = kt.set_trainable(model, 2, train_batchnorm=True)
    assert "Conv_1_bn" in names
    with pytest.raises(ValueError, match="trainable_blocks"):
        kt.set_trainable(model, -1)


def test_optimizer_schedule_and_weight_decay_exclusions():
    model = kt.create_classifier("v1", 3, alpha=0.25, image_size=32)
    kt.set_trainable(model, "all", train_batchnorm=True)
    kt.compile_model(model, 0.01, steps=100, warmup_steps=10, weight_decay=1e-4, label_smoothing=0.1)
    schedule = model.optimizer._learning_rate  # Keras' public .learning_rate is the current value, not the schedule
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == 0 and rates[1] == pytest.approx(0.005) and rates[2] == pytest.approx(0.01)
    assert rates[3] == pytest.approx(0.005, rel=1e-3) and rates[4] == pytest.approx(0.0, abs=1e-8)
    decayed = {v.path: model.optimizer._use_weight_decay(v)  # the exclusion list is applied only here
               for v in model.trainable_variables}
    assert decayed["conv_pw_1/kernel"] and decayed["head_logits/kernel"]
    assert not decayed["conv_dw_1/kernel"] and not decayed["conv_dw_1_bn/gamma"]
    assert not decayed["head_logits/bias"]
    assert model.loss.label_smoothing == 0.1
    with pytest.raises(ValueError, match="label_smoothing"):
        kt.Recipe(label_smoothing=1.5)
    with pytest.raises(ValueError, match="epochs"):
        kt.Recipe(epochs=0)


def test_frozen_stage_changes_only_the_head(tmp_path, digit_arrays):
    images, labels = digit_arrays
    data = kd.from_arrays(images[:300], labels[:300], 32, batch_size=64, validation_split=0.2,
                          augmentation=None, crop_fraction=1.0)
    model = kt.create_classifier("v2", 10, alpha=0.35, image_size=32)
    # weights loaded into the backbone (a random backbone would be trained whole: see the test below)
    kt.create_classifier("v2", 10, alpha=0.35, image_size=32).save_weights(str(tmp_path / "w.weights.h5"))
    model.load_weights(str(tmp_path / "w.weights.h5"))
    before = _backbone_weights(model)
    head = np.array(model.get_layer("head_logits").kernel)
    kt.fit(model, data, str(tmp_path / "run"), kt.Recipe(epochs=1, tensorboard=False), verbose=0)
    after = _backbone_weights(model)
    assert before.keys() == after.keys()
    for path in before:  # BatchNorm moving statistics included: frozen BN runs in inference mode
        np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    assert not np.array_equal(head, np.array(model.get_layer("head_logits").kernel))


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_keeps_float32_outputs(policy, compute, tmp_path, digit_arrays):
    import keras

    model = kt.create_classifier("v2", 10, alpha=0.35, image_size=32, mixed_precision=policy)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert model.get_layer("block_1_depthwise").compute_dtype == compute
    assert model.get_layer("head_logits").compute_dtype == "float32" and model.output.dtype == "float32"
    if policy == "mixed_float16":  # float16 kernels are slow on CPU: check the loss scaling only
        kt.compile_model(model, 1e-3, steps=10)
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        return
    images, labels = digit_arrays
    data = kd.from_arrays(images[:128], labels[:128], 32, batch_size=32, validation_split=0.25,
                          augmentation=None, crop_fraction=1.0)
    result = kt.fit(model, data, str(tmp_path / policy),
                    kt.Recipe(epochs=1, freeze_backbone=False, tensorboard=False), verbose=0)
    assert len(result.history) == 1 and np.isfinite([r["loss"] for r in result.history]).all()


def test_transfer_from_digits_0_4_beats_scratch_on_10_percent_of_5_9(tmp_path, digit_arrays):
    """Acceptance: a backbone trained on 0-4 gets a new head on 10% of 5-9's training images (stage 1
    frozen, stage 2 unfrozen with BatchNorm still frozen) and beats the same network trained from scratch
    on that 10% for the same number of epochs. These are seeds 0 and 1 of benchmarks/bench_transfer.py,
    whose three-seed mean is the published figure (0.76 against 0.54). One run of either side varies by
    up to about 0.1 with CPU thread order (seed 0 gave 0.80 against 0.51 alone, 0.67 against 0.59 in a
    loaded CI run), so the test compares means over two seeds."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_transfer", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_transfer.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    images, labels = digit_arrays
    runs, trained, tested = bench.compare(images, labels, [0, 1], str(tmp_path))
    print(f"\ndigits 5-9, {trained} training images, {tested} test images, seeds 0 and 1: {runs}")
    assert np.mean(runs["transfer"]) > np.mean(runs["scratch"])


def test_evaluate_says_which_dataset_is_missing(digit_arrays):
    images, labels = digit_arrays
    data = kd.from_arrays(images[:60], labels[:60], 32, test_split=0.0, augmentation=None)
    model = kt.create_classifier("v2", 10, alpha=0.35, image_size=32)
    with pytest.raises(ValueError, match=r"dataset=None is not allowed: .*data\.test .*test_split > 0"):
        kt.evaluate(model, data.test, data.class_names)


def test_a_random_backbone_is_not_frozen_a_loaded_one_is(tmp_path, digit_arrays):
    """create_classifier(weights=None) with the default Recipe (freeze_backbone=True) would train a head
    on random features: fit trains every layer instead and warns. A backbone whose weights were loaded
    since stays frozen."""
    images, labels = digit_arrays
    data = kd.from_arrays(images[:120], labels[:120], 32, batch_size=64, validation_split=0.2, test_split=0.0,
                          augmentation=None, crop_fraction=1.0)
    model = kt.create_classifier("v2", 10, alpha=0.35, image_size=32)
    before = _backbone_weights(model)
    with pytest.warns(UserWarning, match=r"random weights .* training every layer instead.*"
                                         r"Recipe\(freeze_backbone=False\)"):
        kt.fit(model, data, str(tmp_path / "random"), kt.Recipe(epochs=1, tensorboard=False), verbose=0)
    after = _backbone_weights(model)
    assert not np.array_equal(before["Conv1/kernel"], after["Conv1/kernel"])
    model.save_weights(str(tmp_path / "trained.weights.h5"))

    loaded = kt.create_classifier("v2", 10, alpha=0.35, image_size=32)
    loaded.load_weights(str(tmp_path / "trained.weights.h5"))
    before = _backbone_weights(loaded)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kt.fit(loaded, data, str(tmp_path / "loaded"), kt.Recipe(epochs=1, tensorboard=False), verbose=0)
    assert not [w for w in caught if "random weights" in str(w.message)]
    for path, value in _backbone_weights(loaded).items():
        np.testing.assert_array_equal(before[path], value, err_msg=path)


def test_auto_epochs_aim_at_a_step_budget():
    assert kt.Recipe(epochs="auto").epochs == "auto"
    with pytest.raises(ValueError, match=r'epochs=.many. is not allowed: .*or "auto"'):
        kt.Recipe(epochs="many")
    assert kt.auto_epochs(1258, 32) == 50  # the bundled digits
    assert kt.auto_epochs(140, 32) == kt.AUTO_EPOCHS[1] and kt.auto_epochs(10 ** 6, 32) == kt.AUTO_EPOCHS[0]


def test_recalibrate_batchnorm_stores_the_exact_mean_of_the_batches():
    """Momentum k/(k+1) per batch turns the moving average into the running mean of the batch statistics."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, (64, 4, 4, 3)).astype("float32") * np.array([1, 5, 0.1], "float32")
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99, name="bn")(inputs))
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(64))).batch(16)
    assert kt.recalibrate_batchnorm(model, dataset, batches=8) == 4  # the data has only four batches
    bn = model.get_layer("bn")
    batches = images.reshape(4, -1, 3)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), batches.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), batches.var(axis=1).mean(axis=0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored
    bn.trainable = False  # a frozen BatchNorm keeps its statistics
    before = np.asarray(bn.moving_mean).copy()
    kt.recalibrate_batchnorm(model, dataset.map(lambda x, y: (x * 10, y)), batches=2)
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before)


def test_a_classifier_takes_one_tensor_without_a_structure_warning():
    """The head model keeps the backbone's input structure: Keras warned "The structure of `inputs`
    doesn't match" at every call (and in `convert`'s output) when it was rebuilt from `model.inputs`."""
    import warnings

    model = kt.create_classifier("v2", 10, alpha=0.35, image_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)
