from setuptools import find_packages, setup

setup(
    name="keras-mobilenets",
    version="0.1.0",
    description="MobileNet V1/V2/V3 for Keras 3 from one block registry: exact keras.applications "
                "drop-ins, ready for fine-tuning, QAT, TF Serving and TFLite.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_mobilenets", "keras_mobilenets.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9,<4.10",
        "ai-edge-litert>=2.0",
        "numpy>=1.26",
        "h5py>=3.10",
        "pillow>=10",
        "scikit-learn>=1.4",
        "matplotlib>=3.7",
        "tensorboard>=2.19",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbmake>=1.5", "scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["keras-mobilenets=keras_mobilenets.app.cli:main"]},
)
