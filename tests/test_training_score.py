"""The evaluation scores of training (`training.score`): corpus BLEU, chrF and exact match on known pairs."""

import math

import pytest

from vanilla_transformer.training import score

REFERENCES = ["the cat sat on the mat", "a dog runs in the park", "birds sing"]
HYPOTHESES = ["the cat sat on the mat", "a dog runs in park", "birds sing loudly"]


def test_bleu_is_the_corpus_bleu_of_the_hypotheses_against_the_references() -> None:
    """Clipped n-gram matches over the corpus, hypothesis side: pair 1 matches 6/6, 5/5, 4/4, 3/3 of its 1- to
    4-grams, pair 2 ("in park" for "in the park") 5/5, 3/4, 2/3, 1/2, pair 3 (one extra word) 2/3, 1/2, 0/1, 0/0.
    Both sides have 14 words, so the brevity penalty is 1. Swapping the sides gives 78.51, not 82.17."""
    bleu = 100 * (13 / 14 * 9 / 11 * 6 / 8 * 4 / 5) ** (1 / 4)
    assert score(HYPOTHESES, REFERENCES)["bleu"] == pytest.approx(bleu, abs=1e-9)
    assert bleu == pytest.approx(82.17, abs=0.005)


def test_brevity_penalty_applies_to_short_hypotheses() -> None:
    """One 5-word hypothesis for a 6-word reference: n-gram precisions 5/5, 3/4, 2/3, 1/2 and the penalty
    exp(1 - 6/5); the other way round the penalty is 1 and the precisions 5/6, 3/5, 2/4, 1/3."""
    short, full = ["a dog runs in park"], ["a dog runs in the park"]
    assert score(short, full)["bleu"] == pytest.approx(
        100 * math.exp(1 - 6 / 5) * (1 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4), abs=1e-9
    )
    assert score(full, short)["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4), abs=1e-9)


def test_chrf_weights_recall_over_precision() -> None:
    """sacreBLEU's chrF2 (character 6-grams, beta 2): the hypotheses miss fewer reference characters than they add,
    so swapping the sides changes the score (82.64 -> 78.68)."""
    assert score(HYPOTHESES, REFERENCES)["chrf"] == pytest.approx(82.64, abs=0.005)
    assert score(REFERENCES, HYPOTHESES)["chrf"] == pytest.approx(78.68, abs=0.005)


def test_exact_match_counts_identical_pairs_only() -> None:
    result = score(HYPOTHESES, REFERENCES)
    assert result["exact_match"] == pytest.approx(100 / 3)  # only "the cat sat on the mat" is identical
    assert result["n"] == 3.0
    assert score(["Birds sing", "birds sing "], ["birds sing", "birds sing"])["exact_match"] == 0.0  # case, space
    assert score(["birds sing"], ["birds sing"])["exact_match"] == 100.0  # one pair
    perfect = score(REFERENCES, REFERENCES)
    assert [perfect[k] for k in ("bleu", "chrf", "exact_match")] == pytest.approx([100.0, 100.0, 100.0])


def test_unequal_numbers_of_translations_and_references_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^2 translations for 3 references\.$"):
        score(HYPOTHESES[:2], REFERENCES)
