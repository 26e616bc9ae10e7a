"""keras_mobilenets: MobileNet V1/V2/V3 for Keras 3 from one block registry, exact drop-ins for
keras.applications, ready for fine-tuning, QAT, TF Serving and TFLite."""

from keras_mobilenets import _startup  # noqa: F401  (first: quiets TensorFlow's banners for the CLI)

from keras_mobilenets import datasets
from keras_mobilenets.architectures import (
    ARCHITECTURES,
    MOBILENET_V1,
    MOBILENET_V2,
    MOBILENET_V3_LARGE,
    MOBILENET_V3_LARGE_MINIMALISTIC,
    MOBILENET_V3_SMALL,
    MOBILENET_V3_SMALL_MINIMALISTIC,
)
from keras_mobilenets.builder import BlockInfo, build
from keras_mobilenets.channels import make_divisible, scale_channels
from keras_mobilenets.models import (
    MobileNet,
    MobileNetV1,
    MobileNetV2,
    MobileNetV3Large,
    MobileNetV3Small,
    create_model,
)
from keras_mobilenets.export import ExportResult, export_saved_model, rest_request_body
from keras_mobilenets.features import FEATURE_STRIDES, FeatureInfo, feature_extractor, feature_info
from keras_mobilenets.preprocessing import decode_predictions, includes_preprocessing, preprocess_input
from keras_mobilenets.predictor import Predictor
from keras_mobilenets.profiling import Profile, profile
from keras_mobilenets.registry import register_block, registered_blocks
from keras_mobilenets.spec import (
    Architecture,
    BlockNames,
    ConvBN,
    ConvClassifier,
    DenseClassifier,
    DepthwiseSeparable,
    HeadClassifier,
    InvertedResidual,
    bneck,
    bottleneck,
    minimalistic,
)
from keras_mobilenets.weights import WeightsUnavailableError

__version__ = "0.1.0"
