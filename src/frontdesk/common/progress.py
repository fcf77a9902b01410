"""The one progress callback type of long work (training, retraining): ``progress(step, fraction_done)``."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]
"""``progress(step_description, fraction_done)`` with ``0 ≤ fraction_done ≤ 1``; the CLI draws a bar from it."""
