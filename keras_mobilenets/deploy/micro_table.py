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


SETTINGS = "not measured yet"
MEASURED = ()
