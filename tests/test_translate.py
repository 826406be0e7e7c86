"""The translate command and the custom "vanilla-translation" pipeline, local and as remote code."""

import copy
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from unittest import mock

import pytest
from reversal_task import WORDS, reversal_model
from transformers import pipeline

from vanilla_transformer.pipeline_vanilla_transformer import TASK, VanillaTranslationPipeline
from vanilla_transformer.saving import save_with_pipeline
from vanilla_transformer.translate import SourceTooLongError, load, main, translate

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

SENTENCES = ["a b c", "d e f g", "h i", "j k l a b", "b a", "c c d", "e f g h", "l k j"]
LONG = " ".join(WORDS * 6)  # 72 words + </s> = 73 tokens: more than the model's 64 positions


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The trained reversal model saved with its tokenizer (as train.py saves a model)."""
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def saved_settings_dir(tmp_path_factory) -> str:
    """The model saved with generation settings as train.py writes them: beams, length penalty, `max_length`."""
    model, tokenizer = reversal_model()
    model = copy.deepcopy(model)
    gen = model.generation_config
    gen.num_beams, gen.length_penalty, gen.early_stopping = 3, 2.0, True
    gen.max_length = 4  # the decoder start token + 3 new tokens
    folder = tmp_path_factory.mktemp("reversal_settings")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def transformers_log():
    """What transformers logs (warnings and up) during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> str:
    """The same, saved with the pipeline: `custom_pipelines` in config.json and the pipeline file."""
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal_pipeline")
    save_with_pipeline(model, tokenizer, folder)
    assert not hasattr(model.config, "custom_pipelines")  # the model in memory is left as it was
    return str(folder)


def reference(sentence: str, **generate_kwargs: object) -> str:
    """One sentence, no batching, straight through `generate()`."""
    model, tokenizer = reversal_model()
    output = model.generate(**tokenizer(sentence, return_tensors="pt"), **generate_kwargs)
    return tokenizer.decode(output[0], skip_special_tokens=True)


def test_pipeline_translates_in_batches_like_single_generate_calls(model_dir: str) -> None:
    pipe = pipeline(TASK, model=model_dir)
    # by name: once a test has loaded the pipeline as remote code, the registry holds that copy of the class
    assert type(pipe).__name__ == VanillaTranslationPipeline.__name__
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
    expected = [reference(s, max_new_tokens=12) for s in SENTENCES[:3]]  # no saved settings: greedy
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


def test_command_options_are_the_arguments_generate_receives(model_dir: str, capsys) -> None:
    """The translations of this small model need not change with every setting (a length penalty changes nothing
    when all beams end at the same step), so check what reaches `generate()` itself."""
    model_class = type(reversal_model()[0])
    original = model_class.generate
    with mock.patch.object(model_class, "generate", autospec=True, side_effect=original) as generate:
        main(["--model", model_dir, "--num-beams", "3", "--length-penalty", "2.5", "--max-new-tokens", "7", "a b c"])
        main(["--model", model_dir, "--num-beams", "2", "--length-penalty", "0.25", "--max-new-tokens", "5", "a b"])
    assert len(capsys.readouterr().out.splitlines()) == 2
    first, second = (call.kwargs for call in generate.call_args_list)
    assert (first["num_beams"], first["length_penalty"], first["max_new_tokens"]) == (3, 2.5, 7)
    assert (second["num_beams"], second["length_penalty"], second["max_new_tokens"]) == (2, 0.25, 5)


