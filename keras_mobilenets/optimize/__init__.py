"""Making a trained model smaller: the Keras 3 -> tf_keras copy with BatchNorm folding, quantization-aware
training with tfmot, and pruning. All knowledge of tfmot's classes lives in this room."""

from keras_mobilenets.optimize.int8_form import int8_form, int8_layer
from keras_mobilenets.optimize.pruning import PRUNABLE, prune_model, pruning_callbacks, strip_pruning
from keras_mobilenets.optimize.qat import (
    calibrate,
    cross_entropy,
    fine_tune_qat,
    fine_tune_qat_detector,
    quantize_model,
    quantize_scope,
    set_weight_ranges,
)
from keras_mobilenets.optimize.tf_keras_copy import to_tf_keras
from keras_mobilenets.optimize.tfmot import is_pruned, is_quantized
