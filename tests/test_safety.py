"""Nothing lost in training: complete checkpoints only, kills during a save, kill-and-resume, non-finite losses."""

import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.config_file import ConfigError
from vanilla_transformer.safety import (
    NonFiniteLossError,
    NonFiniteLossGuard,
    atomic_write_text,
    checkpoint_problem,
    last_complete_checkpoint,
    safetensors_problem,
    set_aside_incomplete_checkpoints,
)

VOCAB = 16


def examples(count: int = 64) -> list[dict[str, list[int]]]:
    """Fixed-length pairs (source: 5 ids + </s>; target: reversed), so the default collator can stack them."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(3, VOCAB, (count, 5), generator=generator)
    return [{"input_ids": [*row.tolist(), 2], "labels": [*row.flip(0).tolist(), 2]} for row in rows]


def trainer(tmp_path: Path, callbacks: tuple[TrainerCallback, ...] = (), **overrides: object) -> Seq2SeqTrainer:
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(tiny_config(vocab_size=VOCAB, d_model=16, encoder_ffn_dim=32))
    fields = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        max_steps=8,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    fields.update(overrides)
    return Seq2SeqTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(**fields),
        train_dataset=examples(),
        data_collator=default_data_collator,
        callbacks=list(callbacks),
    )


# ---------------------------------------------------------------------------------------------------------
# Complete checkpoints
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoint-2 and checkpoint-4."""
    path = tmp_path_factory.mktemp("run")
    trainer(path, max_steps=4).train()
    return path


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out


def test_finished_checkpoints_are_complete(run_dir) -> None:
    for step in (2, 4):
        assert checkpoint_problem(str(run_dir / f"checkpoint-{step}")) is None
    assert last_complete_checkpoint(str(run_dir)) == str(run_dir / "checkpoint-4")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate weights", r"model.safetensors is truncated \(\d+ of \d+ bytes\)"),
        ("cut weights header", r"model.safetensors is truncated \(header of"),
        ("empty weights", r"model.safetensors is truncated \(0 bytes, no header\)"),
        ("no trainer state", r"trainer_state.json is missing \(the save was interrupted\)"),
        ("half trainer state", r"trainer_state.json is unreadable"),
        ("state of another step", r"trainer_state.json does not record step 4"),
    ],
)
def test_an_interrupted_save_is_skipped_and_set_aside(run_dir, tmp_path, damage: str, reason: str) -> None:
    out = copy_run(run_dir, tmp_path)
    last = out / "checkpoint-4"
    weights, state = last / "model.safetensors", last / "trainer_state.json"
    if damage == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "cut weights header":
        weights.write_bytes(weights.read_bytes()[:50])
    elif damage == "empty weights":
        weights.write_bytes(b"")
    elif damage == "no trainer state":
        state.unlink()
    elif damage == "half trainer state":
        state.write_text(state.read_text()[:40])
    else:
        state.write_text(json.dumps({**json.loads(state.read_text()), "global_step": 2}))

    assert get_last_checkpoint(str(out)) == str(last)  # transformers' own choice would be the broken one
    problem = checkpoint_problem(str(last))
    assert problem is not None and re.search(reason, problem), problem
    assert last_complete_checkpoint(str(out)) == str(out / "checkpoint-2")

    moved = set_aside_incomplete_checkpoints(str(out))
    assert moved == [str(out / "incomplete-checkpoint-4")]
    assert not last.exists() and get_last_checkpoint(str(out)) == str(out / "checkpoint-2")
    assert set_aside_incomplete_checkpoints(str(out)) == []  # idempotent


def test_safetensors_problem_reads_the_header_only(run_dir, tmp_path) -> None:
    weights = run_dir / "checkpoint-2" / "model.safetensors"
    assert safetensors_problem(str(weights)) is None
    grown = tmp_path / "grown.safetensors"
    grown.write_bytes(weights.read_bytes() + b"\0")
    assert safetensors_problem(str(grown)) == "grown.safetensors has 1 bytes beyond its last tensor"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\0\0\0\0\0\0\0not json at all!")
    assert "unreadable" in safetensors_problem(str(garbage))


def test_atomic_write_never_leaves_half_a_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "run_config.yaml"
    atomic_write_text(str(target), "old: 1\n")
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):  # interrupted after writing, before the rename
        atomic_write_text(str(target), "new: 2\n" * 1000)
    assert target.read_text() == "old: 1\n"
    monkeypatch.undo()
    atomic_write_text(str(target), "new: 2\n")
    assert target.read_text() == "new: 2\n"


