"""The registry of source formats: one reader per layout, each ``root -> StereoSequence``.

See ``docs/sources.md`` for what each reads and assumes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from components.sources import folder, karlsruhe, kitti, stereo4d
from components.sources.sequence import StereoSequence

FORMATS: dict[str, Callable[[Path], StereoSequence]] = {
    "folder": folder.read, "karlsruhe": karlsruhe.read, "kitti": kitti.read, "stereo4d": stereo4d.read,
}


def read_sequence(fmt: str, root: str | Path) -> StereoSequence:
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; valid: {', '.join(sorted(FORMATS))}")
    return FORMATS[fmt](Path(root))
