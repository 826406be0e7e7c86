"""A joint source/target BPE vocabulary (the paper's shared vocabulary, Section 5.1), trained with `tokenizers`.

Not shipped to the Hub; the trained tokenizer is saved as a `PreTrainedTokenizerFast` beside the model.
Special tokens have the ids the model config expects: `<pad>` 0, `<s>` 1 (decoder start), `</s>` 2, `<unk>` 3.
Both source and target get `</s>` appended; the decoder input starts with `<s>`.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_joint_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train one BPE vocabulary on source and target text together.

    Text is NFC-normalised and split on whitespace with a visible word-start marker (`Metaspace`), so decoding
    restores the original spacing.

    Args:
        texts: training sentences of both languages.
        vocab_size: target size of the vocabulary, special tokens included.
        min_frequency: a merge needs at least this many occurrences.

    Returns:
        A fast tokenizer with pad/bos/eos/unk set (ids 0/1/2/3) and `</s>` appended to every sequence.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    eos = SPECIAL_TOKENS["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tokenizer.token_to_id(eos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
