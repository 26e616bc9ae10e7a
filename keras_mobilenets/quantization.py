"""Old import path `keras_mobilenets.quantization`, kept working: the module is `keras_mobilenets.optimize`."""

import sys

from keras_mobilenets import optimize

sys.modules[__name__] = optimize
