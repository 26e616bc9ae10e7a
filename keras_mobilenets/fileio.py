"""Atomic writes, checked reads and label names for every JSON and text file the package writes.

A file is written next to its final path and renamed into place, so a kill at any instant leaves
either the old file or the new one, never half of one. New files get the user's umask.
"""

import json
import os
import tempfile


def write_atomic(path, data):
    """Write `data` (str or bytes) to `path` atomically, with the permissions the umask gives."""
    folder = os.path.dirname(os.path.abspath(path))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, payload):
    """Write `payload` as indented JSON, atomically."""
    write_atomic(path, json.dumps(payload, indent=2))


def read_json(path, expected=dict, what="file"):
    """Read a JSON file the package wrote; a missing, truncated or malformed one raises a ValueError
    naming the file and what to do, instead of a bare JSONDecodeError."""
    try:
        with open(path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the {what} was cut short or edited: "
                         "restore it, delete it, or start the run again with --overwrite") from None
    if not isinstance(payload, expected):
        raise ValueError(f"{path} holds a {type(payload).__name__} where a {expected.__name__} was "
                         f"expected; the {what} was edited: restore it or start again with --overwrite")
    return payload


def check_label(label, what="label"):
    """Refuse a class name that cannot round-trip through labels.txt (one name per line) unchanged."""
    label = str(label)
    if not label.strip():
        problem = "is empty" if not label else "is only whitespace"
    elif any(c in label for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        problem = "holds a line break"
    else:
        return label
    raise ValueError(f"{what} {label!r} {problem}: labels.txt stores one label per line, so it would "
                     "shift or drop labels; rename it") from None
