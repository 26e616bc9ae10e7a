"""Old import path `keras_mobilenets.export`, kept working: the module is `keras_mobilenets.deploy.serving`."""

import sys

from keras_mobilenets.deploy import serving

sys.modules[__name__] = serving
