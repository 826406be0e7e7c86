"""train.py end to end: training, two processes, kill + resume, and publishing to a (captured) Hub."""

import json
import os
import subprocess
import sys

import pytest
import torch
from train_helpers import ROOT, fake_hub, run_env, run_probe, write_config

pytestmark = pytest.mark.slow


def losses(probe: dict) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in probe["log_history"] if "loss" in row}


def read_probe(output_dir: str, rank: int = 0) -> dict:
    with open(os.path.join(output_dir, f"probe-rank{rank}.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run of the tiny config (token budget, 2 batches accumulated)."""
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(str(tmp / "tiny.yaml"), str(tmp / "run"))
    result = run_probe(config)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"config": config, "dir": str(tmp / "run"), "stdout": result.stdout, "probe": read_probe(str(tmp / "run"))}


def test_end_to_end_trains_reports_and_saves_a_loadable_translator(reference):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import vanilla_transformer  # noqa: F401  (registers the model: no remote code needed)

    probe, out = reference["probe"], reference["dir"]
    assert probe["global_step"] == 40
    logged = losses(probe)
    assert logged[40] < 0.7 * logged[5], logged  # the loss goes down
    assert "BLEU" in reference["stdout"] and "chrF" in reference["stdout"]
    # progress (not a terminal: one line per logging_steps) and the loss curve in the run folder
    assert "\nstep 5/40 (12%) | elapsed " in reference["stdout"] and "| loss " in reference["stdout"]
    assert "step 40/40 (100%) | elapsed " in reference["stdout"]
    assert os.path.getsize(os.path.join(out, "loss_curve.png")) > 10_000
    with open(os.path.join(out, "trainer_state.json")) as handle:
        assert any("loss" in row for row in json.load(handle)["log_history"])
    assert reference["stdout"].count("translation:") == 2

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    tok = tokenizer
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    config = model.config
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)
    assert config.decoder_start_token_id == 1
    assert config.vocab_size == len(tokenizer)
    assert model.generation_config.num_beams == 2 and model.generation_config.length_penalty == 0.6
    batch = tokenizer(["dreihundertvierundzwanzig", "sieben"], return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**batch)
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    assert all(text.strip() for text in texts) and all(t.isascii() for t in texts)  # English words, not German
    with open(os.path.join(out, "README.md")) as handle:
        card = handle.read()
    assert "{{" not in card and "| test | 16 |" in card
    with open(os.path.join(out, "all_results.json")) as handle:
        results = json.load(handle)
    assert results["n"] == 16 and 0.0 <= results["bleu"] <= 100.0


