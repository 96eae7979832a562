"""Model factory: the tiny random-init Qwen2.5-VL (embedded default) or a Qwen2.5-VL / Qwen3-VL
checkpoint, its trainable parts, and the record -> model-input encoding shared by training and
evaluation."""

from components.models.factory import (
    ModelIntegrityError,
    ModelNotAvailableError,
    build_base_model,
    load_model,
    model_digest,
    resolve_source,
    save_model,
)
from components.models.inputs import (
    IGNORE_INDEX,
    answer_for,
    assistant_labels,
    build_conversation,
    encode_batch,
    frames_for,
    target_text,
    tokenizer_corpus,
)
from components.models.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer
from components.models.trainable import apply_trainable, parameter_counts, part_of, scale_part_learning_rates

__all__ = [
    "CHAT_TEMPLATE",
    "IGNORE_INDEX",
    "SPECIAL_TOKENS",
    "ModelIntegrityError",
    "ModelNotAvailableError",
    "answer_for",
    "apply_trainable",
    "assistant_labels",
    "build_base_model",
    "build_conversation",
    "encode_batch",
    "frames_for",
    "load_model",
    "model_digest",
    "parameter_counts",
    "part_of",
    "resolve_source",
    "save_model",
    "scale_part_learning_rates",
    "target_text",
    "tokenizer_corpus",
    "train_tokenizer",
]
