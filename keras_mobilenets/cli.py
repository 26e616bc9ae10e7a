"""The `keras-mobilenets` command line."""

import argparse
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ARCHS = ("v1", "v2", "v3-large", "v3-small")

# (arch, alpha, resolution, minimalistic, published MMACs, source): the papers' table rows.
PAPER_MACS = (
    ("v1", 1.0, 224, False, 569, "V1 paper Table 6"),
    ("v1", 0.75, 224, False, 325, "V1 paper Table 6"),
    ("v1", 0.5, 224, False, 149, "V1 paper Table 6"),
    ("v1", 0.25, 224, False, 41, "V1 paper Table 6"),
    ("v1", 1.0, 192, False, 418, "V1 paper Table 7"),
    ("v1", 1.0, 160, False, 290, "V1 paper Table 7"),
    ("v1", 1.0, 128, False, 186, "V1 paper Table 7"),
    ("v2", 1.0, 224, False, 300, "V2 paper, slim README"),
    ("v2", 1.4, 224, False, 582, "slim README"),
    ("v3-large", 1.0, 224, False, 217, "slim README, V3 paper Table 9"),
    ("v3-large", 0.75, 224, False, 155, "V3 paper Table 3"),
    ("v3-large", 1.0, 224, True, 209, "slim README"),
    ("v3-small", 1.0, 224, False, 56.5, "V3 paper Table 3"),
)
# (arch, published peak activation bytes at 16 bits): V2 paper Table 3.
PAPER_PEAK_BYTES = (("v1", 1_605_632), ("v2", 401_408))


def _profile(args):
    from keras_mobilenets import create_model, profile

    model = create_model(args.arch, alpha=args.alpha, minimalistic=args.minimalistic,
                         input_shape=(args.resolution, args.resolution, 3),
                         include_top=not args.no_top, weights=None)
    print(f"{model.name}: {args.arch} alpha={args.alpha} {args.resolution}x{args.resolution}"
          f"{' minimalistic' if args.minimalistic else ''}")
    print(profile(model).table())
    return 0


def _reproduce(args):
    """Rebuild every network the papers report and compare MACs and peak memory with the papers."""
    from keras_mobilenets import create_model, profile

    failures = 0
    print(f"{'model':<34}{'MMACs':>10}{'paper':>8}  source")
    for arch, alpha, size, minimal, paper, source in PAPER_MACS:
        model = create_model(arch, alpha=alpha, minimalistic=minimal, input_shape=(size, size, 3))
        macs = profile(model).macs / 1e6
        ok = abs(macs - paper) < 1.0  # the papers print MMACs rounded or truncated
        failures += not ok
        label = f"{arch}{'-min' if minimal else ''} {alpha} {size}"
        print(f"{label:<34}{macs:>10.1f}{paper:>8}  {source}{'' if ok else '  MISMATCH'}")
    for arch, paper in PAPER_PEAK_BYTES:
        peak = profile(create_model(arch, input_shape=(224, 224, 3))).peak_activation_bytes
        failures += peak != paper
        print(f"{arch} 1.0 224 peak activation bytes (16-bit): {peak:,} (paper: {paper:,})"
              f"{'' if peak == paper else '  MISMATCH'}")
    print("all published numbers reproduced" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


def _export(args):
    import keras

    from keras_mobilenets.export import export_saved_model, rest_request_body

    model = keras.saving.load_model(args.model)
    result = export_saved_model(model, args.out, version=args.version, labels=args.labels,
                                overwrite=args.overwrite)
    print(f"exported version {result.version} to {result.path}")
    show = subprocess.run(["saved_model_cli", "show", "--dir", result.path, "--all"],
                          capture_output=True, text=True)
    print(show.stdout if show.returncode == 0 else f"(saved_model_cli failed: {show.stderr[-500:]})")
    import numpy as np
    import tensorflow as tf

    sample = tf.io.encode_png(np.full((8, 8, 3), 128, np.uint8)).numpy()
    name = os.path.basename(os.path.normpath(args.out))
    print(f"REST: POST http://localhost:8501/v1/models/{name}:predict with a body like")
    print(rest_request_body([sample]))
    return 0


def _predict(args):
    from keras_mobilenets.predictor import Predictor

    predictor = Predictor(args.model, num_threads=args.threads, labels=args.labels)
    for image, best in zip(args.images, predictor.top_k(args.images, k=args.top_k)):
        print(image + ": " + ", ".join(f"{label} {score:.4f}" for label, score in best))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-mobilenets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prof = commands.add_parser("profile", help="per-block params, MACs and activation memory")
    prof.add_argument("--arch", choices=ARCHS, default="v2")
    prof.add_argument("--alpha", type=float, default=1.0)
    prof.add_argument("--resolution", type=int, default=224)
    prof.add_argument("--minimalistic", action="store_true")
    prof.add_argument("--no-top", action="store_true", help="profile the backbone without classifier")
    prof.set_defaults(run=_profile)

    export = commands.add_parser("export", help="SavedModel for TF Serving from a .keras model")
    export.add_argument("model", help="a .keras file")
    export.add_argument("--out", required=True, help="TF Serving base folder, e.g. saved_models/NAME")
    export.add_argument("--labels", help="class names, one per line")
    export.add_argument("--version", type=int, help="integer version (default: the next free one)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.set_defaults(run=_export)

    predict = commands.add_parser("predict", help="top-k classes of image files")
    predict.add_argument("--model", required=True, help="a .tflite file, a .keras file or a SavedModel")
    predict.add_argument("--labels", help="class names, one per line")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--threads", type=int, default=2, help="LiteRT threads for .tflite")
    predict.add_argument("images", nargs="+")
    predict.set_defaults(run=_predict)

    repro = commands.add_parser("reproduce", help="check the papers' MACs and memory numbers")
    repro.set_defaults(run=_reproduce)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
