"""Our builders vs keras.applications in the same process: build time, batch-1 latency, batch-32 throughput.

Both models are called through the same compiled tf.function; timings alternate between the two so that
machine noise hits both alike. A ratio >= 1.0 means our model is at least as fast as keras.applications.

    python benchmarks/bench_builders.py [--repeats 7]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mobilenets as km  # noqa: E402

CASES = {
    "MobileNetV2 1.0/224": (keras.applications.MobileNetV2, km.MobileNetV2),
    "MobileNetV3Large 1.0/224": (keras.applications.MobileNetV3Large, km.MobileNetV3Large),
}


def build_seconds(builder):
    start = time.perf_counter()
    builder(input_shape=(224, 224, 3), weights=None)
    return time.perf_counter() - start


def call_seconds(function, batch, calls):
    function(batch).numpy()
    start = time.perf_counter()
    for _ in range(calls):
        function(batch).numpy()
    return (time.perf_counter() - start) / calls


def compiled(model):
    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def measure(reference_builder, our_builder, repeats):
    builds = {"reference": [], "ours": []}
    for _ in range(repeats):
        builds["reference"].append(build_seconds(reference_builder))
        builds["ours"].append(build_seconds(our_builder))
    reference = reference_builder(input_shape=(224, 224, 3), weights=None)
    ours = our_builder(input_shape=(224, 224, 3), weights=None)
    ours.set_weights(reference.get_weights())
    functions = {"reference": compiled(reference), "ours": compiled(ours)}
    rng = np.random.default_rng(0)
    one = tf.constant(rng.uniform(-1, 1, (1, 224, 224, 3)).astype("float32"))
    many = tf.constant(rng.uniform(-1, 1, (32, 224, 224, 3)).astype("float32"))
    np.testing.assert_allclose(functions["ours"](one), functions["reference"](one), atol=1e-5)
    latency = {"reference": [], "ours": []}
    throughput = {"reference": [], "ours": []}
    for _ in range(repeats):
        for key, function in functions.items():
            latency[key].append(call_seconds(function, one, 20))
            throughput[key].append(32 / call_seconds(function, many, 3))
    med = {name: {k: statistics.median(v) for k, v in d.items()}
           for name, d in (("build", builds), ("latency", latency), ("throughput", throughput))}
    return {
        "build_s": (med["build"]["reference"], med["build"]["ours"],
                    med["build"]["reference"] / med["build"]["ours"]),
        "latency_ms": (1e3 * med["latency"]["reference"], 1e3 * med["latency"]["ours"],
                       med["latency"]["reference"] / med["latency"]["ours"]),
        "throughput_img_s": (med["throughput"]["reference"], med["throughput"]["ours"],
                             med["throughput"]["ours"] / med["throughput"]["reference"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"devices: {[d.device_type for d in tf.config.list_physical_devices()]}")
    print("| model | metric | keras.applications | keras_mobilenets | ratio (>= 1.0: ours no slower) |")
    print("|---|---|---|---|---|")
    for name, (reference, ours) in CASES.items():
        for metric, (ref_value, our_value, ratio) in measure(reference, ours, args.repeats).items():
            print(f"| {name} | {metric} | {ref_value:.3f} | {our_value:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
