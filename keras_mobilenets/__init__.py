"""keras_mobilenets: MobileNet V1/V2/V3 for Keras 3 from one block registry, exact drop-ins for
keras.applications, ready for fine-tuning, QAT, TF Serving and TFLite."""

from keras_mobilenets import _startup  # noqa: F401  (first: quiets TensorFlow's banners for the CLI)

from keras_mobilenets.data import datasets
from keras_mobilenets.nets.architectures import (
    ARCHITECTURES,
    MOBILENET_V1,
    MOBILENET_V2,
    MOBILENET_V3_LARGE,
    MOBILENET_V3_LARGE_MINIMALISTIC,
    MOBILENET_V3_SMALL,
    MOBILENET_V3_SMALL_MINIMALISTIC,
)
from keras_mobilenets.nets.builder import BlockInfo, build
from keras_mobilenets.nets.channels import make_divisible, scale_channels
from keras_mobilenets.nets.models import (
    MobileNet,
    MobileNetV1,
    MobileNetV2,
    MobileNetV3Large,
    MobileNetV3Small,
    create_model,
)
from keras_mobilenets.deploy.serving import ExportResult, export_saved_model, rest_request_body
from keras_mobilenets.nets.features import FEATURE_STRIDES, FeatureInfo, feature_extractor, feature_info
from keras_mobilenets.nets.preprocessing import decode_predictions, includes_preprocessing, preprocess_input
from keras_mobilenets.deploy.predictor import Predictor
from keras_mobilenets.analysis.profiling import Profile, profile
from keras_mobilenets.nets.registry import register_block, registered_blocks
from keras_mobilenets.nets.spec import (
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
from keras_mobilenets.nets.weights import WeightsUnavailableError
from keras_mobilenets.nets.detection import (  # detection (issue 15): SSDLite model, anchors, boxes
    DetectorConfig,
    SSDLite,
    decode_detections,
    detector_config,
    encode_targets,
    ssd_anchors,
)
from keras_mobilenets.nets.flavors import get_flavor as _get_flavor

# Defines and registers the Keras 3 HardSwish / HardSigmoid now, so a .keras file with them loads with
# keras.saving.load_model in any process that imported the package, before any model is built.
_get_flavor("keras")

from keras_mobilenets.version import __version__  # noqa: E402
