"""Old import path `keras_mobilenets.training`, kept working: the module is `keras_mobilenets.train.recipe`."""

import sys

from keras_mobilenets.train import recipe

sys.modules[__name__] = recipe
