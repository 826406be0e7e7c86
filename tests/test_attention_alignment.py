"""Word alignments from cross-attention: `attention_alignment` and the pipeline's `return_alignments`.

On the reversal task the alignment is known (output word j is source word n-1-j), so these tests check real
alignments, not only their format.
"""

import pytest
import torch
from reversal_task import reversal_model

from vanilla_transformer.attention import alignment, attention_maps
from vanilla_transformer.pipeline_vanilla_transformer import VanillaTranslationPipeline, attention_alignment

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

SENTENCES = ["a b c d e", "f g h i", "j k l"]


def reversed_pairs(n: int) -> list[tuple[int, int]]:
    return [(n - 1 - j, j) for j in range(n)]


@pytest.fixture(scope="module")
def pipe():
    model, tokenizer = reversal_model()
    return VanillaTranslationPipeline(model=model, tokenizer=tokenizer)


def test_rule_skips_special_tokens_and_reads_the_predicting_row() -> None:
    # decoder input <s> x y (rows 0..2) predicting x y </s>; source u v </s>
    weights = torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.1, 0.7]])
    pairs = attention_alignment(weights, [10, 11, 2], [1, 20, 21, 2], {1, 2})
    # row 0 predicts x: the largest weight is on </s> (left out), so x aligns to v (0.2 > 0.1); row 1 predicts y
    assert pairs == [(1, 0), (0, 1)]
    assert attention_alignment(weights, [2, 2, 2], [1, 20, 21, 2], {1, 2}) == []  # no real source token


def test_pipeline_returns_the_anti_diagonal_of_the_reversal(pipe) -> None:
    results = pipe(SENTENCES, return_alignments=True, num_beams=4, max_new_tokens=10)
    for sentence, result in zip(SENTENCES, results, strict=True):
        words = sentence.split()
        assert result["translation_text"] == " ".join(reversed(words))
        assert result["source_tokens"] == words and result["translation_tokens"] == words[::-1]
        assert result["alignment"] == reversed_pairs(len(words))
    assert "alignment" not in pipe("a b", max_new_tokens=5)[0]  # only when asked for


def test_pipeline_alignment_equals_the_attention_maps_one(pipe) -> None:
    model, tokenizer = reversal_model()
    for layer in (0, -1):
        for sentence in SENTENCES:
            maps = attention_maps(model, tokenizer, sentence, max_new_tokens=10)  # greedy
            result = pipe(sentence, return_alignments=True, alignment_layer=layer, num_beams=1, max_new_tokens=10)
            assert result[0]["alignment"] == alignment(maps, layer=layer)


def test_batches_padding_and_several_sequences_do_not_change_alignments(pipe) -> None:
    one_by_one = [pipe(s, return_alignments=True, num_beams=4, max_new_tokens=10)[0] for s in SENTENCES]
    batched = pipe(SENTENCES, return_alignments=True, num_beams=4, max_new_tokens=10, batch_size=3)  # padded
    assert [r["alignment"] for r in batched] == [r["alignment"] for r in one_by_one]
    several = pipe("a b c", return_alignments=True, num_beams=3, num_return_sequences=2, max_new_tokens=10)
    assert len(several) == 2 and several[0]["alignment"] == reversed_pairs(3)
    for result in several:  # one alignment per returned sequence, one pair per output token
        assert [j for _, j in result["alignment"]] == list(range(len(result["translation_tokens"])))


def test_pipeline_checks_the_layer_and_restores_the_attention_implementation(pipe) -> None:
    with pytest.raises(ValueError, match=r"`alignment_layer` 2 does not exist: the decoder has 2 layer"):
        pipe("a b", return_alignments=True, alignment_layer=2)
    original = pipe.model.config._attn_implementation
    pipe.model.set_attn_implementation("sdpa")
    try:
        assert pipe("a b c", return_alignments=True, max_new_tokens=8)[0]["alignment"] == reversed_pairs(3)
        assert pipe.model.config._attn_implementation == "sdpa"
    finally:
        pipe.model.set_attn_implementation(original)
