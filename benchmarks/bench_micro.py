"""TFLite Micro: arena vs the t-way split, latency of the split, and the classic MCU configurations.

    python benchmarks/bench_micro.py arena --config v2-1.0-224 v2-0.35-96 --t 1 2 4 8 16
    python benchmarks/bench_micro.py latency --config v2-0.35-96 --t 1 2 4 8 16
    python benchmarks/bench_micro.py classic --write-table

--needed splits each block in the fewest groups (at most t) that keep it under the peak the worst
block reaches in t groups (`optimize.split.needed_t`); --cache DIR keeps the int8 files for a later run.
`arena`: smallest arena (bisection to 16 bytes) with TFLite Micro's own memory plan and with our offline
plan (in-place ADDs), the recording allocator's head (planned tensors) and tail (persistent data) of the
latter, the live-tensor bound of the op order without in-place ADDs (and the op where it peaks), the int8
file size, and the Section 5 figure at 8 bits. `latency`: median seconds of one image on LiteRT float32 and int8 (XNNPACK, 1 thread)
and on TFLite Micro (reference kernels), as ratios to t=1. `classic`: V1 0.25 96x96x1, V2 0.35 96x96,
V3-Small minimalistic 0.75 96x96, unsplit and split; --write-table rewrites keras_mobilenets/deploy/
micro_table.py, the table `keras-mobilenets micro --arena ... --flash ...` searches.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import timed  # noqa: E402

CONFIGS = {
    "v2-1.0-224": dict(arch="v2", alpha=1.0, resolution=224),
    "v2-0.35-96": dict(arch="v2", alpha=0.35, resolution=96),
    "v1-0.25-96x1": dict(arch="v1", alpha=0.25, resolution=96, channels=1),
    "v2-0.35-96x1": dict(arch="v2", alpha=0.35, resolution=96, channels=1),
    "v3s-min-0.75-96": dict(arch="v3-small", alpha=0.75, resolution=96, minimalistic=True),
}
CLASSIC = ("v1-0.25-96x1", "v2-0.35-96", "v3s-min-0.75-96")


CACHE = None  # --cache: a folder of int8 files, so `latency` reuses what `arena` converted
NEEDED = False  # --needed: each block split in the fewest groups (<= t) that keep it under the peak


def _int8(name, t, split, model):
    """The int8 file of `split` (calibrated on synthetic images), from --cache when it holds it."""
    from keras_mobilenets.deploy import micro
    from keras_mobilenets.fileio import write_atomic

    path = CACHE and os.path.join(CACHE, f"{name}-t{t}{'-needed' if NEEDED else ''}.tflite")
    if path and os.path.exists(path):
        return open(path, "rb").read(), 0.0
    started = time.perf_counter()
    content = micro.convert_micro(split, micro.synthetic_images(model))
    seconds = time.perf_counter() - started
    if path:
        os.makedirs(CACHE, exist_ok=True)
        write_atomic(path, content)
    return content, seconds


def _build(name, t):
    from keras_mobilenets.deploy import micro
    from keras_mobilenets.optimize.split import needed_t, split_blocks

    config = dict(CONFIGS[name])
    model = micro.micro_model(config.pop("arch"), config.pop("alpha"), config.pop("resolution"), **config)
    return model, (model if t == 1 else split_blocks(model, needed_t(model, t) if NEEDED else t))


def arena(names, ts):
    from keras_mobilenets.deploy import micro
    from keras_mobilenets.optimize.split import execution_order

    print(f"{'config':<16}{'t':>4}{'arena':>11}{'in-place':>11}{'head':>10}{'tail':>10}{'live':>10}"
          f"{'file':>11}{'Sec.5':>9}{'x Sec.5':>8}  peak op (layer)   [convert s]")
    for name in names:
        for t in ts:
            model, split = _build(name, t)
            content, seconds = _int8(name, t, split, model)
            plain = micro.measure(model, content)
            order = execution_order(split)
            planned_file = micro.plan_offline(content, layer_order=order)
            planned = micro.measure(model, planned_file)
            recorded = micro.recorded_allocations(planned_file, planned.arena_bytes)
            live, _, op, layer = micro.live_peak(micro.plan_offline(content, False, order))
            label = ("<=" if NEEDED else "") + str(t)
            print(f"{name:<16}{label:>4}{plain.arena_bytes:>11,}{planned.arena_bytes:>11,}{recorded['head']:>10,}"
                  f"{recorded['tail']:>10,}{live:>10,}{plain.file_bytes:>11,}{plain.predicted_peak_bytes:>9,}"
                  f"{planned.arena_bytes / plain.predicted_peak_bytes:>8.1f}  {op} ({layer})  [{seconds:.0f}]",
                  flush=True)


def latency(names, ts, repeats):
    from ai_edge_litert.interpreter import Interpreter

    from keras_mobilenets.deploy import micro
    from keras_mobilenets.deploy.tflite import convert

    print(f"{'config':<18}{'t':>3}{'LiteRT f32 ms':>15}{'LiteRT int8 ms':>16}{'TFLM ms':>10}"
          f"{'f32 x':>7}{'int8 x':>8}{'TFLM x':>8}")
    for name in names:
        base = None
        for t in ts:
            model, split = _build(name, t)
            images = micro.synthetic_images(model)
            image = images[:1]
            float_file = convert(split, "float32")
            int8_file = _int8(name, t, split, model)[0]
            runs = []
            for content, quantize in ((float_file, False), (int8_file, True)):
                interpreter = Interpreter(model_content=content, num_threads=1)
                interpreter.allocate_tensors()
                detail = interpreter.get_input_details()[0]
                value = image
                if quantize:
                    scale, zero = detail["quantization"]
                    value = np.clip(np.round(image / scale + zero), -128, 127).astype(np.int8)
                interpreter.set_tensor(detail["index"], value)
                runs.append(timed(interpreter.invoke, repeats, warmup=2))
            interp = micro.runtime_interpreter(int8_file)
            detail = interp.get_input_details(0)
            interp.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
            runs.append(timed(interp.invoke, max(3, repeats // 5), warmup=1))
            base = base or runs
            ratios = [r / b for r, b in zip(runs, base)]
            print(f"{name:<18}{t:>3}{runs[0] * 1e3:>15.2f}{runs[1] * 1e3:>16.2f}{runs[2] * 1e3:>10.1f}"
                  f"{ratios[0]:>7.2f}{ratios[1]:>8.2f}{ratios[2]:>8.2f}", flush=True)


def classic(ts, write_table):
    from keras_mobilenets.deploy import micro

    rows = []
    for name in CLASSIC:
        config = CONFIGS[name]
        for t in ts:
            if t > 1 and config["arch"] == "v1":
                continue  # no inverted residual blocks to split
            report, _ = micro.measure_configuration(t=t, **config)
            label = name.rsplit("-", 2)[0] if name != "v3s-min-0.75-96" else "v3-small-min"
            rows.append(dict(label=label, arch=config["arch"], alpha=config["alpha"],
                             resolution=config["resolution"], channels=config.get("channels", 3),
                             minimalistic=config.get("minimalistic", False), t=t, classes=1000,
                             macs=report.macs, arena_bytes=report.arena_bytes, file_bytes=report.file_bytes,
                             predicted_peak_bytes=report.predicted_peak_bytes))
            print(f"{name:<18} t={t:<3} arena {report.arena_bytes:>9,} file {report.file_bytes:>10,} "
                  f"MACs {report.macs:>11,} Sec.5 {report.predicted_peak_bytes:>8,}", flush=True)
    if write_table:
        _write_table(rows)


def _write_table(rows):
    import tflite_micro

    path = os.path.join(os.path.dirname(__file__), "..", "keras_mobilenets", "deploy", "micro_table.py")
    source = open(path, encoding="utf-8").read().split("\nSETTINGS = ")[0]
    lines = [f"\nSETTINGS = \"tflite-micro {tflite_micro.__version__}, 1000 classes, logits, per-channel int8, "
             f"untrained weights\"", "MEASURED = ("]
    lines += [f"    MeasuredConfiguration(**{row!r})," for row in rows]
    lines.append(")\n")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source + "\n".join(lines))
    print(f"wrote {os.path.normpath(path)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("arena", "latency", "classic"))
    parser.add_argument("--config", nargs="+", default=["v2-0.35-96"], choices=sorted(CONFIGS))
    parser.add_argument("--t", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--write-table", action="store_true")
    parser.add_argument("--cache", help="folder for the int8 files (reused by a later run)")
    parser.add_argument("--needed", action="store_true",
                        help="split each block in the fewest groups (at most t) that keep it under the peak "
                             "the worst block reaches in t groups (optimize.split.needed_t)")
    args = parser.parse_args()
    global CACHE, NEEDED
    CACHE, NEEDED = args.cache, args.needed
    if args.what == "arena":
        arena(args.config, args.t)
    elif args.what == "latency":
        latency(args.config, args.t, args.repeats)
    else:
        classic(args.t, args.write_table)


if __name__ == "__main__":
    main()
