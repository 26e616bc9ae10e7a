"""Every python code block in the README runs, in order, in one namespace."""

import re
from pathlib import Path

from keras_mobilenets.registry import BLOCKS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace = {}
    try:
        for number, code in enumerate(blocks, 1):
            exec(compile(code, f"README.md python block {number}", "exec"), namespace)
    finally:
        BLOCKS.pop("readme_fused_conv", None)
