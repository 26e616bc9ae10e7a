import ast

from setuptools import find_packages, setup

# the extras are defined once, in keras_mobilenets/extras.py (read without importing the package)
_source = open("keras_mobilenets/extras.py", encoding="utf-8").read()
EXTRAS = {name: list(reqs) for name, reqs in ast.literal_eval(
    _source.split("EXTRAS = ", 1)[1].split("\n\n", 1)[0]).items()}

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
        "numpy>=1.26",
        "h5py>=3.10",
    ],
    extras_require={
        **EXTRAS,
        "all": sorted({req for reqs in EXTRAS.values() for req in reqs}),
        "test": sorted({req for reqs in EXTRAS.values() for req in reqs})
        + ["pytest>=8", "pytest-xdist>=3.5", "nbmake>=1.5", "scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["keras-mobilenets=keras_mobilenets.app.cli:main"]},
)
