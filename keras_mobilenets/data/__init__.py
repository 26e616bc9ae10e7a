"""Input pipelines (image folders, arrays, file lists, TFDS) and the bundled data sets.

`keras_mobilenets.data.from_folder(...)` and the rest are the pipelines module's public functions.
"""

from keras_mobilenets.data.pipelines import (
    IMAGE_EXTENSIONS,
    MAX_FILE_BYTES,
    Augmentation,
    BadFile,
    DataError,
    ImageData,
    center_crop,
    decode,
    from_arrays,
    from_files,
    from_folder,
    from_tfds,
    random_resized_crop,
    scan_folder,
    split_indices,
    to_rgb,
    validate_files,
)
from keras_mobilenets.data.detection import (  # boxed data for detection (issue 15)
    BoxAugmentation,
    BoxRecord,
    BoxSet,
    DetectionData,
    detection_pipeline,
    from_boxes,
    from_detection_folder,
    read_boxes,
    read_coco,
    read_voc,
    tfds_examples,
)
from keras_mobilenets.data.detection_metrics import coco_evaluate, split_detections
