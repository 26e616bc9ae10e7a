"""Old import path `keras_mobilenets.datasets`, kept working: the module is `keras_mobilenets.data.datasets`."""

import sys

from keras_mobilenets.data import datasets

sys.modules[__name__] = datasets