def test_resume_from_the_last_complete_checkpoint_finishes_the_run(run_dir, tmp_path) -> None:
    """checkpoint-4 half-written: resuming from checkpoint-2 reaches the same weights as the uninterrupted run."""
    out = copy_run(run_dir, tmp_path)
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    set_aside_incomplete_checkpoints(str(out))
    resumed = trainer(out, max_steps=4)
    resumed.train(resume_from_checkpoint=last_complete_checkpoint(str(out)))
    assert resumed.state.global_step == 4
    reference = VanillaTransformerForConditionalGeneration.from_pretrained(run_dir / "checkpoint-4")
    for (name, got), expected in zip(resumed.model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, msg=name)


# ---------------------------------------------------------------------------------------------------------
# Non-finite loss
# ---------------------------------------------------------------------------------------------------------
class PoisonStep(TrainerCallback):
    """Make the logits (so the loss and gradients) NaN at the given steps, and snapshot weights after each step."""

    def __init__(self, model: torch.nn.Module, steps: set[int]) -> None:
        self.steps, self.active, self.weights = steps, False, {}
        model.lm_head.register_forward_hook(lambda module, args, out: out * float("nan") if self.active else None)

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.active = state.global_step + 1 in self.steps

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        self.weights[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_without_the_guard_a_nan_loss_silently_ruins_the_weights(tmp_path) -> None:
    """Why the guard exists: Trainer logs a filtered loss and steps with NaN gradients."""
    run = trainer(tmp_path, save_strategy="no")
    run.add_callback(PoisonStep(run.model, {3}))
    run.train()
    assert run.state.global_step == 8 and not all_finite(run.model)


def test_nonfinite_loss_stops_the_run_naming_the_step(tmp_path) -> None:
    run = trainer(tmp_path, callbacks=(NonFiniteLossGuard("error"),))
    run.add_callback(PoisonStep(run.model, {5}))
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf at step 5 .*Last complete checkpoint: .*checkpoint-4"):
        run.train()
    assert all_finite(run.model)  # stopped before the optimizer step
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    kept = VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path / "checkpoint-4")
    assert all_finite(kept)


def test_nonfinite_loss_skips_the_step_when_configured(tmp_path) -> None:
    guard = NonFiniteLossGuard("skip")
    run = trainer(tmp_path, callbacks=(guard,), save_strategy="no")
    poison = PoisonStep(run.model, {3, 6})
    run.add_callback(poison)
    run.train()
    assert run.state.global_step == 8 and guard.skipped_steps == [3, 6]
    assert all_finite(run.model)
    for step in (3, 6):  # a skipped step leaves the weights as they were; the others move them
        for name, value in poison.weights[step].items():
            torch.testing.assert_close(value, poison.weights[step - 1][name], msg=name)
    assert not torch.equal(poison.weights[5]["lm_head.weight"], poison.weights[4]["lm_head.weight"])


def test_too_many_skipped_steps_in_a_row_stop_the_run(tmp_path) -> None:
    run = trainer(tmp_path, callbacks=(NonFiniteLossGuard("skip", max_consecutive_skips=2),), save_strategy="no")
    run.add_callback(PoisonStep(run.model, {2, 3, 4, 5}))
    with pytest.raises(NonFiniteLossError, match=r"at step 4 .*\(3 steps in a row\)"):
        run.train()


def test_train_py_wires_the_guard_from_its_config() -> None:
    from vanilla_transformer.config_file import parse_config
    from vanilla_transformer.training import build_callbacks

    default = parse_config([], str(ROOT / "configs" / "quickstart.yaml"))
    guards = [c for c in build_callbacks(default, None) if isinstance(c, NonFiniteLossGuard)]
    assert [guard.policy for guard in guards] == ["error"]
    skip = parse_config(["training.on_nonfinite_loss=skip"], str(ROOT / "configs" / "quickstart.yaml"))
    assert [c.policy for c in build_callbacks(skip, None) if isinstance(c, NonFiniteLossGuard)] == ["skip"]
    with pytest.raises(ConfigError, match=r"`training\.on_nonfinite_loss` must be 'error' or 'skip', got 'ignore'"):
        parse_config(["training.on_nonfinite_loss=ignore"], str(ROOT / "configs" / "quickstart.yaml"))  # when parsed


def test_guard_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="Unknown non-finite loss policy 'ignore'"):
        NonFiniteLossGuard("ignore")
    with pytest.raises(ValueError, match="`max_consecutive_skips` must be >= 1"):
        NonFiniteLossGuard("skip", max_consecutive_skips=0)


