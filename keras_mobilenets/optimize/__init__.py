"""Making a trained model smaller: the Keras 3 -> tf_keras copy with BatchNorm folding, quantization-aware
training with tfmot, and pruning. All knowledge of tfmot's classes lives in this room."""
