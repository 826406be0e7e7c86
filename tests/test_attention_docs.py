"""docs/attention.md, the attention tutorial: generated from a real model's facts, never edited by hand.

The committed tutorial and page must be exactly what `docs/make_attention_docs.py` renders from the committed
facts (`docs/attention_facts.json`): rendering is plain string formatting of stored numbers, so this comparison is
exact on every machine. The facts themselves are numbers of a trained model and differ from machine to machine in
their last digits; so they are checked for what must hold whatever the machine (shapes, tokens, masking, rows that
sum to 1, the cached step equal to the full pass within rounding), and a slow test computes them afresh from the
quick-start trained in this session and checks them against the model.
"""

import importlib.util
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGENERATE = (
    "python docs/make_attention_docs.py --render (or, after training, python docs/make_attention_docs.py MODEL)"
)


def load_script():
    spec = importlib.util.spec_from_file_location(
        "make_attention_docs", os.path.join(ROOT, "docs", "make_attention_docs.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs = load_script()


@pytest.fixture(scope="module")
def facts():
    with open(docs.FACTS, encoding="utf-8") as handle:
        return json.load(handle)


def test_committed_tutorial_and_page_are_rendered_from_the_committed_facts(facts) -> None:
    from vanilla_transformer.attention_html import render_html

    with open(docs.OUTPUTS["markdown"], encoding="utf-8") as handle:
        assert handle.read() == docs.render_markdown(facts), f"docs/attention.md is stale: run {REGENERATE}"
    with open(docs.OUTPUTS["page"], encoding="utf-8") as handle:
        assert handle.read() == render_html(facts["page"]), f"docs/attention_explorer.html is stale: run {REGENERATE}"
    for picture in ("summary", "screenshot"):
        with open(docs.OUTPUTS[picture], "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def check_page_facts(page: dict) -> None:
    """What holds for the facts of any model: shapes, tokens, softmax rows, the mask, cached steps = full pass."""
    source, target, predicted = page["source_tokens"], page["target_tokens"], page["predicted_tokens"]
    S, T = len(source), len(target)
    assert source[-1] == "</s>" and target[0] == "<s>" and predicted[-1] == "</s>" and predicted[:-1] == target[1:]
    encoder, decoder, cross = (torch.tensor(page[k]) for k in ("encoder_self", "decoder_self", "cross"))
    dims = page["dims"]
    assert encoder.shape == (dims["encoder_layers"], dims["encoder_heads"], S, S)
    assert decoder.shape == (dims["decoder_layers"], dims["decoder_heads"], T, T)
    assert cross.shape == (dims["decoder_layers"], dims["decoder_heads"], T, S)
    for weights in (encoder, decoder, cross):  # rounded to 4 decimals: rows sum to 1 within the rounding
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=5e-4 * S + 1e-6, rtol=0)
    assert (decoder.triu(diagonal=1) == 0).all() and (decoder[..., 0, 0] == 1).all()
    assert len(page["steps"]) == T
    for t, step in enumerate(page["steps"]):
        assert step["cache_length"] == t + 1 and step["next"] == predicted[t]
        torch.testing.assert_close(torch.tensor(step["self"]), decoder[:, :, t, : t + 1], atol=2e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(step["cross"]), cross[:, :, t], atol=2e-4, rtol=0)
    assert [j for _, j in page["alignment"]] == list(
        range(len([p for p in predicted if p not in page["special_tokens"]]))
    )


def test_committed_facts_are_a_coherent_model_output(facts) -> None:
    page = facts["page"]
    check_page_facts(page)
    assert (len(page["source_tokens"]), len(page["target_tokens"])) == docs.WANTED_SHAPE  # the [5 x 4] example
    from num2words import num2words

    number = facts["number"]  # the example: a number, correctly translated
    assert (page["source"], page["translation"]) == (num2words(number, lang="de"), num2words(number, lang="en"))
    for quality in facts["alignment_quality"]:
        assert 0 < quality["checked"] and 0 <= quality["chance"] <= 1 and 0 <= quality["accuracy"] <= 1


def test_dictionary_check_of_alignments() -> None:
    assert docs.segment("siebenhundertvierundvierzig") == [
        ("sieben", 0, 6),
        ("hundert", 6, 13),
        ("vier", 13, 17),
        ("und", 17, 20),
        ("vierzig", 20, 27),
    ]
    result = {
        "source_tokens": ["\u2581siebenhundert", "vier", "undvierzig"],
        "translation_tokens": ["\u2581seven", "\u2581hundred", "\u2581and", "\u2581forty-four"],
        "alignment": [(0, 0), (1, 1), (0, 2), (2, 3)],
    }
    # seven -> siebenhundert: right; hundred -> vier: wrong; "and" is not checked; forty-four -> undvierzig: right
    checked, correct, chance = docs.check_alignment("siebenhundertvierundvierzig", result)
    assert (checked, correct) == (3, 2) and chance == pytest.approx(1 / 3 + 1 / 3 + 2 / 3)
    assert docs.check_alignment("zwölf", {**result, "source_tokens": ["\u2581elf"]}) == (0, 0, 0.0)  # wrong pieces


@pytest.mark.slow
@pytest.mark.numerics
def test_facts_of_a_freshly_trained_quickstart(quickstart_run) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from vanilla_transformer.attention import attention_maps

    facts = docs.compute_facts(quickstart_run.output_dir, test_size=100)
    page = facts["page"]
    check_page_facts(page)
    model = AutoModelForSeq2SeqLM.from_pretrained(quickstart_run.output_dir, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(quickstart_run.output_dir)
    maps = attention_maps(model, tokenizer, page["source"])  # what the model itself says for the example
    assert page["target_tokens"] == maps.target_tokens and page["source_tokens"] == maps.source_tokens
    torch.testing.assert_close(torch.tensor(page["cross"]), maps.cross, atol=1e-4, rtol=0)
    text = docs.render_markdown(facts)
    S, T = len(page["source_tokens"]), len(page["target_tokens"])
    assert f"## 3. Encoder-decoder cross-attention: [{T} × {S}]" in text and f"[{T} × {T}]" in text
    last = facts["alignment_quality"][-1]
    assert last["checked"] > 100 and last["accuracy"] > last["chance"]  # better than pointing at random