# ---------------------------------------------------------------------------------------------------------
# train.py: SIGKILL in the middle of writing a checkpoint, then --resume
# ---------------------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = [
    "model.config={d_model: 16, encoder_layers: 1, decoder_layers: 1, encoder_attention_heads: 2, "
    "decoder_attention_heads: 2, encoder_ffn_dim: 32, decoder_ffn_dim: 32, dropout: 0.1, max_position_embeddings: 64}",
    "data.quickstart={max_number: 999, train_size: 64, validation_size: 8, test_size: 8, cover_below: 10, "
    "repeat_small: 1}",
    "data.max_source_length=32",
    "data.max_target_length=32",
    "tokenizer={vocab_size: 120, min_frequency: 1}",
    "training={batch_size: 8, max_steps: 6, warmup_steps: 2, logging_steps: 1, eval_steps: null, save_steps: 2, "
    "num_threads: 1, eval_batch_size: 8}",
    "generation={num_beams: 2, max_new_tokens: 8, num_samples: 1}",
]
# Runs train.py, but SIGKILLs the process halfway through writing checkpoint-4's weights.
KILL_DURING_SAVE = """
import os, runpy, signal, sys
import transformers.modeling_utils as modeling_utils

real_save = modeling_utils.safe_save_file

def save_then_die(tensors, filename, *args, **kwargs):
    real_save(tensors, filename, *args, **kwargs)
    if os.path.basename(os.path.dirname(filename)) == "checkpoint-4":
        with open(filename, "rb") as handle:
            data = handle.read()
        with open(filename, "wb") as handle:
            handle.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

modeling_utils.safe_save_file = save_then_die
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def train_main(argv: list[str]) -> dict:
    namespace = runpy.run_path(str(ROOT / "train.py"))
    return namespace["main"](argv)


def logged_losses(checkpoint: Path) -> dict[int, float]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_sigkill_during_a_save_then_resume_finishes_the_same_run(tmp_path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    train_main([*TINY_RUN, f"output_dir={reference}"])

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, *TINY_RUN, f"output_dir={killed}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert "is truncated" in safetensors_problem(str(killed / "checkpoint-4" / "model.safetensors"))
    assert "trainer_state.json is missing" in checkpoint_problem(str(killed / "checkpoint-4"))
    assert last_complete_checkpoint(str(killed)) == str(killed / "checkpoint-2")
    # The previous checkpoint still loads, and equals the uninterrupted run's.
    kept = VanillaTransformerForConditionalGeneration.from_pretrained(killed / "checkpoint-2")
    same = VanillaTransformerForConditionalGeneration.from_pretrained(reference / "checkpoint-2")
    for (name, got), expected in zip(kept.state_dict().items(), same.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, msg=name)

    with pytest.raises(ConfigError, match="already holds checkpoints"):  # never silently restarted over it
        train_main([*TINY_RUN, f"output_dir={killed}"])
    before = (killed / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    train_main([*TINY_RUN, f"output_dir={killed}", "--resume"])

    assert (killed / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == before  # resumed, not redone
    assert (killed / "incomplete-checkpoint-4").is_dir()
    resumed, uninterrupted = logged_losses(killed / "checkpoint-6"), logged_losses(reference / "checkpoint-6")
    assert sorted(resumed) == list(range(1, 7))  # the same step count, each step logged once
    assert resumed == pytest.approx(uninterrupted, rel=1e-6)  # same data order and RNG: the same losses
    final = load_file(killed / "model.safetensors")
    for name, expected in load_file(reference / "model.safetensors").items():
        torch.testing.assert_close(final[name], expected, msg=name)


def test_overwrite_output_dir_moves_the_earlier_runs_checkpoints_aside(run_dir, tmp_path) -> None:
    """Starting over in a folder must not leave the old run's checkpoints where a later --resume, Trainer's rotation
    or `average --last N` would take them for the new run's; nothing is deleted either."""
    from types import SimpleNamespace

    from vanilla_transformer.config_file import parse_config
    from vanilla_transformer.training import prepare_output_dir

    out = copy_run(run_dir, tmp_path)
    old = sorted(name for name in os.listdir(out) if name.startswith("checkpoint-"))
    assert old
    quickstart = os.path.join(ROOT, "configs", "quickstart.yaml")
    config = parse_config([quickstart, f"output_dir={out}", "overwrite_output_dir=true"], quickstart)
    assert prepare_output_dir(config, SimpleNamespace(process_index=0)) is None
    assert get_last_checkpoint(str(out)) is None
    (moved,) = [name for name in os.listdir(out) if name.startswith("previous-run-")]
    assert sorted(os.listdir(out / moved)) == old


