"""The frozen 4D perception teacher of P4D (4D-RGPT eq. 1-2): one interface (``base``), the embedded teacher
trained here (``embedded``, ``train``), the adapter for an external one such as L4P (``external``), its
training targets (``maps``) and its precomputed outputs for P4D (``targets``)."""

from components.teacher.base import CHANNELS, Grid, Teacher, TeacherError, student_grid
from components.teacher.embedded import Architecture, EmbeddedTeacher
from components.teacher.external import ExternalTeacher, register_kind
from components.teacher.inputs import batch_input, record_key, student_frames, teacher_input
from components.teacher.load import load_teacher
from components.teacher.maps import Maps, target_maps
from components.teacher.targets import load_targets, teacher_digest, write_targets
from components.teacher.train import TeacherResult, depth_image, train_teacher

__all__ = [
    "CHANNELS",
    "Architecture",
    "EmbeddedTeacher",
    "ExternalTeacher",
    "Grid",
    "Maps",
    "Teacher",
    "TeacherError",
    "TeacherResult",
    "batch_input",
    "depth_image",
    "load_targets",
    "load_teacher",
    "record_key",
    "register_kind",
    "student_frames",
    "student_grid",
    "target_maps",
    "teacher_digest",
    "teacher_input",
    "train_teacher",
    "write_targets",
]
