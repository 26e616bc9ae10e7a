"""Old import path `keras_mobilenets.papers`, kept working: the module is `keras_mobilenets.analysis.papers`."""

import sys

from keras_mobilenets.analysis import papers

sys.modules[__name__] = papers