def test_set_aside_names_never_overwrite_earlier_ones_and_the_log_says_what_moved(run_dir, tmp_path, caplog) -> None:
    """An incomplete checkpoint whose name was taken by an earlier set-aside gets the next free name; a complete
    newer checkpoint does not stop the search; the warning names the folder, its new name and why."""
    out = copy_run(run_dir, tmp_path)
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # checkpoint-4, newer, is complete
    (out / "incomplete-checkpoint-2").mkdir()
    with caplog.at_level("WARNING", logger="vanilla_transformer.safety"):
        moved = set_aside_incomplete_checkpoints(str(out))
    assert moved == [str(out / "incomplete-2-checkpoint-2")]
    assert not (out / "checkpoint-2").exists() and (out / "checkpoint-4").is_dir()
    assert (out / "incomplete-2-checkpoint-2" / "model.safetensors").is_file()
    assert caplog.messages == [
        f"Set aside the incomplete checkpoint {out / 'checkpoint-2'} as {moved[0]}: trainer_state.json is missing "
        "(the save was interrupted)."
    ]
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    (out / "incomplete-3-checkpoint-4").mkdir()
    (out / "incomplete-checkpoint-4").mkdir()
    assert set_aside_incomplete_checkpoints(str(out)) == [str(out / "incomplete-2-checkpoint-4")]


def test_previous_run_folders_are_named_by_utc_time_and_never_reused(run_dir, tmp_path, caplog, monkeypatch) -> None:
    import time

    from vanilla_transformer.safety import set_aside_previous_run

    utc = time.gmtime(86400 * 365 + 3661)  # 1971-01-01 01:01:01 UTC; the folder name must use this clock
    monkeypatch.setattr(time, "gmtime", lambda seconds=None: utc)
    out = copy_run(run_dir, tmp_path)
    (out / "previous-run-19710101T010101Z").mkdir()
    with caplog.at_level("WARNING", logger="vanilla_transformer.safety"):
        target = set_aside_previous_run(str(out))
    assert target == str(out / "previous-run-19710101T010101Z-2")
    assert sorted(os.listdir(target)) == ["checkpoint-2", "checkpoint-4"]
    assert [record.getMessage() for record in caplog.records] == [
        f"overwrite_output_dir: moved 2 checkpoint(s) of the earlier run into {target}."
    ]
    assert set_aside_previous_run(str(out)) is None  # nothing left to move


def test_a_sharded_checkpoint_missing_a_shard_is_incomplete(run_dir, tmp_path) -> None:
    out = copy_run(run_dir, tmp_path)
    last = out / "checkpoint-4"
    (last / "model.safetensors").rename(last / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}  # fmt: skip
    (last / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    assert checkpoint_problem(str(last)) == "weight shard(s) ['model-00002-of-00002.safetensors'] are missing"
    index["weight_map"]["b"] = "model-00001-of-00002.safetensors"
    (last / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    assert checkpoint_problem(str(last)) is None  # every shard the index names is there and whole
    (last / "model.safetensors.index.json").write_text('{"weight_map": ', encoding="utf-8")
    assert checkpoint_problem(str(last)).startswith("model.safetensors.index.json is unreadable")


def test_guard_defaults_and_what_its_messages_say(tmp_path, caplog) -> None:
    guard = NonFiniteLossGuard()
    assert guard.policy == "error" and guard.max_consecutive_skips == 10 and guard.consecutive == 0
    assert NonFiniteLossGuard("skip", max_consecutive_skips=1).max_consecutive_skips == 1  # the smallest allowed
    run = trainer(tmp_path, callbacks=(NonFiniteLossGuard(),), save_strategy="no")
    run.add_callback(PoisonStep(run.model, {1}))
    with pytest.raises(NonFiniteLossError) as error:
        run.train()
    assert str(error.value) == (
        "The loss or its gradients became NaN/inf at step 1 (epoch 0.00); training stopped before the optimizer "
        "step, so the weights are still finite. Last complete checkpoint: none yet. Lower the learning rate, check "
        "the data, or set `training.on_nonfinite_loss: skip`."
    )
    run = trainer(tmp_path / "skip", callbacks=(NonFiniteLossGuard("skip"),), save_strategy="no")
    run.add_callback(PoisonStep(run.model, {3}))
    with caplog.at_level("WARNING", logger="vanilla_transformer.safety"):
        run.train()
    assert "Non-finite loss/gradients at step 3: skipped the step (weights unchanged)." in caplog.messages


def test_safetensors_files_with_no_tensors_or_a_bad_header(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({}, str(tmp_path / "empty.safetensors"))
    assert safetensors_problem(str(tmp_path / "empty.safetensors")) is None
    for header, problem in ((b"[1, 2]", "has an invalid header"), (b"{not json}", "is unreadable (Expecting")):
        (tmp_path / "bad.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
        assert safetensors_problem(str(tmp_path / "bad.safetensors")).startswith(f"bad.safetensors {problem}")


def test_a_file_named_like_a_checkpoint_is_not_one(run_dir, tmp_path) -> None:
    out = copy_run(run_dir, tmp_path)
    (out / "checkpoint-9").write_text("notes", encoding="utf-8")
    assert last_complete_checkpoint(str(out)) == str(out / "checkpoint-4")
    assert set_aside_incomplete_checkpoints(str(out)) == [] and (out / "checkpoint-9").is_file()
