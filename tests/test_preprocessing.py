"""preprocess_input and decode_predictions."""

import numpy as np
import pytest

import keras_mobilenets as km


def test_preprocess_input_maps_0_255_to_minus_1_1(photos):
    scaled = km.preprocess_input(photos)
    assert scaled.min() >= -1.0 and scaled.max() <= 1.0
    np.testing.assert_allclose(km.preprocess_input(np.array([0.0, 127.5, 255.0])), [-1.0, 0.0, 1.0])


def test_preprocess_input_never_normalizes_twice(photos):
    v3 = km.MobileNetV3Small(weights=None, input_shape=(96, 96, 3))
    v2 = km.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    assert km.preprocess_input(photos, model=v3) is photos
    assert km.preprocess_input(photos, model=v2).max() <= 1.0


def test_decode_predictions_without_the_class_index_falls_back_to_wordnet_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("keras_mobilenets.nets.preprocessing._class_index", None)
    scores = np.zeros((2, 1000), dtype="float32")
    scores[0, 0], scores[1, 999] = 0.9, 0.8
    with pytest.warns(UserWarning, match="imagenet_class_index.json"):
        decoded = km.decode_predictions(scores, top=3)
    assert decoded[0][0][0] == "n01440764" and decoded[0][0][2] == pytest.approx(0.9)
    assert decoded[1][0][0] == "n15075141" and len(decoded[1]) == 3


def test_decode_predictions_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        km.decode_predictions(np.zeros((2, 10)))
