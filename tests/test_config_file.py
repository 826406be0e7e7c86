"""The run configuration (vanilla_transformer.config_file): every value checked when parsed, sources, inheritance."""

import os
import sys

import pytest
import yaml
from train_helpers import ROOT, write_config

from vanilla_transformer.config_file import ConfigError, parse_config

QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")
SMALL = os.path.join(ROOT, "configs", "small.yaml")


def parse(*args: str):
    return parse_config([*args], QUICKSTART)


def test_errors_come_before_any_data_is_read(monkeypatch, tmp_path):
    """A typo in the model's config, a negative batch size: refused by train.main before data or BPE exist."""
    sys.path.insert(0, ROOT)
    import train
    from vanilla_transformer import training

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was read before the config was checked")

    monkeypatch.setattr(training, "number_words_splits", no_data)
    monkeypatch.setattr(train, "load_splits", no_data)
    out = f"output_dir={tmp_path / 'run'}"
    with pytest.raises(ConfigError, match=r"Unknown config key `model\.config\.d_modle`\. Did you mean `d_model`\?"):
        train.main([QUICKSTART, out, "model.config.d_modle=64"])
    with pytest.raises(ConfigError, match=r"`training\.batch_size` must be at least 1, got -4"):
        train.main([QUICKSTART, out, "training.batch_size=-4"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.config.d_model=30", r"not a valid vanilla_transformer config: `d_model` \(30\) must be divisible"),
        ("model.config.dropout=1.5", r"`dropout` must be in \[0, 1\)"),
        ("model.config.vocab_size=100", r"`model\.config\.vocab_size` comes from the tokenizer"),
        ("model.config.label_smoothing=0.1", r"as `training\.label_smoothing`"),
        ("model.model_type=marain", r"'marain' is not a registered config type\. Did you mean `marian`\?"),
        ("training.eval_batch_size=0", r"`training\.eval_batch_size` must be at least 1, got 0"),
        ("training.gradient_accumulation_steps=0", r"`training\.gradient_accumulation_steps` must be at least 1"),
        ("training.max_steps=0", r"`training\.max_steps` must be at least 1, or -1"),
        ("training.label_smoothing=1.0", r"`training\.label_smoothing` must be in \[0, 1\)"),
        ("training.max_tokens=10", r"`training\.max_tokens` must be at least the longest example allowed \(64"),
        ("training.precision=fp8", r"`training\.precision` must be 'no', 'bf16' or 'fp16'"),
        ("training.eval_steps=300", r"`training\.save_steps` \(250\) must be a multiple of `training\.eval_steps`"),
        ("data.max_source_length=129", r"`data\.max_source_length` \(129\) exceeds the model's max_position_emb"),
        ("data.empty_lines=drop", r"`data\.empty_lines` must be 'error' or 'skip'"),
        ("data.quickstart.repeat_small=0", r"`data\.quickstart\.repeat_small` must be at least 1"),
        ("data.target_lang=fr", r"German number words into English"),
        ("generation.num_beams=0", r"`generation\.num_beams` must be at least 1"),
    ],
)
def test_bad_values_are_refused_when_parsed(override, message):
    with pytest.raises(ConfigError, match=message):
        parse(QUICKSTART, override)


