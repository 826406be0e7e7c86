"""Inference precisions: bf16, fp16 and int8 translate (nearly) like fp32, through the library, the pipeline and the
translate command."""

import copy
import os

import pytest
import torch
from reversal_task import WORDS, greedy_margin, logit_error, reversal_model
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from vanilla_transformer.pipeline_vanilla_transformer import TASK, VanillaTranslationPipeline
from vanilla_transformer.precision import PRECISIONS, model_precision, to_inference
from vanilla_transformer.translate import main as translate_main

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

# 64 word sequences of 2-5 words (some repeated words), each of which the reversal model translates with a margin
# (its top logit leads by more than 3 at every step, tests/reversal_task.py): so every precision, on every CPU,
# must translate all of them as float32 does.
SENTENCES = [" ".join(WORDS[(7 * i + 5 * j + i * j) % 12] for j in range(2 + i % 4)) for i in range(64)]


LOGIT_ERROR_BOUND = {"fp16": 0.06, "bf16": 0.25, "int8": 1.0}


def translations(model: torch.nn.Module, tokenizer, **generate_kwargs: object) -> list[str]:
    inputs = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=8, **generate_kwargs)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "int8"])
def test_reduced_precisions_translate_like_fp32(precision: str) -> None:
    model, tokenizer = reversal_model()
    reference = {beams: translations(model, tokenizer, num_beams=beams) for beams in (1, 4)}
    assert reference[1] == [" ".join(s.split()[::-1]) for s in SENTENCES]
    margin = greedy_margin(model, tokenizer, SENTENCES)
    assert margin > 3.0  # measured 5.9
    converted = to_inference(copy.deepcopy(model), precision)
    assert model_precision(converted) == precision and model_precision(model) == "fp32"
    # How far the precision moves a logit: measured fp16 0.024, bf16 0.10, int8 0.42, the same with the kernels
    # capped at AVX2 and at the SSE level; the bounds allow about 2.5 times that (int8 layers that lost their biases
    # move a logit by 1.9 here), and all stay below half the margin, so no greedy step can change its token.
    error = logit_error(converted, model, tokenizer, SENTENCES)
    assert 0.0 < error <= LOGIT_ERROR_BOUND[precision] < margin / 2, error
    for beams, expected in reference.items():
        assert translations(converted, tokenizer, num_beams=beams) == expected, (precision, beams)


def test_what_each_precision_does_to_the_model() -> None:
    model, _ = reversal_model()
    bf16 = to_inference(copy.deepcopy(model).train(), "bf16")
    assert not bf16.training and {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    int8 = copy.deepcopy(model)
    assert to_inference(int8, "int8") is int8  # in place, like `.to()`
    linears = [m for m in int8.modules() if type(m) is torch.nn.Linear]
    quantized = [m for m in int8.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linears and len(quantized) == len([m for m in model.modules() if type(m) is torch.nn.Linear])
    assert quantized[0].weight().qscheme() == torch.per_channel_affine  # one scale per output channel
    assert int8.model.shared.weight.dtype == torch.float32  # embeddings stay float32
    back = to_inference(bf16, "fp32")
    assert {p.dtype for p in back.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="already int8"):
        to_inference(int8, "bf16")
    with pytest.raises(ValueError, match="choose one of fp32, bf16, fp16, int8"):
        to_inference(model, "int4")
    assert PRECISIONS == ("fp32", "bf16", "fp16", "int8")


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> str:
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal_pipeline")
    # a copy: saving the pipeline writes `custom_pipelines` into the config of the model it holds
    VanillaTranslationPipeline(model=copy.deepcopy(model), tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def test_pipeline_precision_option_locally_and_as_remote_code(pipeline_dir: str) -> None:
    assert "precision.py" in os.listdir(pipeline_dir)  # the shipped pipeline's sibling is saved beside it
    model, tokenizer = reversal_model()
    expected = VanillaTranslationPipeline(model=model, tokenizer=tokenizer)(SENTENCES[:8], max_new_tokens=8)
    local = VanillaTranslationPipeline(model=copy.deepcopy(model), tokenizer=tokenizer, precision="int8")
    assert model_precision(local.model) == "int8"
    registered = dict(PIPELINE_REGISTRY.supported_tasks[TASK])
    try:
        remote = pipeline(TASK, model=pipeline_dir, trust_remote_code=True, precision="bf16")
    finally:  # loading remote code registers the folder's pipeline class for the task: put ours back
        PIPELINE_REGISTRY.supported_tasks[TASK] = registered
    assert type(remote).__module__.startswith("transformers_modules.") and remote.model.dtype == torch.bfloat16
    for pipe in (local, remote):
        assert pipe(SENTENCES[:8], max_new_tokens=8) == expected


def test_translate_command_precision(pipeline_dir: str, capsys) -> None:
    translate_main(["--model", pipeline_dir, "--num-beams", "1", "--max-new-tokens", "8", *SENTENCES[:8]])
    expected = capsys.readouterr().out.splitlines()
    for precision in ("bf16", "int8"):
        translate_main(
            [
                "--model",
                pipeline_dir,
                "--num-beams",
                "1",
                "--max-new-tokens",
                "8",
                "--precision",
                precision,
                *SENTENCES[:8],
            ]
        )
        assert capsys.readouterr().out.splitlines() == expected
    with pytest.raises(SystemExit) as exit_info:
        translate_main(["--model", pipeline_dir, "--precision", "int4", "a b"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_train_py_final_evaluation_in_a_reduced_precision(tmp_path, capsys, monkeypatch) -> None:
    import sys

    from train_helpers import ROOT, write_config

    sys.path.insert(0, ROOT)
    import train
    from vanilla_transformer import training
    from vanilla_transformer.config_file import ConfigError
    from vanilla_transformer.translate import load

    config = write_config(str(tmp_path / "tiny.yaml"), str(tmp_path / "run"), generation={"num_samples": 16})
    with pytest.raises(ConfigError, match="generation.precision"):
        train.main([config, "generation.precision=int4"])
    converted = []

    def spy(model: torch.nn.Module, precision: str) -> torch.nn.Module:
        converted.append((model, precision))
        return to_inference(model, precision)

    monkeypatch.setattr(training, "to_inference", spy)
    results = train.main([config, "generation.precision=int8"])
    capsys.readouterr()
    ((copy_, precision),) = converted
    assert precision == "int8" and model_precision(copy_) == "int8"
    saved = load(str(tmp_path / "run"))
    assert model_precision(saved.model) == "fp32"  # the saved model is the trained one, not the int8 copy
    sources = [source for source, _, _ in results["samples"]]
    int8_translations = [translation for _, _, translation in results["samples"]]
    # what the saved model translates once converted to int8, on the evaluation's one batch of 16: the tiny model
    # has near-ties, so int8 and float32 may differ (by CPU), but the same int8 model on the same batch may not
    int8_model = to_inference(copy.deepcopy(saved.model), "int8")
    with torch.inference_mode():
        output = int8_model.generate(**saved.tokenizer(sources, return_tensors="pt", padding=True))
    expected = [text.strip() for text in saved.tokenizer.batch_decode(output, skip_special_tokens=True)]
    assert len(sources) == 16 and int8_translations == expected
