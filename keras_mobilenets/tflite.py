"""Old import path `keras_mobilenets.tflite`, kept working: the module is `keras_mobilenets.deploy.tflite`."""

import sys

from keras_mobilenets.deploy import tflite

sys.modules[__name__] = tflite
