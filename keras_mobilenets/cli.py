"""Old import path `keras_mobilenets.cli`, kept working: the module is `keras_mobilenets.app.cli`."""

import sys

from keras_mobilenets.app import cli

sys.modules[__name__] = cli
