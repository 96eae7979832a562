"""A byte-level BPE tokenizer trained locally, with Qwen's special tokens and a ChatML chat template.

The papers (MLLM-4D, 4D-RGPT) fine-tune Qwen-VL checkpoints and inherit Qwen's 151k-token vocabulary.
Nothing can be downloaded here, so the tiny model gets a tokenizer trained in well under a second on
the curated texts: the same pre-tokenizer regex as Qwen2 (so text splits the way Qwen's does), the same
special tokens, and a chat template of the same ChatML shape. Code written against this tokenizer
(label masking, answer extraction, generation stop tokens) therefore works unchanged on a real Qwen
checkpoint, whose own tokenizer and template are used instead.

The template wraps each assistant turn (its content and ``<|im_end|>``) in ``{% generation %}``, so
``apply_chat_template(..., return_assistant_tokens_mask=True)`` and TRL's ``assistant_only_loss`` work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"  # Qwen pads with <|endoftext|> and ends a turn with <|im_end|>
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (
    PAD_TOKEN,
    "<|im_start|>",
    EOS_TOKEN,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen2's pre-tokenizer: digits one by one, words with one leading non-letter, newlines on their own.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

SYSTEM_PROMPT = "You are a helpful assistant."  # Qwen2.5-VL's default system message
# The words the template adds around every conversation: the tokenizer is trained on them too, so that they are a
# few tokens each rather than ~40 single bytes in every sequence.
TEMPLATE_WORDS = f"system\n{SYSTEM_PROMPT}\nuser\nassistant\n"

# Qwen2.5-VL's template, minus tools and vision ids. transformers renders templates with trim_blocks,
# which eats a newline right after a block tag, hence the explicit {{ '\n' }}.
CHAT_TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for item in content %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>{{{{ '\\n' }}}}"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render(message['content']) }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ render(message['content']) }}<|im_end|>{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; special tokens are single ids 0..6 in ``SPECIAL_TOKENS`` order.

    The vocabulary can come out smaller than ``vocab_size`` when the texts have fewer distinct merges
    (templated questions do); the model's embedding is sized from ``len(tokenizer)``, not the request.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} is below the 256 byte symbols + {len(SPECIAL_TOKENS)} special tokens")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any byte encodes, even unseen characters
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.add_special_tokens(list(SPECIAL_TOKENS))  # matched whole in any text, never split or merged
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
        model_max_length=32768,
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    log.info("trained a byte-level BPE tokenizer: %d tokens (asked for %d)", len(tokenizer), vocab_size)
    return tokenizer
