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
    # Measured (README, "The offline quick-start"): all 66 exact on an AMD EPYC machine, 65 on an Intel Xeon machine
    # ("zwei" -> "forty-two"): the float rounding of the CPU changes the trajectory, and the short inputs are where
    # it shows, so the bar is 64 of 66, not all of them (other seeds give 50 and 57: the README says so).
    assert len(wrong) <= 2, wrong


def test_quickstart_learns_at_its_measured_speed(quickstart_run):
    """The quality guard: validation BLEU early in the run, where a recipe or model change that learns worse shows.

    Measured with this preset: 61.1 at step 500 and 99.2 at step 1,000 on an Intel Xeon machine, 75.2 and 93.4 on an
    AMD EPYC machine (seeds 1 and 2 there: 72.3 / 99.1 and 77.2 / 99.2). With the initialisation N(0, 0.02) instead
    (a change that learns slower on this task) the same run gave 16.5 and 80.9, and its final test BLEU (98.2) would
    still pass the 98 bar above: the final score alone does not guard the learning speed.
    """
    import json
    import os

    with open(os.path.join(quickstart_run.output_dir, "trainer_state.json"), encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    bleu = {row["step"]: row["eval_bleu"] for row in history if "eval_bleu" in row}
    assert bleu[500] >= 45.0, bleu
    assert bleu[1000] >= 88.0, bleu
