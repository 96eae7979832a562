"""The synthetic stereo 4D world: scene sampling, rendering, and perfect ground truth.

The embedded default of the pipeline needs data with known answers on any laptop: this package samples scenes
of textured objects (cube, sphere, cylinder in named colours) that move (static, straight, curved,
accelerating, decelerating) and rotate (none, left, right) on a textured ground before a textured backdrop, seen by a
stereo rig that is static or moves (forward, backward, left, right, turn_left, turn_right), and writes them as
clips in the layout every real source also produces (``components.sources.clip``), with ``gt/`` added.

Conventions: world = left camera at t=0, OpenCV axes (x right, y down, z forward), ground y = camera height;
yaw grows counter-clockwise seen from above ("left"); see ``spec.py`` and ``YAW_CONVENTION``.

    sample_scene(cfg, index) -> SceneSpec       deterministic in (cfg.seed, index) and the rest of cfg
    render_frame(spec, t) -> RenderedFrame      in memory: stereo pair + depth, instances, flow, motion
    render_clip(cfg, index, out_root) -> Path   out_root/scene_<index:04d>/, written atomically
    render_scenes(cfg, out_root, workers=..., progress=...) -> list[Path]
"""

from components.scenes.render import render_frame
from components.scenes.sampling import sample_scene
from components.scenes.spec import YAW_CONVENTION, ObjectSpec, RenderedFrame, SceneSpec
from components.scenes.writer import render_clip, render_scenes

__all__ = [
    "YAW_CONVENTION",
    "ObjectSpec",
    "RenderedFrame",
    "SceneSpec",
    "render_clip",
    "render_frame",
    "render_scenes",
    "sample_scene",
]