def test_two_processes_train_in_one_group_like_one_process(reference, tmp_path):
    """2 CPU processes, 1 batch each per step == 1 process accumulating 2 batches per step."""
    out = str(tmp_path / "ddp")
    overrides = [f"output_dir={out}", "training.gradient_accumulation_steps=1", "training.eval_batch_size=5"]
    result = run_probe(reference["config"], *overrides, processes=2)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # 16 test pairs in batches of 5 over 2 ranks: accelerate pads with repeats, the scores count each pair once
    assert "test (16 sentences)" in result.stdout
    ranks = [read_probe(out, 0), read_probe(out, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["params_md5"] == ranks[1]["params_md5"]  # one process group: identical weights
    single = reference["probe"]["batches"]
    assert ranks[0]["batches"] == single[0::2] and ranks[1]["batches"] == single[1::2]  # different data per rank
    assert ranks[0]["global_step"] == 40
    for step, loss in losses(reference["probe"]).items():
        assert losses(ranks[0])[step] == pytest.approx(loss, rel=2e-3), step


def test_killed_run_resumes_to_the_same_end(reference, tmp_path):
    out = str(tmp_path / "killed")
    killed = run_probe(reference["config"], f"output_dir={out}", env=dict(run_env(), PROBE_KILL_AT_STEP="25"))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ["checkpoint-10", "checkpoint-20"]

    resumed = run_probe(reference["config"], f"output_dir={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    probe = read_probe(out)
    assert probe["global_step"] == 40
    assert probe["batches"] == reference["probe"]["batches"][40:]  # steps 21..40, 2 batches each, same order
    assert probe["params_md5"] == reference["probe"]["params_md5"]
    ref_losses = losses(reference["probe"])
    for step, loss in losses(probe).items():
        if step > 20:
            assert loss == pytest.approx(ref_losses[step], rel=1e-5), step


def test_run_killed_after_its_last_checkpoint_resumes_without_another_step(reference, tmp_path):
    """Killed after `checkpoint-40` (= max_steps) was written, before the final evaluation and save."""
    out = str(tmp_path / "killed-at-the-end")
    killed = run_probe(reference["config"], f"output_dir={out}", env=dict(run_env(), PROBE_KILL_AFTER_TRAINING="1"))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "checkpoint-40" in os.listdir(out) and not os.path.exists(os.path.join(out, "model.safetensors"))

    resumed = run_probe(reference["config"], f"output_dir={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    probe = read_probe(out)
    assert probe["global_step"] == 40 and probe["batches"] == []  # no step 41
    assert probe["params_md5"] == reference["probe"]["params_md5"]
    assert not os.path.exists(os.path.join(out, "checkpoint-41"))
    assert "test (16 sentences)" in resumed.stdout and os.path.isfile(os.path.join(out, "model.safetensors"))


def test_push_to_hub_uploads_a_loadable_repo(tmp_path, monkeypatch):
    sys.path.insert(0, ROOT)
    import train

    hub = tmp_path / "hub"
    config = write_config(str(tmp_path / "tiny.yaml"), str(tmp_path / "run"))
    args = [config, "--push_to_hub", "hub_model_id=fake-user/tiny-numbers", "training.max_steps=4"]
    with fake_hub(str(hub)) as commits:
        train.main(args + ["training.save_steps=4"])
    assert len(commits) == 1 and commits[0]["repo_id"] == "fake-user/tiny-numbers"
    assert commits[0]["files"] == sorted(
        [
            "README.md",
            "config.json",
            "configuration_vanilla_transformer.py",
            "generation_config.json",
            "model.safetensors",
            "modeling_vanilla_transformer.py",
            "checks_vanilla_transformer.py",
            "pipeline_vanilla_transformer.py",
            "precision.py",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )
    repo = hub / "fake-user" / "tiny-numbers"
    card = (repo / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "{{" not in card
    assert "- de\n- en\n" in card and "trust_remote_code=True" in card and "Deviations from the paper" in card

    # A fresh process in which the package can't be imported loads the repo through its shipped code.
    code = f"""
import sys
sys.modules["vanilla_transformer"] = None  # any import of the package now fails
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
repo = {str(repo)!r}
model = AutoModelForSeq2SeqLM.from_pretrained(repo, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)  # it reads config.json too
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
out = model.generate(**tokenizer(["neunhundertzwölf"], return_tensors="pt"))
print(out.tolist())
"""
    env = dict(run_env(), HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH="")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr[-3000:]

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "run"))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "run"))
    expected = model.generate(**tokenizer(["neunhundertzwölf"], return_tensors="pt")).tolist()
    assert fresh.stdout.strip().splitlines()[-1] == str(expected)


def test_local_parallel_files_without_validation(tmp_path, capsys):
    """Plain-text files train.de/train.en, no validation or test split: trains, skips evaluation, saves."""
    sys.path.insert(0, ROOT)
    import train
    from vanilla_transformer.data import number_words_splits

    pairs = number_words_splits(max_number=999, train_size=64, validation_size=0, test_size=0, seed=0)["train"]
    (tmp_path / "train.de").write_text("\n".join(pairs["source"]) + "\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("\n".join(pairs["target"]) + "\n", encoding="utf-8")
    config = write_config(str(tmp_path / "tiny.yaml"), str(tmp_path / "run"))
    overrides = ["data.quickstart=null", f"data.train_file={tmp_path / 'train'}", "training.max_steps=4"]
    assert train.main([config, *overrides, "training.eval_steps=2", "training.save_steps=2"]) == {}
    assert "No validation or test split" in capsys.readouterr().out
    assert (tmp_path / "run" / "model.safetensors").is_file() and (tmp_path / "run" / "tokenizer.json").is_file()


def test_continue_from_a_pretrained_model(reference, tmp_path):
    """`model.name_or_path`: training continues from the saved weights, with the model's own tokenizer, the run's
    label smoothing and dropout; architecture fields that contradict the pretrained model are refused."""
    sys.path.insert(0, ROOT)
    from transformers import AutoTokenizer

    import train
    from vanilla_transformer.config_file import ConfigError, parse_config
    from vanilla_transformer.training import build_model

    out = str(tmp_path / "continued")
    pretrained = f"model.name_or_path={reference['dir']}"
    other_bpe = "tokenizer.vocab_size=60"  # would give another vocabulary if a BPE were trained instead
    steps = ["training.max_steps=5", "training.save_steps=5"]
    train.main([reference["config"], pretrained, other_bpe, f"output_dir={out}", *steps])
    with open(os.path.join(out, "checkpoint-5", "trainer_state.json")) as handle:
        continued = {row["step"]: row["loss"] for row in json.load(handle)["log_history"] if "loss" in row}
    from_scratch = losses(reference["probe"])
    assert continued[5] < 0.7 * from_scratch[5]  # starts where the reference run ended, not from scratch
    vocabularies = [AutoTokenizer.from_pretrained(folder).get_vocab() for folder in (out, reference["dir"])]
    assert vocabularies[0] == vocabularies[1]  # the pretrained model's tokenizer, not a newly trained BPE

    tokenizer = AutoTokenizer.from_pretrained(reference["dir"])
    changed = [reference["config"], pretrained, "model.config.dropout=0.3"]
    model = build_model(parse_config(changed, reference["config"]), tokenizer)
    assert model.config.dropout == 0.3
    assert model.model.encoder.dropout == 0.3  # set before the modules were built, so it takes effect
    with pytest.raises(ConfigError, match=r"`model.config.d_model` is 64 but .* architecture is fixed"):
        build_model(parse_config([*changed, "model.config.d_model=64"], reference["config"]), tokenizer)


def test_same_recipe_trains_a_marian_model(tmp_path):
    """Any registered seq2seq config works unchanged: here MarianConfig with the tiny run's sizes."""
    sys.path.insert(0, ROOT)
    from transformers import AutoModelForSeq2SeqLM

    import train

    config = write_config(str(tmp_path / "tiny.yaml"), str(tmp_path / "run"))
    marian = ["model.model_type=marian", "model.config.init_std=0.02"]  # the tiny run's Xavier is ours only
    results = train.main([config, *marian, "training.max_steps=6", "training.save_steps=6"])
    assert results["n"] == 16
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "run"))
    assert type(model).__name__ == "MarianMTModel" and model.config.d_model == 32
    assert (model.config.pad_token_id, model.config.decoder_start_token_id, model.config.eos_token_id) == (0, 1, 2)
    assert model.generation_config.forced_eos_token_id == 2  # Marian's default (0) would force <pad>
    args = torch.load(str(tmp_path / "run" / "training_args.bin"), weights_only=False)
    assert args.label_smoothing_factor == 0.0  # the recipe's own label-smoothed loss, not Trainer's smoother
    state = json.load(open(tmp_path / "run" / "checkpoint-6" / "trainer_state.json", encoding="utf-8"))
    logged = [row for row in state["log_history"] if "loss" in row]
    assert logged and all(0 < row["nll_loss"] != row["loss"] for row in logged)  # smoothed loss and NLL logged
