"""The offline quick-start as a user runs it (`accelerate launch train.py`): quality, the numbers tried first."""

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.numerics]  # numerics: outcome rests on the CPU's kernels

# What a user types first: the numbers up to twenty and the round ones (one significant digit) up to 900,000.
FIRST_TRIED = list(range(21)) + [d * 10**k for k in range(1, 6) for d in range(1, 10)]


def test_quickstart_reaches_its_documented_quality(quickstart_run):
    results = quickstart_run.results
    assert results["split"] == "test" and results["n"] == 500
    assert results["bleu"] >= 98.0, results
    assert "test (500 sentences): BLEU" in quickstart_run.stdout


def test_small_and_round_numbers_translate_exactly(quickstart_run):
    """With the saved model and its generation config (beam search as trained), as `translate` would."""
    from num2words import num2words
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import vanilla_transformer  # noqa: F401  (registers the model)

    tokenizer = AutoTokenizer.from_pretrained(quickstart_run.output_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(quickstart_run.output_dir).eval()
    sources = [num2words(n, lang="de") for n in FIRST_TRIED]
    with torch.no_grad():
        output = model.generate(**tokenizer(sources, return_tensors="pt", padding=True))
    translations = [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]
    wrong = {n: t for n, t in zip(FIRST_TRIED, translations, strict=True) if t != num2words(n, lang="en")}
    # Measured (bench/quality.md, "The quick-start recipe on every CPU"): 66 of 66 in 6 of 9 runs (3 seeds x 3
    # instruction-set levels), 65 in three ("fünfzehn" -> "fifteen thousand, nine hundred", 60 -> "sixty thousand",
    # 70,000 -> "seventy"); short inputs are where another CPU's rounding shows first, so the bar allows two.
    assert len(wrong) <= 2, wrong


def test_quickstart_learns_at_its_measured_speed(quickstart_run) -> None:
    """The quality guard: validation BLEU early in the run, where a recipe or model change that learns worse shows.

    Measured with this preset (bench/quality.md: 3 seeds x 3 instruction-set levels): BLEU 41.5-46.5 after 250
    steps and 85.4-88.4 after 500. The initialisation N(0, 0.02) instead (a change that learns slower on this task)
    gives 12.1-13.0 after 250 steps, catches up by step 500 (86.1-88.0) and ends at test BLEU 99.3, which passes the
    98 bar above: the final score alone does not guard the learning speed, the step-250 bar does (11.5 points below
    the slowest measured run, 17 above the slower initialisation). The step-500 bar catches a recipe that learns far
    worse.
    """
    import json
    import os

    with open(os.path.join(quickstart_run.output_dir, "trainer_state.json"), encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    bleu = {row["step"]: row["eval_bleu"] for row in history if "eval_bleu" in row}
    assert bleu[250] >= 30.0, bleu
    assert bleu[500] >= 80.0, bleu


def test_quickstart_validation_curve_has_no_dip(quickstart_run) -> None:
    """Validation BLEU never falls by more than one sentence's worth between two evaluations (250 steps apart).

    The former preset (peak learning rate 4.4e-3) fell by 3 to 8 points mid-run on some CPUs: beam search looped
    ("... and ninety-nine and ninety-nine ...") up to the length limit. Measured now: falls of at most 0.3.
    """
    import itertools
    import json
    import os

    with open(os.path.join(quickstart_run.output_dir, "trainer_state.json"), encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    curve = [row["eval_bleu"] for row in history if "eval_bleu" in row]
    assert len(curve) == 4 and all(b >= a - 1.0 for a, b in itertools.pairwise(curve)), curve
