"""Bad input to train.py gets a clear error naming the problem, before any training starts."""

import os
import sys

import pytest
from train_helpers import ROOT, write_config

from vanilla_transformer.config_file import ConfigError, model_config_of, parse_config
from vanilla_transformer.data import DataError
from vanilla_transformer.training import build_training_args, check_process_group

sys.path.insert(0, ROOT)
import train  # noqa: E402

QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


@pytest.fixture
def tiny(tmp_path):
    return write_config(str(tmp_path / "tiny.yaml"), str(tmp_path / "run"))


def no_training_happened(tmp_path):
    run = tmp_path / "run"
    return not run.exists() or not any(name.startswith("checkpoint-") for name in os.listdir(run))


def test_every_shipped_config_parses(tmp_path):
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        config = parse_config([os.path.join(ROOT, "configs", name), f"output_dir={tmp_path}"], QUICKSTART)
        build_training_args(config, model_config_of(config))  # Trainer accepts the combination
        assert config.generation.num_beams == 4 and config.generation.length_penalty == 0.6
        assert (config.training.adam_beta1, config.training.adam_beta2) == (0.9, 0.98)
        assert config.training.adam_epsilon == 1e-9 and config.training.label_smoothing == 0.1
    assert parse_config([], QUICKSTART).data.quickstart is not None  # the default


def test_overrides_and_flags():
    config = parse_config(["training.max_steps=7", "model.config.d_model=64", "--push_to_hub", "--resume"], QUICKSTART)
    assert config.training.max_steps == 7 and config.model.config["d_model"] == 64
    assert config.push_to_hub and config.resume


def test_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  max_steps: [1, 2\n")
    with pytest.raises(ConfigError, match=r"Invalid YAML in .*bad\.yaml"):
        train.main([str(path)])
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        train.main([str(path)])
    with pytest.raises(ConfigError, match=r"Config file not found: .*missing\.yaml"):
        train.main([str(tmp_path / "missing.yaml")])


def test_unknown_keys_are_errors(tiny, tmp_path):
    with pytest.raises(
        ConfigError, match=r"Unknown config key `training\.learning_rat`\. Did you mean `learning_rate`"
    ):
        train.main([tiny, "training.learning_rat=0.1"])
    with pytest.raises(ConfigError, match=r"Unknown config key `outptu_dir`\. Did you mean `output_dir`"):
        train.main([tiny, "outptu_dir=x"])
    with pytest.raises(ConfigError, match=r"Unknown config key `model\.config\.d_modle`\. Did you mean `d_model`"):
        train.main([tiny, "model.config.d_modle=64"])
    with pytest.raises(ConfigError, match=r"Unknown config key `data\.quickstart\.size`"):
        train.main([tiny, "data.quickstart.size=3"])
    with pytest.raises(ConfigError, match="Don't know what to do with argument '--max_steps'"):
        train.main([tiny, "--max_steps", "3"])
    assert no_training_happened(tmp_path)


def test_mistyped_values(tiny):
    with pytest.raises(ConfigError, match=r"`training\.max_steps` must be of type int, got 'ten'"):
        train.main([tiny, "training.max_steps=ten"])
    with pytest.raises(ConfigError, match=r"`training` must be a mapping"):
        train.main([tiny, "training=3"])
    with pytest.raises(ConfigError, match=r"`model\.config\.pad_token_id` is 5 but the tokenizer's id is 0"):
        train.main([tiny, "model.config.pad_token_id=5"])
    with pytest.raises(ConfigError, match="Unknown model type|Unrecognized model|`model.model_type`"):
        train.main([tiny, "model.model_type=no_such_model"])


def test_exponent_floats_without_a_dot_are_numbers(tiny):
    """YAML 1.1 reads `1e-3` as a string; a float field takes it as the number it plainly is."""
    config = parse_config([tiny, "training.learning_rate=1e-3", "training.adam_epsilon=1e-9"], tiny)
    assert config.training.learning_rate == 1e-3 and config.training.adam_epsilon == 1e-9
    with pytest.raises(ConfigError, match=r"`training\.learning_rate` must be of type float .*got 'fast'"):
        parse_config([tiny, "training.learning_rate=fast"], tiny)


def test_data_source_must_be_one(tiny, tmp_path):
    both = write_config(str(tmp_path / "both.yaml"), str(tmp_path / "run"), data={"train_file": "x.jsonl"})
    with pytest.raises(ConfigError, match=r"exactly one data source.*got \['quickstart', 'train_file'\]"):
        parse_config([both], both)
    with pytest.raises(ConfigError, match="exactly one data source.*got none"):
        train.main([tiny, "data.quickstart=null"])


def test_bad_data_files_fail_before_training(tiny, tmp_path):
    base = [tiny, "data.quickstart=null"]
    with pytest.raises(DataError, match=r"Data file not found: .*nope\.jsonl"):
        train.main(base + [f"data.train_file={tmp_path / 'nope.jsonl'}"])
    (tmp_path / "t.de").write_text("eins\nzwei\n")
    (tmp_path / "t.en").write_text("one\n")
    with pytest.raises(DataError, match=r"different line counts: .*t\.de has 2 lines, .*t\.en has 1"):
        train.main(base + [f"data.train_file={tmp_path / 't'}"])
    (tmp_path / "v.jsonl").write_text('{"de": "eins", "fr": "un"}\n')
    (tmp_path / "t.en").write_text("one\ntwo\n")
    with pytest.raises(DataError, match=r"v\.jsonl:1: missing language key\(s\) \['en'\]"):
        train.main(base + [f"data.train_file={tmp_path / 't'}", f"data.validation_file={tmp_path / 'v.jsonl'}"])
    assert no_training_happened(tmp_path)


def test_output_dir_with_another_runs_checkpoints(tiny, tmp_path):
    (tmp_path / "run" / "checkpoint-10").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"already holds checkpoints of another run \(checkpoint-10\).*resume=true"):
        train.main([tiny])
    # resuming a run whose saved config has another model is refused too
    (tmp_path / "run" / "run_config.yaml").write_text("model: {model_type: marian}\n")
    with pytest.raises(ConfigError, match=r"Can't resume in .*different model / data / tokenizer section"):
        train.main([tiny, "--resume"])
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint-10", "run_config.yaml"]
    # ... and so is resuming a run that was killed before its first checkpoint (its tokenizer would be reused)
    os.rename(tmp_path / "run" / "checkpoint-10", tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=r"Can't resume in .*different model / data / tokenizer section"):
        train.main([tiny, "--resume"])


def test_refuses_processes_that_did_not_form_one_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"WORLD_SIZE=2.*group of 1.*ACCELERATE_USE_CPU=1"):
        check_process_group(1)
    check_process_group(2)  # a real group of 2 is fine
    monkeypatch.delenv("WORLD_SIZE")
    check_process_group(1)


def test_command_line_user_error_is_one_message_and_status_2(tiny, tmp_path):
    """A config or data error: one line on stderr, exit status 2; the traceback only with VT_DEBUG=1."""
    import subprocess

    from train_helpers import run_env

    command = [sys.executable, os.path.join(ROOT, "train.py"), tiny, "training.learning_rat=0.1"]
    result = subprocess.run(command, cwd=str(tmp_path), env=run_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("train.py: error: Unknown config key `training.learning_rat`. Did you mean `learning_")
    debug = subprocess.run(command, cwd=str(tmp_path), env=dict(run_env(), VT_DEBUG="1"), capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