def test_a_data_source_on_the_command_line_replaces_the_presets(tmp_path):
    """`data.train_file=x.tsv` on the default config trains on x.tsv: no 'two data sources' error, and a preset's
    own split files (small.yaml's Multi30k validation/test) do not mix with the user's data."""
    config = parse(f"data.train_file={tmp_path / 'mine.tsv'}")
    assert config.data.quickstart is None and config.data.train_file == str(tmp_path / "mine.tsv")
    config = parse(SMALL, "data.train_file=mine.jsonl", "data.validation_file=dev.jsonl")
    assert (config.data.train_file, config.data.validation_file, config.data.test_file) == (
        "mine.jsonl",
        "dev.jsonl",
        None,
    )
    assert config.data.max_eval_samples == 300  # the preset's other data settings stay
    config = parse(SMALL, "data.dataset=wmt/wmt16", "data.dataset_config=de-en")
    assert config.data.train_file is None and config.data.dataset == "wmt/wmt16"
    config = parse(SMALL, "data.quickstart={max_number: 999, train_size: 100, validation_size: 10, test_size: 10}")
    assert config.data.train_file is None and config.data.quickstart.train_size == 100
    config = parse(SMALL, "data.validation_file=dev.tsv")  # not a source: only that key changes
    assert config.data.train_file.endswith("multi30k/train") and config.data.validation_file == "dev.tsv"


def test_inherit_takes_the_other_files_values(tmp_path):
    big = parse_config([os.path.join(ROOT, "configs", "big.yaml")], QUICKSTART)
    base = parse_config([os.path.join(ROOT, "configs", "base.yaml")], QUICKSTART)
    assert big.model.config["d_model"] == 1024 and big.training.max_steps == 300000
    assert big.data == base.data and big.tokenizer == base.tokenizer and big.generation == base.generation
    assert big.training.max_tokens == base.training.max_tokens == 3125
    assert big.model.config["encoder_layers"] == base.model.config["encoder_layers"]

    (tmp_path / "sub").mkdir()
    parent = write_config(str(tmp_path / "parent.yaml"), "runs/parent")
    child = tmp_path / "sub" / "child.yaml"
    child.write_text(yaml.safe_dump({"inherit": "../parent.yaml", "training": {"max_steps": 7}}))
    config = parse_config([str(child)], QUICKSTART)
    assert config.training.max_steps == 7 and config.training.max_tokens == 96 and config.output_dir == "runs/parent"
    assert config.to_dict() == parse_config([parent, "training.max_steps=7"], QUICKSTART).to_dict()
    loop = tmp_path / "loop.yaml"
    loop.write_text("inherit: loop.yaml\n")
    with pytest.raises(ConfigError, match=r"makes a cycle of config files"):
        parse_config([str(loop)], QUICKSTART)
    (tmp_path / "orphan.yaml").write_text("inherit: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"Config file not found: .*nowhere\.yaml"):
        parse_config([str(tmp_path / "orphan.yaml")], QUICKSTART)


def test_mistyped_local_model_path_says_no_such_folder(tmp_path, monkeypatch):
    """Before anything tries the Hub (which would answer with a network error or 'not a valid model id')."""
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"`model\.name_or_path`: no such folder: runs/quickstrat\. Did you mean"):
        parse("model.name_or_path=runs/quickstrat")
    with pytest.raises(ConfigError, match=r"`tokenizer\.name_or_path`: no such folder: \./tok"):
        parse("tokenizer.name_or_path=./tok")


def test_continuing_checks_the_pretrained_config_when_parsed(tmp_path):
    from conftest import tiny_config

    tiny_config().save_pretrained(tmp_path / "pretrained")  # the sizes of the tiny run config
    tiny = write_config(str(tmp_path / "tiny.yaml"), str(tmp_path / "run"))
    name = f"model.name_or_path={tmp_path / 'pretrained'}"
    assert parse_config([tiny, name, "model.config.dropout=0.3"], tiny).model.config["dropout"] == 0.3
    with pytest.raises(ConfigError, match=r"`model\.config\.d_model` is 64 but .* architecture is fixed"):
        parse_config([tiny, name, "model.config.d_model=64"], tiny)
    with pytest.raises(ConfigError, match=r"Unknown config key `model\.config\.dropuot`\. Did you mean `dropout`"):
        parse_config([tiny, name, "model.config.dropuot=0.1"], tiny)
    with pytest.raises(ConfigError, match=r"`generation\.max_new_tokens` \(65\) exceeds the model's max_position"):
        parse_config([tiny, name, "generation.max_new_tokens=65"], tiny)
