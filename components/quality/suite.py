"""The data gate's expectations, declared as a table: one line per rule, named, on a derived column.

Every expectation carries a short ``gate`` name in its ``meta`` and a one-line ``description`` (shown
in Data Docs); the report, the failure message and the tests speak in those names, so they are stable.
The columns they check are built in ``table.py``.

GX costs ~4 s to import, so it is imported here on first use, not when ``components.quality`` is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from components.config import QualityConfig
from components.curation.schema import ANSWER_TYPES, CATEGORIES, LETTERS, PROMPT_VARIANTS, SPLITS

NULL, IN_SET, BETWEEN = (
    "ExpectColumnValuesToBeNull",
    "ExpectColumnValuesToBeInSet",
    "ExpectColumnValuesToBeBetween",
)
OK = {"value_set": [True]}  # derived booleans: True passes, False fails, None means "does not apply"


@dataclass(frozen=True)
class Check:
    gate: str  # the stable name
    expectation: str  # a class of ``great_expectations.expectations``
    column: str | None  # None for column-pair expectations (their columns are in ``kwargs``)
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


RECORD_CHECKS: tuple[Check, ...] = (
    Check("fields_present", NULL, "missing_fields", "every field of RECORD_FIELDS is present"),
    Check("required_not_null", NULL, "null_fields", "non-nullable fields are not null"),
    Check("field_types", NULL, "bad_type_fields", "every field has an allowed type (bool is not a number)"),
    Check("no_extra_fields", NULL, "extra_fields", "no field outside RECORD_FIELDS (later stages reject them)"),
    Check(
        "text_not_blank", NULL, "blank_fields",
        "id, qid, clip_id, question, answer_text and cot are not empty or whitespace",
    ),
    Check("id_unique", "ExpectColumnValuesToBeUnique", "id", "record ids are unique across all splits"),
    Check("split_in_set", IN_SET, "split", f"split is one of {SPLITS}", {"value_set": list(SPLITS)}),
    Check(
        "split_matches_file", "ExpectColumnPairValuesToBeEqual", None, "a record's split is its file's",
        {"column_A": "split", "column_B": "file_split"},
    ),
    Check("category_in_set", IN_SET, "category", "category is a known one", {"value_set": list(CATEGORIES)}),
    Check(
        "answer_type_in_set", IN_SET, "answer_type", f"answer_type is one of {ANSWER_TYPES}",
        {"value_set": list(ANSWER_TYPES)},
    ),
    Check(
        "prompt_variant_in_set", IN_SET, "prompt_variant", f"prompt_variant is one of {PROMPT_VARIANTS}",
        {"value_set": list(PROMPT_VARIANTS)},
    ),
    Check(
        "mc_num_options", IN_SET, "mc_n_options_ok",
        "mc has 4-5 options (the whole label set when it is smaller: 3 rotations)", OK,
    ),
    Check("mc_answer_letter", IN_SET, "mc_answer", "mc answer is a letter", {"value_set": list(LETTERS)}),
    Check("mc_answer_in_options", IN_SET, "mc_answer_in_options", "mc answer letter is within options", OK),
    Check("mc_answer_text", IN_SET, "mc_answer_text_ok", "mc answer_text equals options[letter]", OK),
    Check(
        "mc_options_distinct", IN_SET, "mc_options_distinct",
        "mc options are non-blank texts, no two alike ignoring case and punctuation", OK,
    ),
    Check("numeric_answer_positive", IN_SET, "numeric_answer_ok", "numeric answer is finite and > 0", OK),
    Check(
        "numeric_options_empty", BETWEEN, "numeric_n_options", "numeric questions have no options",
        {"min_value": 0, "max_value": 0},
    ),
    Check(
        "solution_answer_matches", IN_SET, "solution_answer_ok",
        "solution.answer (and solution.answer_text) equal the record's answer (and answer_text)", OK,
    ),
    Check(
        "answer_value_matches_text", IN_SET, "answer_value_ok",
        "answer_value is the number the answer's option text (mc) or answer_text states, up to its rounding", OK,
    ),
    Check("frames_exist", NULL, "missing_files", "every frame_paths file (and som_image) exists on disk"),
    Check(
        "frames_are_images", NULL, "unreadable_images",
        "every existing frame_paths file (and som_image) decodes as an image",
    ),
    Check(
        "frame_lengths_match", IN_SET, "frame_lengths_ok",
        "frames, timestamps and frame_paths are non-empty and of one length", OK,
    ),
    Check(
        "frames_match_paths", IN_SET, "frames_match_paths",
        "each frame number is the index in its frame path's file name (NNNNNN.png)", OK,
    ),
    Check("timestamps_increasing", IN_SET, "timestamps_increasing", "timestamps strictly increase", OK),
    Check(
        "timestamps_match_fps", IN_SET, "timestamps_match_fps",
        "timestamps are t0 + |frame - frame0| / fps with the clip's fps (its meta.json, else its records')", OK,
    ),
    Check(
        "clip_in_one_split", IN_SET, "clip_n_splits", "each clip's records are all in one split",
        {"value_set": [1]},
    ),
    Check("cot_format", IN_SET, "cot_format_ok", "cot is <thinking>...</thinking><answer>...</answer>", OK),
    Check(
        "cot_spatial_state", IN_SET, "cot_spatial_state_ok",
        "thinking has Camera Center: [x, y, z] (and Object Center when the solution has one)", OK,
    ),
    Check("cot_answer_matches", IN_SET, "cot_answer_ok", "<answer> content equals the record's answer", OK),
)  # fmt: skip


def checks(cfg: QualityConfig) -> dict[str, tuple[Check, ...]]:
    """table name -> its checks, in report order; the thresholds come from ``cfg``."""
    records = RECORD_CHECKS
    if cfg.required_categories:
        records += (
            Check(
                "required_categories", "ExpectColumnDistinctValuesToContainSet", "category",
                f"every required category appears: {', '.join(cfg.required_categories)}",
                {"value_set": list(cfg.required_categories)},
            ),
        )  # fmt: skip
    split_summary = (
        Check(
            "min_records_per_split", BETWEEN, "n_records",
            f"each split has >= {cfg.min_records_per_split} records",
            {"min_value": cfg.min_records_per_split},
        ),
    )  # fmt: skip
    letter_balance = (
        Check(
            "letter_balance", BETWEEN, "deviation",
            f"each letter's share of a split's mc answers is within {cfg.letter_balance_tolerance} "
            "of uniform (1/number of options)",
            {"min_value": 0.0, "max_value": cfg.letter_balance_tolerance},
        ),
    )  # fmt: skip
    answer_balance = (
        Check(
            "answer_balance", BETWEEN, "deviation",
            f"each answer text of a category's label set has a share of the split's questions of that "
            f"category within {cfg.answer_balance_tolerance:.0%} of uniform (relative)",
            {"min_value": 0.0, "max_value": cfg.answer_balance_tolerance},
        ),
    )  # fmt: skip
    return {"records": records, "split_summary": split_summary, "letter_balance": letter_balance,
            "answer_balance": answer_balance}


def import_gx() -> Any:
    """Import GX without analytics (the tqdm bars are turned off per context, in ``gate.py``)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def to_expectation(check: Check) -> Any:
    """A :class:`Check` as a GX expectation object."""
    import great_expectations.expectations as gxe

    column = {"column": check.column} if check.column else {}
    cls = getattr(gxe, check.expectation)
    return cls(meta={"gate": check.gate}, description=check.description, **column, **check.kwargs)
