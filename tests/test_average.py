"""Checkpoint averaging (paper Section 6.1): the command writes a loadable model whose weights are the mean."""

import re

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.average import average_checkpoints, average_state_dicts, last_checkpoints, main


def save_checkpoint(folder, seed):
    """A random model with every parameter perturbed (fresh inits share all biases and LayerNorms), saved."""
    torch.manual_seed(seed)
    model = VanillaTransformerForConditionalGeneration(tiny_config())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    model.save_pretrained(str(folder))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_last_checkpoints_sorted_by_step(tmp_path):
    for step in (9, 10, 100, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.rsplit("-", 1)[1] for p in last_checkpoints(str(tmp_path), 3)] == ["10", "20", "100"]
    with pytest.raises(ValueError, match="has 4 checkpoint"):
        last_checkpoints(str(tmp_path), 5)


def test_last_means_the_last_consecutive_saves_not_the_kept_best_one(tmp_path):
    """Trainer keeps the best checkpoint inside save_total_limit: {2000 (best), 5000, 6000, 7000, 8000} with saves
    every 1000 steps are not "the last 5"; the last 4 are, and so is a final save that comes sooner."""
    for step in (2000, 5000, 6000, 7000, 8000, 8500):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-8500" / "trainer_state.json").write_text('{"save_steps": 1000, "global_step": 8500}')
    with pytest.raises(ValueError, match=r"not the last 6 saves, one every 1000 steps.*save_total_limit.*7"):
        last_checkpoints(str(tmp_path), 6)
    chosen = last_checkpoints(str(tmp_path), 5)
    assert [int(p.rsplit("-", 1)[1]) for p in chosen] == [5000, 6000, 7000, 8000, 8500]


def test_identical_checkpoints_average_to_the_same_weights(tmp_path):
    weights = save_checkpoint(tmp_path / "checkpoint-1", seed=0)
    save_checkpoint(tmp_path / "checkpoint-2", seed=0)
    save_checkpoint(tmp_path / "checkpoint-3", seed=0)
    average_checkpoints(last_checkpoints(str(tmp_path), 3), str(tmp_path / "avg"))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "avg")).state_dict()
    for key, value in weights.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_two_checkpoints_average_to_their_mean_and_stay_tied(tmp_path):
    a = save_checkpoint(tmp_path / "checkpoint-5", seed=1)
    b = save_checkpoint(tmp_path / "checkpoint-10", seed=2)
    main([str(tmp_path), "--last", "2", "--output", str(tmp_path / "avg")])
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "avg"))
    loaded = model.state_dict()
    assert loaded.keys() == a.keys()
    for key in a:
        assert not torch.equal(a[key], b[key]), key  # every tensor, 1-D ones included, differs between the two
        torch.testing.assert_close(loaded[key], (a[key] + b[key]) / 2)
    assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()
    torch.testing.assert_close(model.model.shared.weight, (a["model.shared.weight"] + b["model.shared.weight"]) / 2)
    ids = torch.tensor([[5, 6, 7, 2]])
    with torch.no_grad():
        logits = model(input_ids=ids, decoder_input_ids=ids).logits
    assert torch.isfinite(logits).all()


def test_every_tensor_is_the_mean_of_three_checkpoints(tmp_path):
    saved = [save_checkpoint(tmp_path / f"checkpoint-{step}", seed=step) for step in (10, 20, 30)]
    averaged = average_state_dicts(last_checkpoints(str(tmp_path), 3))
    on_disk = load_file(tmp_path / "checkpoint-10" / "model.safetensors")
    assert averaged.keys() == on_disk.keys()
    for key in averaged:
        mean = sum(state[key].double() for state in saved) / 3
        assert averaged[key].dtype == on_disk[key].dtype
        torch.testing.assert_close(averaged[key].double(), mean, rtol=0, atol=1e-6, msg=key)