def test_command_decodes_with_the_models_saved_settings(saved_settings_dir: str, capsys, transformers_log) -> None:
    from transformers.utils import logging as hf_logging

    # transformers warns once per process: forget earlier tests' warnings, so both checks below can fail
    hf_logging.get_logger("transformers").warning_once.cache_clear()
    hf_logging.set_verbosity_warning()
    saved = dict(num_beams=3, length_penalty=2.0, early_stopping=True)
    main(["--model", saved_settings_dir, SENTENCES[3]])  # "j k l a b": 5 words, the saved length allows 3
    translation = capsys.readouterr().out.strip()
    assert translation == reference(SENTENCES[3], **saved, max_new_tokens=3) and len(translation.split()) == 3
    main(["--model", saved_settings_dir, "--max-new-tokens", "6", SENTENCES[3]])
    assert capsys.readouterr().out.strip() == reference(SENTENCES[3], **saved, max_new_tokens=6) == "b a l k j"
    overridden = ["--num-beams", "2", "--length-penalty", "0.5", "--max-new-tokens", "2"]
    main(["--model", saved_settings_dir, *overridden, SENTENCES[3], SENTENCES[0]])
    expected = [
        reference(s, num_beams=2, length_penalty=0.5, early_stopping=True, max_new_tokens=2) for s in SENTENCES[3::-3]
    ]
    assert capsys.readouterr().out.splitlines() == expected
    main(["--model", saved_settings_dir, "--num-beams", "1", SENTENCES[3]])  # greedy: the saved length still holds
    assert capsys.readouterr().out.strip() == reference(SENTENCES[3], max_new_tokens=3)
    assert transformers_log.getvalue() == ""  # no "Both `max_new_tokens` and `max_length`" warning
    # what the warning looks like when both reach generate(): the log above would have caught it
    model, tokenizer = reversal_model()
    model = copy.deepcopy(model)
    model.generation_config.max_length = 4
    model.generate(**tokenizer("a b", return_tensors="pt"), max_new_tokens=2)
    assert "max_length" in transformers_log.getvalue()


def test_help_names_the_effective_defaults(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("default: the model's generation config") == 3  # --num-beams, --length-penalty, --max-new-tokens
    assert "sentences per batch (default: 32)" in text and "default: refuse them" in text


def test_command_refuses_too_long_sentences_with_one_clear_line(model_dir: str, tmp_path, capsys, monkeypatch) -> None:
    source, target = tmp_path / "input.txt", tmp_path / "output.txt"
    source.write_text(f"{SENTENCES[0]}\n\n{LONG}\n{SENTENCES[1]}\n")
    for args in (["--file", str(source), "--output", str(target)], [SENTENCES[0], LONG]):
        with pytest.raises(SystemExit) as done:
            main(["--model", model_dir, *args])
        assert done.value.code == 2
        lines = [
            line for line in capsys.readouterr().err.splitlines() if line.strip() and "Loading weights" not in line
        ]
        assert len(lines) == 1, lines  # one line (besides transformers' bar while loading the weights)
        error, line = lines[0], 3 if "--file" in args else 2
        assert error.startswith("python -m vanilla_transformer.translate: error: ")
        assert f"line {line} has 73 tokens, more than the model's limit of 64 (max_position_embeddings)" in error
        assert error.endswith("shorten or split it, or pass --truncate to keep only its first 64 tokens.")
    assert not target.exists()  # refused before anything was translated or written

    # read as a stream (stdin), lines are checked a batch at a time: earlier batches are already printed
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{SENTENCES[0]}\n{LONG}\n"))
    with pytest.raises(SystemExit) as done:
        main(["--model", model_dir, "--batch-size", "1", "--max-new-tokens", "12"])
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [reference(SENTENCES[0], max_new_tokens=12)]
    assert "line 2 has 73 tokens" in captured.err

    # in Python: a list of sentences is refused when `translate` is called, before anything is translated
    with pytest.raises(SourceTooLongError, match=r"line 2 has 73 tokens.*pass `truncate=True` to keep only") as error:
        translate(load(model_dir), [SENTENCES[0], LONG])
    assert (error.value.line, error.value.length, error.value.limit) == (2, 73, 64)


def test_pipeline_refuses_too_long_sentences_unless_asked_to_cut(model_dir: str, caplog) -> None:
    """The pipeline never cuts silently: an error naming the limit, or with `truncation=True` a warning."""
    pipe = load(model_dir)
    with pytest.raises(ValueError, match=r"has 73 tokens, more than the model's limit of 64.*truncation=True"):
        pipe([SENTENCES[0], LONG], max_new_tokens=8)
    with caplog.at_level(logging.WARNING):
        cut = pipe(LONG, truncation=True, max_new_tokens=8)
    assert any("Cut a sentence of 73 tokens to the model's 64" in r.getMessage() for r in caplog.records)
    model, tokenizer = reversal_model()
    inputs = tokenizer(LONG, return_tensors="pt", truncation=True, max_length=64)
    expected = tokenizer.decode(model.generate(**inputs, max_new_tokens=8)[0], skip_special_tokens=True)
    assert cut[0]["translation_text"] == expected


def test_truncate_cuts_long_sentences_and_names_their_lines(model_dir: str, tmp_path, caplog) -> None:
    source, target = tmp_path / "input.txt", tmp_path / "output.txt"
    source.write_text(f"{SENTENCES[0]}\n{LONG}\n{SENTENCES[1]}\n{LONG}\n")
    with caplog.at_level(logging.WARNING, logger="vanilla_transformer.translate"):
        main(
            [
                "--model",
                model_dir,
                "--truncate",
                "--max-new-tokens",
                "8",
                "--file",
                str(source),
                "--output",
                str(target),
            ]
        )
    warnings = [record.getMessage() for record in caplog.records if record.name == "vanilla_transformer.translate"]
    assert len(warnings) == 2 and all("cut to the model's limit of 64" in warning for warning in warnings)
    assert warnings[0].startswith("line 2 has 73 tokens") and warnings[1].startswith("line 4 has 73 tokens")
    model, tokenizer = reversal_model()
    cut = tokenizer(LONG, return_tensors="pt", truncation=True, max_length=64)  # its first 64 tokens
    expected = tokenizer.decode(model.generate(**cut, max_new_tokens=8)[0], skip_special_tokens=True)
    assert target.read_text().splitlines() == [
        reference(SENTENCES[0], max_new_tokens=8),
        expected,
        reference(SENTENCES[1], max_new_tokens=8),
        expected,
    ]


def test_command_rejects_bad_options(model_dir: str, tmp_path, capsys) -> None:
    for option, value in (("--batch-size", "0"), ("--num-beams", "0"), ("--max-new-tokens", "x")):
        with pytest.raises(SystemExit) as done:
            main(["--model", model_dir, option, value, "a b"])
        assert done.value.code == 2
        assert f"argument {option}: must be a whole number >= 1, got '{value}'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["--model", model_dir, "--max-new-tokens", "65", "a b"])
    assert done.value.code == 2 and "more than the model's 64 positions" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["--model", model_dir, "--file", str(tmp_path / "x.txt"), "a b"])
    assert done.value.code == 2 and "give sentences as arguments or --file, not both" in capsys.readouterr().err


