"""The translate command and the custom "vanilla-translation" pipeline, local and as remote code."""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from reversal_task import reversal_model
from transformers import pipeline

from vanilla_transformer.pipeline_vanilla_transformer import TASK, VanillaTranslationPipeline
from vanilla_transformer.translate import main

SENTENCES = ["a b c", "d e f g", "h i", "j k l a b", "b a", "c c d", "e f g h", "l k j"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The trained reversal model saved with its tokenizer (as train.py saves a model)."""
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> str:
    """The same, saved through the pipeline: `custom_pipelines` in config.json and the pipeline file."""
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal_pipeline")
    VanillaTranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def reference(sentence: str, **generate_kwargs: object) -> str:
    """One sentence, no batching, straight through `generate()`."""
    model, tokenizer = reversal_model()
    output = model.generate(**tokenizer(sentence, return_tensors="pt"), **generate_kwargs)
    return tokenizer.decode(output[0], skip_special_tokens=True)


def test_pipeline_translates_in_batches_like_single_generate_calls(model_dir: str) -> None:
    pipe = pipeline(TASK, model=model_dir)
    assert isinstance(pipe, VanillaTranslationPipeline)
    results = pipe(SENTENCES, batch_size=3, max_new_tokens=8)  # batches of different lengths -> padding
    texts = [result["translation_text"] for result in results]
    assert texts == [reference(s, max_new_tokens=8) for s in SENTENCES]
    reversed_ok = sum(text == " ".join(s.split()[::-1]) for text, s in zip(texts, SENTENCES, strict=True))
    assert reversed_ok >= 6, texts  # it really translates (the model learnt to reverse)
    assert pipe("a b c", max_new_tokens=8) == [{"translation_text": texts[0]}]
    several = pipe(SENTENCES[:2], num_beams=3, num_return_sequences=2, max_new_tokens=8)
    assert [len(result) for result in several] == [2, 2]
    assert several[0][0]["translation_text"] == reference("a b c", num_beams=3, max_new_tokens=8)
    with pytest.raises(TypeError, match="string"):
        pipe([1, 2])


def test_command_reads_arguments_file_and_stdin(model_dir: str, tmp_path, capsys, monkeypatch) -> None:
    expected = [reference(s, num_beams=4, max_new_tokens=12) for s in SENTENCES[:3]]
    main(["--model", model_dir, "--max-new-tokens", "12", "--batch-size", "2", *SENTENCES[:3]])
    assert capsys.readouterr().out.splitlines() == expected

    source = tmp_path / "input.txt"
    source.write_text("\n".join([SENTENCES[0], "", SENTENCES[1], SENTENCES[2]]) + "\n")
    target = tmp_path / "output.txt"
    main(["--model", model_dir, "--max-new-tokens", "12", "--file", str(source), "--output", str(target)])
    assert target.read_text().splitlines() == [expected[0], "", expected[1], expected[2]]
    assert "4/4" in capsys.readouterr().err  # progress bar for files
    # a line separator inside a sentence (U+2028) does not split it: one translation per input line
    source.write_text(f"{SENTENCES[0]}\u2028{SENTENCES[1]}\n{SENTENCES[2]}\n", encoding="utf-8")
    main(["--model", model_dir, "--max-new-tokens", "12", "--file", str(source), "--output", str(target)])
    assert len(target.read_text().split("\n")) == 3 and "2/2" in capsys.readouterr().err  # 2 lines + final newline

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(SENTENCES[:3]) + "\n"))
    main(["--model", model_dir, "--max-new-tokens", "12"])
    assert capsys.readouterr().out.splitlines() == expected


def test_command_options_reach_generate(model_dir: str, capsys) -> None:
    main(["--model", model_dir, "--num-beams", "1", "--max-new-tokens", "12", SENTENCES[3]])
    assert capsys.readouterr().out.strip() == reference(SENTENCES[3], num_beams=1, max_new_tokens=12)
    main(["--model", model_dir, "--num-beams", "3", "--length-penalty", "2.0", "--max-new-tokens", "12", "a b c"])
    assert capsys.readouterr().out.strip() == reference("a b c", num_beams=3, length_penalty=2.0, max_new_tokens=12)
    main(["--model", model_dir, "--max-new-tokens", "2", SENTENCES[3]])
    assert len(capsys.readouterr().out.split()) == 2


def test_command_rejects_bad_options(model_dir: str, tmp_path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        main(["--model", model_dir, "--batch-size", "0", "a b"])
    with pytest.raises(SystemExit):
        main(["--model", model_dir, "--file", str(tmp_path / "x.txt"), "a b"])


def test_saved_pipeline_loads_as_remote_code_without_the_package(pipeline_dir: str, tmp_path) -> None:
    model_dir = pipeline_dir
    assert "pipeline_vanilla_transformer.py" in os.listdir(model_dir)
    config = json.loads(open(os.path.join(model_dir, "config.json")).read())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_vanilla_transformer.VanillaTranslationPipeline"
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "vanilla_transformer":
                    raise ImportError("vanilla_transformer is blocked in this test")

        sys.meta_path.insert(0, Block())
        from transformers import pipeline

        pipe = pipeline({TASK!r}, model={model_dir!r}, trust_remote_code=True)
        results = pipe({SENTENCES!r}, batch_size=4, max_new_tokens=8)
        assert "vanilla_transformer" not in sys.modules
        print(json.dumps([type(pipe).__module__, [r["translation_text"] for r in results]]))
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    module, texts = json.loads(done.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules.")
    with torch.no_grad():
        assert texts == [reference(s, max_new_tokens=8) for s in SENTENCES]