def test_mismatched_checkpoints_are_refused(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-1", seed=0)
    torch.manual_seed(0)
    VanillaTransformerForConditionalGeneration(tiny_config(d_model=16)).save_pretrained(str(tmp_path / "checkpoint-2"))
    with pytest.raises(ValueError, match=r"` is \(16,\) in .*checkpoint-2 but \(32,\)"):
        average_checkpoints(last_checkpoints(str(tmp_path), 2), str(tmp_path / "avg"))


def test_averaged_model_carries_the_translation_pipeline(tmp_path):
    import json

    from reversal_task import reversal_model
    from transformers import pipeline

    from vanilla_transformer.pipeline_vanilla_transformer import TASK

    model, tokenizer = reversal_model()
    for step in (1, 2):  # as Trainer writes checkpoints: model + tokenizer, no pipeline
        model.save_pretrained(str(tmp_path / f"checkpoint-{step}"))
        tokenizer.save_pretrained(str(tmp_path / f"checkpoint-{step}"))
    main([str(tmp_path), "--last", "2", "--output", str(tmp_path / "avg")])
    assert (tmp_path / "avg" / "pipeline_vanilla_transformer.py").is_file()
    config = json.loads((tmp_path / "avg" / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_vanilla_transformer.VanillaTranslationPipeline"
    pipe = pipeline(TASK, model=str(tmp_path / "avg"), trust_remote_code=True)  # the pipeline code of the folder
    translated = pipe(["a b c", "d e f g"], max_new_tokens=8)
    assert [result["translation_text"] for result in translated] == ["c b a", "g f e d"]  # same weights averaged


# ---------------------------------------------------------------------------------------------------------
# Errors name what is wrong; the output takes config, generation config and tokenizer from the newest save.
# ---------------------------------------------------------------------------------------------------------
def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^Run directory not found: .*nowhere$"):
        last_checkpoints(str(tmp_path / "nowhere"), 2)
    with pytest.raises(ValueError, match=r"^No checkpoints to average\.$"):
        average_state_dicts([])
    (tmp_path / "checkpoint-1").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^No model\.safetensors in .*checkpoint-1$"):
        average_state_dicts([str(tmp_path / "checkpoint-1")])


def test_checkpoints_with_other_tensors_are_refused(tmp_path):
    save_checkpoint(tmp_path / "tied", seed=0)
    torch.manual_seed(0)
    VanillaTransformerForConditionalGeneration(tiny_config(tie_word_embeddings=False)).save_pretrained(
        str(tmp_path / "untied")
    )  # its own output projection: one tensor more
    tied, untied = str(tmp_path / "tied"), str(tmp_path / "untied")
    with pytest.raises(ValueError, match=rf"^{re.escape(untied)} has different tensors from {re.escape(tied)}: can't"):
        average_state_dicts([tied, untied])


def word_level_tokenizer(words: list[str]):
    """A small fast tokenizer over `words` (plus <pad>, <s>, </s>, <unk>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_the_output_takes_settings_and_tokenizer_files_from_the_newest_checkpoint(tmp_path):
    from transformers import GenerationConfig

    for step, beams in ((10, 2), (20, 3), (30, 4)):
        save_checkpoint(tmp_path / f"checkpoint-{step}", seed=step)
        GenerationConfig(num_beams=beams, max_new_tokens=7).save_pretrained(tmp_path / f"checkpoint-{step}")
    for step, words in ((20, ["older"]), (30, ["newest", "words"])):
        word_level_tokenizer(words).save_pretrained(tmp_path / f"checkpoint-{step}")
    average_checkpoints(last_checkpoints(str(tmp_path), 3), str(tmp_path / "avg"))
    assert GenerationConfig.from_pretrained(tmp_path / "avg").num_beams == 4
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the newest checkpoint's files, byte for byte
        assert (tmp_path / "avg" / name).read_bytes() == (tmp_path / "checkpoint-30" / name).read_bytes(), name


@pytest.mark.parametrize(("save_steps", "refused"), [(1, True), (0, False)])
def test_save_steps_of_one_and_zero(tmp_path, save_steps, refused):
    """Saves every step: steps 1, 3, 4 are not the last three saves. `save_steps` 0 (saving by epoch) says nothing
    about which steps were saved, so the newest folders are taken as they are."""
    for step in (1, 3, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text(f'{{"save_steps": {save_steps}}}')
    if refused:
        with pytest.raises(ValueError, match=r"steps \[1, 3, 4\]\) are not the last 3 saves, one every 1 steps"):
            last_checkpoints(str(tmp_path), 3)
    else:
        assert [p.rsplit("-", 1)[1] for p in last_checkpoints(str(tmp_path), 3)] == ["1", "3", "4"]


def test_command_line(tmp_path, capsys):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / f"checkpoint-{step}", seed=step)
    folders = [str(tmp_path / f"checkpoint-{step}") for step in (1, 3)]
    main([*folders, "--output", str(tmp_path / "avg")])  # the folders given, not the last ones of the run
    assert capsys.readouterr().out == f"Averaged 2 checkpoints (checkpoint-1, checkpoint-3) -> {tmp_path / 'avg'}\n"
    averaged = load_file(tmp_path / "avg" / "model.safetensors")
    first, third = (load_file(tmp_path / f"checkpoint-{step}" / "model.safetensors") for step in (1, 3))
    key = "model.encoder.layers.0.ffn.fc1.bias"
    torch.testing.assert_close(averaged[key], (first[key] + third[key]) / 2)
    for argv, message in (
        (
            [str(tmp_path), str(tmp_path), "--last", "2", "--output", "x"],
            "error: --last takes exactly one run directory",
        ),
        ([str(tmp_path), "--last", "2"], "error: the following arguments are required: --output"),
    ):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:  # a user error past the parser: one line, exit status 2, no traceback
        main([str(tmp_path / "no-such-run"), "--last", "2", "--output", str(tmp_path / "avg")])
    assert done.value.code == 2 and "error: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert (
        "python -m vanilla_transformer.average runs/small --last 5 --output runs/small/averaged" in text
    )  # as written
    for line in (
        "a run directory (with --last) or checkpoint folders",
        "average the last N checkpoint-* folders of the run directory",
        "folder to write the averaged model to",
    ):
        assert line in " ".join(text.split()), line
