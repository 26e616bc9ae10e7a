"""Measured TFLite Micro arena and int8 file size of the classic microcontroller configurations, the
table `keras-mobilenets micro --arena ... --flash ...` searches. Written by benchmarks/bench_micro.py
(do not edit by hand): untrained models, logits output, per-channel int8, smallest arena by bisection."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MeasuredConfiguration:
    label: str
    arch: str
    alpha: float
    resolution: int
    channels: int
    minimalistic: bool
    t: int
    classes: int
    macs: int
    arena_bytes: int
    file_bytes: int
    predicted_peak_bytes: int


SETTINGS = "tflite-micro 0.dev20261023182759-g8f6596d, 1000 classes, logits, per-channel int8, untrained weights"
MEASURED = (
    MeasuredConfiguration(**{'label': 'v1', 'arch': 'v1', 'alpha': 0.25, 'resolution': 96, 'channels': 1, 'minimalistic': False, 't': 1, 'classes': 1000, 'macs': 7413376, 'arena_bytes': 93089, 'file_bytes': 576904, 'predicted_peak_bytes': 36864}),
    MeasuredConfiguration(**{'label': 'v2', 'arch': 'v2', 'alpha': 0.35, 'resolution': 96, 'channels': 3, 'minimalistic': False, 't': 1, 'classes': 1000, 'macs': 11934128, 'arena_bytes': 217993, 'file_bytes': 1885856, 'predicted_peak_bytes': 27648}),
    MeasuredConfiguration(**{'label': 'v2', 'arch': 'v2', 'alpha': 0.35, 'resolution': 96, 'channels': 3, 'minimalistic': False, 't': 2, 'classes': 1000, 'macs': 11934128, 'arena_bytes': 186818, 'file_bytes': 1933536, 'predicted_peak_bytes': 27648}),
    MeasuredConfiguration(**{'label': 'v3-small-min', 'arch': 'v3-small', 'alpha': 0.75, 'resolution': 96, 'channels': 3, 'minimalistic': True, 't': 1, 'classes': 1000, 'macs': 8557360, 'arena_bytes': 130234, 'file_bytes': 1923008, 'predicted_peak_bytes': 27648}),
    MeasuredConfiguration(**{'label': 'v3-small-min', 'arch': 'v3-small', 'alpha': 0.75, 'resolution': 96, 'channels': 3, 'minimalistic': True, 't': 2, 'classes': 1000, 'macs': 8557360, 'arena_bytes': 134485, 'file_bytes': 1957800, 'predicted_peak_bytes': 27648}),
)
