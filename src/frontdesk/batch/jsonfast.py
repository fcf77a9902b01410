"""JSON for the batch path: orjson when installed (``frontdesk[batch]``, ~3× faster), else the standard library.

Both write the same rows: compact separators, UTF-8, shortest float repr (only the exponent form of tiny
floats differs: ``1e-7`` vs ``1e-07``).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the batch extra installs it
    _orjson = None

JSONDecodeError = ValueError
"""What :func:`loads` raises on bad input (orjson's and json's errors are both ValueErrors)."""


def loads(data: bytes | str) -> Any:
    """Parse one JSON document."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


def dumps(obj: Any) -> bytes:
    """One compact JSON document as UTF-8 bytes."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
