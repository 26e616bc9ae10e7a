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