def translate_without_the_package(model_dir: str, sentences: list[str], tmp_path, **call_kwargs: object) -> list:
    """`pipeline(TASK, model=model_dir, trust_remote_code=True)(sentences)` in a fresh offline process in which
    `vanilla_transformer` cannot be imported, with an empty Hugging Face cache: (pipeline module, translations)."""
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
        results = pipe({sentences!r}, **{call_kwargs!r})
        assert "vanilla_transformer" not in sys.modules
        print(json.dumps([type(pipe).__module__, [r["translation_text"] for r in results]]))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "PYTHON"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_saved_pipeline_loads_as_remote_code_without_the_package(pipeline_dir: str, tmp_path) -> None:
    assert "pipeline_vanilla_transformer.py" in os.listdir(pipeline_dir)
    config = json.loads(open(os.path.join(pipeline_dir, "config.json")).read())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_vanilla_transformer.VanillaTranslationPipeline"
    module, texts = translate_without_the_package(pipeline_dir, SENTENCES, tmp_path, batch_size=4, max_new_tokens=8)
    assert module.startswith("transformers_modules.")
    assert texts == [reference(s, max_new_tokens=8) for s in SENTENCES]


@pytest.mark.slow
def test_the_model_train_py_saves_translates_as_a_pipeline_without_the_package(quickstart_run, tmp_path) -> None:
    run_dir = quickstart_run.output_dir
    assert "pipeline_vanilla_transformer.py" in os.listdir(run_dir)
    sources = ["dreihundertzwölf", "siebzehn", "neunundneunzig"]
    module, texts = translate_without_the_package(run_dir, sources, tmp_path, batch_size=2)
    assert module.startswith("transformers_modules.")
    assert texts == list(translate(load(run_dir), sources))  # as here: the model's saved generation settings
    assert texts == ["three hundred and twelve", "seventeen", "ninety-nine"]
