"""``load_teacher``: the frozen teacher P4D and ``write_targets`` use, whichever implementation it is."""

from __future__ import annotations

from pathlib import Path

from components.config import ModelConfig, TeacherConfig
from components.teacher.base import Teacher, TeacherError, student_grid
from components.teacher.embedded import EmbeddedTeacher
from components.teacher.external import ExternalTeacher


def load_teacher(source_or_dir: Path | str, cfg: TeacherConfig, model_cfg: ModelConfig) -> Teacher:
    """The teacher in ``source_or_dir``, frozen and in eval mode, checked against the student's grid and
    ``cfg.modalities``. ``cfg.source == "embedded"``: the folder ``train_teacher`` wrote; otherwise an
    external teacher folder (``external.py``), usually ``cfg.source`` itself."""
    if str(source_or_dir) == "embedded":
        raise TeacherError("'embedded' names no folder: pass the folder train_teacher wrote the teacher into")
    folder = Path(source_or_dir)
    if cfg.source == "embedded":
        teacher: Teacher = EmbeddedTeacher.load(folder)
        arch = teacher.arch
        if arch.num_frames != model_cfg.num_frames or arch.map_size != cfg.map_size:
            raise TeacherError(f"{folder}: the teacher was trained for {arch.num_frames} frames and map_size "
                               f"{arch.map_size}; the config asks {model_cfg.num_frames} and {cfg.map_size}: "
                               "re-train the teacher")
    else:
        teacher = ExternalTeacher.load(folder, cfg, model_cfg)
    teacher.check_compatible(student_grid(model_cfg), cfg.modalities)
    return teacher.freeze()
