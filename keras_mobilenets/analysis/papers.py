"""The numbers the papers publish, in one place: `keras-mobilenets reproduce`, the tests and the
quickstart notebook's plot all read them from here."""

from typing import NamedTuple


class Published(NamedTuple):
    """One published network: MMACs and "M params" (conv and dense kernels, 1000 classes)."""

    arch: str
    alpha: float
    resolution: int
    minimalistic: bool
    macs: float
    params: float
    source: str

    def agrees(self, macs, params):
        """Whether measured MACs and kernel parameters are this row's, to the papers' precision (they
        round or truncate to 1M MACs and 0.1M parameters)."""
        return abs(macs / 1e6 - self.macs) < 1.0 and abs(params / 1e6 - self.params) < 0.1


PUBLISHED = (
    Published("v1", 1.0, 224, False, 569, 4.2, "V1 paper Table 6"),
    Published("v1", 0.75, 224, False, 325, 2.6, "V1 paper Table 6"),
    Published("v1", 0.5, 224, False, 149, 1.3, "V1 paper Table 6"),
    Published("v1", 0.25, 224, False, 41, 0.5, "V1 paper Table 6"),
    Published("v1", 1.0, 192, False, 418, 4.2, "V1 paper Table 7"),
    Published("v1", 1.0, 160, False, 290, 4.2, "V1 paper Table 7"),
    Published("v1", 1.0, 128, False, 186, 4.2, "V1 paper Table 7"),
    Published("v2", 1.0, 224, False, 300, 3.4, "V2 paper Table 4, slim README"),
    Published("v2", 1.4, 224, False, 582, 6.06, "slim README (V2 paper Table 4: 585M, 6.9M)"),
    Published("v3-large", 1.0, 224, False, 217, 5.4, "slim README, V3 paper Table 9"),
    Published("v3-large", 0.75, 224, False, 155, 4.0, "V3 paper Table 3"),
    Published("v3-large", 1.0, 224, True, 209, 3.9, "slim README"),
    Published("v3-small", 1.0, 224, False, 56.5, 2.5, "V3 paper Table 3"),
)

# (arch, peak activation bytes at 16 bits, alpha 1.0 at 224): V2 paper Table 3.
PUBLISHED_PEAK_BYTES = (("v1", 1_605_632), ("v2", 401_408))


class PublishedV4(NamedTuple):
    """One row of the MobileNetV4 paper's ImageNet table (arXiv 2404.10518) at the resolution it lists:
    GMACs and M params as printed (strings, so their precision is known), and Model Garden's backbone
    parameter count for the same table (`mobilenet_test.py`, width 1.0, no classifier)."""

    arch: str
    resolution: int
    gmacs: str
    params: str
    model_garden: int
    source: str = "MobileNetV4 paper, ImageNet table"

    def paper_agrees(self, macs, trainable_params):
        """Whether MACs (attention matmuls included) and trainable parameters (timm's count: BatchNorm
        scale and offset, no moving statistics) round to the paper's figures at its printed precision."""
        return _rounds_to(macs / 1e9, self.gmacs) and _rounds_to(trainable_params / 1e6, self.params)


def _rounds_to(value, printed):
    decimals = len(printed.partition(".")[2])
    return abs(value - float(printed)) <= 0.5 * 10 ** -decimals


# Model Garden's backbone ends in the 1280-wide conv; with classes=1000 ours adds one 1280-to-1000 Dense
MODEL_GARDEN_CLASSIFIER = 1280 * 1000 + 1000
PUBLISHED_V4 = (
    PublishedV4("v4-conv-small", 224, "0.2", "3.8", 2_518_112),
    PublishedV4("v4-conv-medium", 256, "1.0", "9.2", 8_502_416),
    PublishedV4("v4-hybrid-medium", 256, "1.2", "10.5", 9_869_488),
    PublishedV4("v4-conv-large", 384, "5.9", "31", 31_459_416),
    PublishedV4("v4-hybrid-large", 384, "7.2", "35.9", 36_648_024),
)
