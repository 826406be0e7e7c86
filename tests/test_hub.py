"""The model card template and its filling (vanilla_transformer.hub)."""

import os

import pytest
import yaml
from conftest import tiny_config
from train_helpers import ROOT

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.config_file import parse_config
from vanilla_transformer.hub import card_values, fill_model_card

TEMPLATE = open(os.path.join(ROOT, "model_card.md"), encoding="utf-8").read()


def test_card_is_filled_with_the_run():
    run = parse_config([os.path.join(ROOT, "configs", "small.yaml")], "").to_dict()
    model = VanillaTransformerForConditionalGeneration(tiny_config())
    results = {"split": "test", "n": 1000.0, "bleu": 31.25, "chrf": 55.5, "exact_match": 1.0}
    results["samples"] = [("Ein Hund.", "A dog.", "A dog.")]
    training = {"steps": 1234, "minutes": 17.5, "processes": 1, "device": "cpu"}
    card = fill_model_card(TEMPLATE, card_values(run, model, results, training))
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["language"] == ["de", "en"] and front["library_name"] == "transformers"
    assert "| test | 1000 | 31.25 | 55.50 | 1.0 |" in card
    assert "1234 optimizer steps in 17.5 minutes" in card and "`Ein Hund.` -> `A dog.`" in card
    assert "train.de" not in card and "train_file `train`" in card
    assert "beam search with 4 beams, length penalty 0.6" in card and "batches of 2500 tokens" in card
    assert yaml.safe_load(card.split("```yaml\n")[1].split("```")[0]) == run  # the whole config, as run
    assert "batch = tokenizer(['Ein Hund.'], return_tensors=\"pt\")" in card
    assert "{{" not in card


def test_card_with_unfilled_placeholder_is_refused():
    with pytest.raises(KeyError, match=r"placeholders without values: \['scores'\]"):
        fill_model_card("BLEU {{ scores }} for {{ name }}", {"name": "x"})


def test_template_notes_stay_out_of_the_card():
    """The template's `<!-- ... -->` notes are for its editors; a published card has none."""
    run = parse_config([os.path.join(ROOT, "configs", "quickstart.yaml")], "").to_dict()
    model = VanillaTransformerForConditionalGeneration(tiny_config())
    training = {"steps": 1, "minutes": 0.1, "processes": 1, "device": "cpu"}
    assert "<!--" in TEMPLATE
    card = fill_model_card(TEMPLATE, card_values(run, model, {}, training))
    assert "<!--" not in card and "-->" not in card and "double\nbraces" not in card
    assert fill_model_card("a\n<!-- note\n{{ x }} -->\n\nb {{ x }}", {"x": "1"}) == "a\nb 1"
