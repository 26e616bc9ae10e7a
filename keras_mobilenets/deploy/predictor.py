"""Predictor: load a .tflite, .keras or SavedModel once, predict on image files, bytes or arrays.

Every input is brought to the model's size by the same decode-and-resize ops the SavedModel's bytes
signature runs in-graph, so all three formats see identical pixels. Pixels are [0, 255].
"""

import os

import numpy as np

from keras_mobilenets.deploy.serving import (DETECTION_OUTPUTS, MAX_DETECTIONS, MAX_IMAGE_BYTES,
                                             check_image_bytes, decode_image_bytes, ends_in_softmax,
                                             is_detector, is_segmenter, read_labels, versions)
from keras_mobilenets.deploy.tflite import dequantize_output, quantize_input
from keras_mobilenets.nets.preprocessing import preprocess_input
from keras_mobilenets.extras import require


def _resolve_saved_model(path):
    """A SavedModel folder, or a TF Serving base folder (its highest version is used)."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    found = versions(path)
    if found:
        return os.path.join(path, str(found[-1]))
    raise ValueError(f"model={path!r} is not a SavedModel folder nor a folder of integer versions")


class Predictor:
    """Batched ImageNet-style classification with a .tflite (LiteRT), .keras or SavedModel model; for a
    detector (an `SSDLite` .keras file, its SavedModel export, or a TFLite file ending in
    TFLite_Detection_PostProcess) `detect` returns boxes; for a segmentation model (`LRASPP`, `DeepLabV3`
    .keras, its SavedModel export or TFLite file) `segment` returns class maps."""

    def __init__(self, path, num_threads=2, batch_size=32, labels=None):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ValueError(f"model={path!r} does not exist")
        self.path, self.batch_size = path, batch_size
        if path.endswith(".tflite"):
            self._load_tflite(path, num_threads)
        elif path.endswith(".keras"):
            self._load_keras(path)
        elif os.path.isdir(path):
            self._load_saved_model(path)
        else:
            raise ValueError(f"model={path!r} is not allowed: give a .tflite file, a .keras file or a "
                             "SavedModel folder")
        if labels is None and self.kind == "saved_model":
            asset = os.path.join(self.path, "assets", "labels.txt")
            labels = asset if os.path.isfile(asset) else None
        self.labels = read_labels(labels, self._classes())

    def _load_tflite(self, path, num_threads):
        Interpreter = require("ai_edge_litert.interpreter", "deploy").Interpreter

        self.kind = "tflite"
        self._interpreter = Interpreter(model_path=path, num_threads=num_threads)
        signatures = self._interpreter.get_signature_list()
        self._runner = self._interpreter.get_signature_runner(
            "serving_default" if "serving_default" in signatures else None)
        self._output_details = self._runner.get_output_details()
        self.detector = "detection_boxes" in self._output_details
        if self.detector and num_threads > 1:
            from keras_mobilenets.deploy.detection_tflite import safe_threads

            if safe_threads(path, num_threads) == 1:  # a regular-NMS file: one thread (see safe_threads)
                return self._load_tflite(path, 1)
        first_output = next(iter(self._output_details.values()))
        self.segmenter = not self.detector and len(first_output["shape"]) == 4
        (self._input_name, detail), = self._runner.get_input_details().items()
        self.image_size = tuple(int(d) for d in detail["shape"][1:3])
        self._input_detail = detail
        self._batch_fixed = int(detail["shape"][0]) if detail["shape_signature"][0] != -1 else None

    def _load_keras(self, path):
        import keras
        import tensorflow as tf

        self.kind = "keras"
        model = self._model = keras.saving.load_model(path)
        self.image_size = tuple(int(d) for d in model.inputs[0].shape[1:3])
        self.detector = is_detector(model)
        self.segmenter = not self.detector and is_segmenter(model)
        if self.detector:
            from keras_mobilenets.deploy.serving import _detector_predict

            self._function = tf.function(_detector_predict(model, None, MAX_DETECTIONS), reduce_retracing=True)
            return
        softmax = not ends_in_softmax(model)

        def probabilities(images):
            scores = model(preprocess_input(images, model=model), training=False)
            return tf.nn.softmax(scores) if softmax else scores

        self._function = tf.function(probabilities, reduce_retracing=True)

    def _load_saved_model(self, path):
        import tensorflow as tf

        self.kind = "saved_model"
        self.path = _resolve_saved_model(path)
        self._loaded = tf.saved_model.load(self.path)
        self._signature = self._loaded.signatures["serving_default"]
        self.detector = "detection_boxes" in self._signature.structured_outputs
        self.segmenter = "class_map" in self._signature.structured_outputs
        spec = self._signature.structured_input_signature[1]["images"]
        self.image_size = tuple(int(d) for d in spec.shape[1:3])

    def _classes(self):
        """The number of classes the loaded model scores (a detector: None, labels are not counted)."""
        if self.detector:
            return None
        if self.kind == "tflite":
            outputs = self._runner.get_output_details()
            return int(outputs.get("probabilities", next(iter(outputs.values())))["shape"][-1])
        if self.kind == "keras":
            return int(self._model.outputs[0].shape[-1])
        return int(self._signature.structured_outputs["probabilities"].shape[-1])

    def images(self, inputs):
        """float32 (n, h, w, 3) in [0, 255] from file paths, encoded bytes, or an array of images."""
        import tensorflow as tf

        height, width = self.image_size
        if isinstance(inputs, np.ndarray) or (hasattr(inputs, "shape") and hasattr(inputs, "dtype")):
            array = np.asarray(inputs, dtype="float32")
            if array.ndim == 3:
                array = array[None]
            if array.shape[1:3] != (height, width):
                array = tf.image.resize(array, (height, width)).numpy()
            return array
        decoded = []
        for item in inputs:
            if isinstance(item, (bytes, bytearray)):
                data = bytes(item)
            else:
                with open(item, "rb") as handle:
                    data = handle.read(MAX_IMAGE_BYTES + 1)
            name = item if not isinstance(item, (bytes, bytearray)) else "image bytes"
            try:
                check_image_bytes(data)
            except ValueError as error:
                raise ValueError(f"{name}: cannot be decoded as an image ({error}; refused before "
                                 "decoding)") from None
            try:
                decoded.append(decode_image_bytes(tf.constant(data), height, width).numpy())
            except tf.errors.InvalidArgumentError as error:
                raise ValueError(f"{name}: cannot be decoded as an image ({error.message})") from None
        return np.stack(decoded)

    def _probabilities(self, batch):
        import tensorflow as tf

        if self.kind == "saved_model":
            return self._signature(images=tf.constant(batch))["probabilities"].numpy()
        if self.kind == "keras":
            return self._function(tf.constant(batch)).numpy()
        batch = quantize_input(batch, self._input_detail)
        if self._batch_fixed:
            return np.concatenate([self._run_tflite(batch[i:i + 1]) for i in range(len(batch))])
        return self._run_tflite(batch)

    def _run_tflite(self, batch):
        outputs = self._runner(**{self._input_name: batch})
        name = "probabilities" if "probabilities" in outputs else next(iter(outputs))
        return dequantize_output(outputs[name], self._output_details[name])

    def predict(self, inputs):
        """Class probabilities (n, classes) for file paths, encoded bytes, or [0, 255] image arrays."""
        images = self.images(inputs)
        return np.concatenate([self._probabilities(images[i:i + self.batch_size])
                               for i in range(0, len(images), self.batch_size)])

    def detect(self, inputs, min_score=0.3):
        """Per input, the detections scoring at least `min_score`: a list of {"box" (normalized ymin, xmin,
        ymax, xmax), "class" (0-based), "label" (the class name when labels are known), "score"}."""
        import tensorflow as tf

        if not self.detector:
            raise ValueError(f"model={self.path!r} is a classifier: use predict or top_k (detect is for "
                             "SSDLite detectors)")
        images = self.images(inputs)
        if self.kind == "tflite":  # the file's post-processing op takes one image at a time
            raw = [self._runner(**{self._input_name: quantize_input(images[i:i + 1], self._input_detail)})
                   for i in range(len(images))]
            outputs = {name: np.concatenate([np.asarray(r[name]) for r in raw]) for name in DETECTION_OUTPUTS}
        else:
            call = self._signature if self.kind == "saved_model" else None
            parts = []
            for start in range(0, len(images), self.batch_size):
                batch = tf.constant(images[start:start + self.batch_size])
                found = call(images=batch) if call is not None else self._function(batch)
                parts.append({name: np.asarray(found[name]) for name in DETECTION_OUTPUTS})
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in DETECTION_OUTPUTS}
        results = []
        for boxes, classes, scores, count in zip(*(outputs[name] for name in DETECTION_OUTPUTS)):
            found = []
            for box, label, score in zip(boxes[:int(count)], classes[:int(count)], scores[:int(count)]):
                if score >= min_score:
                    label = int(label)
                    found.append({"box": [float(v) for v in box], "class": label, "score": float(score),
                                  "label": self.labels[label] if self.labels and label < len(self.labels) else None})
            results.append(found)
        return results

    def segment(self, inputs, probabilities=False):
        """int32 class maps (n, height, width) at the model's input size for file paths, encoded bytes or
        [0, 255] image arrays; with `probabilities`, also the per-pixel probabilities (n, h, w, classes)."""
        if not self.segmenter:
            raise ValueError(f"model={self.path!r} is not a segmentation model: segment is for LRASPP and "
                             "DeepLabV3 models (use predict, top_k or detect)")
        scores = self.predict(inputs)
        if self.kind == "tflite" and not np.allclose(scores.sum(-1), 1.0, atol=1e-2):  # a file ending in logits
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
        masks = scores.argmax(-1).astype(np.int32)
        return (masks, scores) if probabilities else masks

    def top_k(self, inputs, k=5):
        """[(label or class id, probability)] of the `k` best classes for each input."""
        probabilities = self.predict(inputs)
        best = np.argsort(-probabilities, axis=1)[:, :k]
        name = (lambda i: self.labels[i]) if self.labels else int
        return [[(name(i), float(row[i])) for i in ids] for row, ids in zip(probabilities, best)]

