"""Test helpers: a word-level tokenizer built offline and a tiny model trained to reverse word sequences.

The tokenizer has <pad>=0, <s>=1, </s>=2, <unk>=3 (the model config defaults). The model learns in about 25
seconds on one CPU thread to translate "a b c d" into "d c b a", so tests can check real translations and
attention patterns (the cross-attention of a reversal is an anti-diagonal), not just shapes.

It is trained until it is sure of every token: on the test sentences the top logit of each greedy step leads the
second by several units (`greedy_margin`), against a few tenths that int8 or bfloat16 inference moves a logit
(`logit_error`). So reduced precisions and another CPU's kernels (another rounding, another trained model) must
give the same translations, and tests can demand all of them equal instead of a share calibrated on one machine.
"""

import functools

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
WORDS = list("abcdefghijkl")


def tiny_tokenizer(words: list[str], model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over `SPECIALS + words`; encoding appends </s>, like a translation source."""
    vocab = {token: i for i, token in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


@functools.cache
def reversal_model(steps: int = 2000, lr: float = 5e-3, max_len: int = 5):
    """(model, tokenizer): a 2+2-layer, 2-head model trained to reverse 2-5 words (cached per session)."""
    from conftest import tiny_config

    from vanilla_transformer import VanillaTransformerForConditionalGeneration

    tokenizer = tiny_tokenizer(WORDS)
    config = tiny_config(vocab_size=len(tokenizer), encoder_attention_heads=2, decoder_attention_heads=2)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    first = len(SPECIALS)
    eos = torch.full((32, 1), tokenizer.eos_token_id)
    for _ in range(steps):
        length = int(torch.randint(2, max_len + 1, (1,), generator=generator))
        words = torch.randint(first, len(tokenizer), (32, length), generator=generator)
        loss = model(input_ids=torch.cat([words, eos], 1), labels=torch.cat([words.flip(1), eos], 1)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval(), tokenizer


def _greedy_steps(model, tokenizer, sentences: list[str]) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The tokenized `sentences`, the decoder inputs of `model`'s greedy translations (N, T) and a (N, T) mask of
    the steps up to and including each translation's </s>."""
    inputs = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=8)
    generated = output[:, 1:]
    ended = (generated == tokenizer.eos_token_id).long().cumsum(1)
    mask = (ended == 0) | ((ended == 1) & (generated == tokenizer.eos_token_id))
    return inputs, output[:, :-1], mask


def _logits(model, inputs: dict, decoder_input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, decoder_input_ids=decoder_input_ids).logits.float()


def greedy_margin(model, tokenizer, sentences: list[str]) -> float:
    """The smallest lead of the top logit over the second, over every step of the greedy translations."""
    inputs, steps, mask = _greedy_steps(model, tokenizer, sentences)
    top2 = _logits(model, inputs, steps).topk(2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1])[mask].min())


def logit_error(model, reference, tokenizer, sentences: list[str]) -> float:
    """The largest difference between a logit of `model` and of `reference`, along the reference's greedy steps.

    While it stays below half of `greedy_margin(reference, ...)`, no step can change its top token, so greedy
    translations are identical."""
    inputs, steps, mask = _greedy_steps(reference, tokenizer, sentences)
    return float((_logits(model, inputs, steps) - _logits(reference, inputs, steps)).abs()[mask].max())
