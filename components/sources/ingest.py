"""``mllm4d ingest``: a real stereo recording -> clips of the clip contract, ready for ``mllm4d curate``.

Reads the recording with its format's reader, cuts it into full windows (``window`` frames every ``stride``)
and writes one clip per window; frames after the last full window are dropped and counted. A recording
shorter than one window is an error rather than an empty, "successful" ingest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from components.sources.formats import read_sequence
from components.sources.sequence import SourceError, windows, write_clips

log = logging.getLogger(__name__)


def ingest(fmt: str, root: str | Path, out: str | Path, *, window: int, stride: int | None = None,
           poses: bool = True) -> dict:
    """Write the clips of ``root`` (format ``fmt``) under ``out``; return a summary."""
    stride = stride or window
    seq = read_sequence(fmt, root)
    spans = windows(len(seq), window, stride)
    if not spans:
        raise SourceError(root, f"{len(seq)} frames: fewer than one window of {window}")
    clips = write_clips(seq, out, window=window, stride=stride, poses=poses)
    pose_source = (seq.source.get("pose_source") or "none") if poses else "none (dropped with --no-poses)"
    summary = {
        "format": fmt, "root": str(root), "sequence": seq.name, "frames": len(seq), "clips": len(clips),
        "clip_ids": [c.name for c in clips], "frames_dropped": len(seq) - len(set().union(*spans)),
        "window": window, "stride": stride, "pose_source": pose_source,
    }
    log.info("ingested %s: %s", root, summary)
    return summary
