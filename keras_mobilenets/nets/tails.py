"""Table transforms for dense-prediction backbones: the MobileNetV3 paper's reduced tail ("RF2").

The V3 paper (Section 6.4) halves the channels of the last stage for detection and segmentation. The
reference implementations differ in one detail, the first block's expansion:
- torchvision (`mobilenet_v3_large(reduced_tail=True)`) and the Object Detection API
  (`_reduce_consecutive_layers(V3_LARGE, 13, 16)`) keep it (672 for V3-Large, 288 for V3-Small);
- DeepLab (`mobilenet_v3_large_seg`, the paper's segmentation models) halves it too (336, 144).
"""

from dataclasses import replace

from keras_mobilenets.nets.spec import ConvBN, DepthwiseSeparable, HeadClassifier, InvertedResidual


def last_stage_start(rows):
    """Index of the row that opens the last stage: the last row with stride 2."""
    strided = [i for i, row in enumerate(rows) if getattr(row, "stride", 1) == 2]
    if not strided:
        raise ValueError("the table has no stride-2 row, so it has no last stage to reduce")
    return strided[-1]


def _half(value, divisor):
    return max(1, int(round(value / divisor)))


def reduce_tail(arch, divisor=2, halve_first_expansion=False):
    """`arch` with its last stage (from the last stride-2 row on) `divisor` times narrower.

    Output channels of every row of the stage shrink by `divisor`; expansions relative to the input
    (V2's t, the last conv's `expand`) follow the narrower inputs by themselves, absolute ones (V3's exp
    size) are divided too, except the first row's unless `halve_first_expansion` (DeepLab's variant).
    A last conv with fixed filters and the MobileNetV3 classifier's hidden width shrink as torchvision's
    do. The result has no ImageNet weights (`family=None`).
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"divisor={divisor!r} is not allowed: divisor must be a positive integer")
    start = last_stage_start(arch.rows)
    rows = list(arch.rows)
    for i in range(start, len(rows)):
        row = rows[i]
        first = i == start
        if isinstance(row, InvertedResidual):
            changes = {"filters": _half(row.filters, divisor)}
            if row.exp_size is not None and (not first or halve_first_expansion):
                changes["exp_size"] = _half(row.exp_size, divisor)
            if row.expansion is not None and first and halve_first_expansion:
                changes["expansion"] = row.expansion / divisor
            rows[i] = replace(row, **changes)
        elif isinstance(row, DepthwiseSeparable):
            rows[i] = replace(row, filters=_half(row.filters, divisor))
        elif isinstance(row, ConvBN) and row.expand is None:
            rows[i] = replace(row, filters=_half(row.filters, divisor))
    classifier = arch.classifier
    if isinstance(classifier, HeadClassifier):
        classifier = replace(classifier, hidden=_half(classifier.hidden, divisor))
    return replace(arch, rows=tuple(rows), classifier=classifier, family=None)
