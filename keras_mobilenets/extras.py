"""Optional dependencies, one extra per room: a missing one is an ImportError naming the pip line."""

import importlib

EXTRAS = {
    "train": ("pillow>=10", "scikit-learn>=1.4", "matplotlib>=3.7", "tensorboard>=2.19",
              "tensorflow-datasets>=4.9,<4.10", "pycocotools>=2.0", "scikit-image>=0.22"),
    "optimize": ("tf-keras>=2.21,<2.22", "tensorflow-model-optimization>=0.8,<0.9"),
    "deploy": ("ai-edge-litert>=2.0",),
    "timm": ("safetensors>=0.4",),  # reading timm's MobileNetV4 weights (nets/timm_weights.py)
    "micro": ("ai-edge-litert>=2.0", "tflite-micro>=0.dev20250101"),
}


def require(module, extra):
    """Import `module`, or raise an ImportError that says which extra of ours brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this needs the `{module.split('.')[0]}` package, which keras-mobilenets installs "
                          f"with its [{extra}] extra: pip install 'keras-mobilenets[{extra}]'") from None
