"""The locally trained tokenizer: round trips, atomic special tokens, the ChatML template."""

from __future__ import annotations

import pytest

from components.models import CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer

TEXTS = [
    "These images are uniformly sampled from a video of 1.9 seconds.\nWhich way does the red cube move?",
    "<thinking>\nCamera Center: [0.00, 0.00, 1.50]; Object Center: [-2.64, 1.18, 7.83]\n</thinking>\n<answer>B</answer>",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=600)


def test_round_trips_text_even_unseen_characters(tokenizer):
    for text in [*TEXTS[:2], "Ünïcode → 3.14 m/s, never seen\ttabs  and  spaces"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer) <= 600


def test_special_tokens_are_single_ids(tokenizer):
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [expected_id]
        # inside text too: never split or merged with neighbours
        ids = tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"]
        assert expected_id in ids and tokenizer.decode(ids) == f"a{token}b"
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.decode(tokenizer("<|im_start|>hi<|im_end|>")["input_ids"], skip_special_tokens=True) == "hi"


def test_chat_template_renders_image_and_video_placeholders(tokenizer):
    assert tokenizer.chat_template == CHAT_TEMPLATE
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>left</answer>"}]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n" + "<|vision_start|><|image_pad|><|vision_end|>" * 2 + "Where?<|im_end|>\n"
        "<|im_start|>assistant\n<answer>left</answer><|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Where?"}]}],
        tokenize=False, add_generation_prompt=True,
    )
    assert "<|vision_start|><|video_pad|><|vision_end|>Where?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # plain-string content and a system turn work as in Qwen's template
    plain = tokenizer.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], tokenize=False)
    assert plain == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"


def test_too_small_vocab_is_an_error():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, vocab_size=100)


def test_the_template_words_are_whole_tokens(records, model_cfg):
    """The chat template wraps every record in the same words; trained on ``tokenizer_corpus`` they are a token or
    two each, not a byte each (they were ~40 of a record's ~110 tokens before)."""
    from components.models import tokenizer_corpus
    from components.models.inputs import build_conversation

    tok = train_tokenizer(tokenizer_corpus(records, model_cfg), vocab_size=1024)
    ids = tok.apply_chat_template(build_conversation(records[0], model_cfg, with_target=True), tokenize=True,
                                  return_dict=True)["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    for word in ("system", "user", "Ġhelpful", "Ġassistant"):
        assert word in tokens, (word, tokens[:24])
    system_line = tokens[:tokens.index("<|im_end|>")]
    assert len(system_line) <= 9, system_line  # <|im_start|> system \n You Ġare Ġa Ġhelpful Ġassistant .
