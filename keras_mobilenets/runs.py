"""Old import path `keras_mobilenets.runs`, kept working: the module is `keras_mobilenets.app.runs`."""

import sys

from keras_mobilenets.app import runs

sys.modules[__name__] = runs
