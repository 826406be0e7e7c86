"""Nothing lost: complete checkpoints only, and no step taken on a non-finite loss.

Not shipped to the Hub (the shipped files never import this module).

How transformers 5.23's `Trainer._save_checkpoint` writes `checkpoint-N`: straight into the final folder (no staging
and rename) - the model weights, then optimizer, scheduler, RNG state, and `trainer_state.json` last, and only
then are old checkpoints rotated away. A kill during a save therefore leaves a half-written `checkpoint-N` beside
the intact previous one, and `transformers.trainer_utils.get_last_checkpoint` would pick the broken one (the
resume then fails, or loads a truncated file). `last_complete_checkpoint` skips such folders and
`set_aside_incomplete_checkpoints` renames them out of the way before training starts.

`Trainer` also hides a non-finite loss: with the default `logging_nan_inf_filter=True` the logged loss is an
average of earlier steps, while the optimizer still steps with NaN gradients and ruins the weights (and every
checkpoint written afterwards). `NonFiniteLossGuard` checks the gradients before each optimizer step and either
stops the run with an error naming the step (the checkpoints already written stay untouched) or skips the step.
"""

import json
import logging
import os
import re
import struct
import time

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # written last by Trainer._save_checkpoint
INCOMPLETE_PREFIX = "incomplete-"
NONFINITE_POLICIES = ("error", "skip")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


# ---------------------------------------------------------------------------------------------------------
# Complete checkpoints
# ---------------------------------------------------------------------------------------------------------
def safetensors_problem(path: str) -> str | None:
    """Why the safetensors file at `path` is unreadable (truncated, bad header), or None when it is whole.

    Reads only the header: 8 bytes of little-endian header length, the JSON header, then the file must hold
    exactly the bytes up to the largest tensor end offset.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"{os.path.basename(path)} is truncated ({size} bytes, no header)"
            (header_len,) = struct.unpack("<Q", prefix)
            if 8 + header_len > size:
                return f"{os.path.basename(path)} is truncated (header of {header_len} bytes, file of {size})"
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return f"{os.path.basename(path)} is unreadable ({error})"
    if not isinstance(header, dict):
        return f"{os.path.basename(path)} has an invalid header"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        return f"{os.path.basename(path)} is truncated ({size} of {expected} bytes)"
    if size > expected:
        return f"{os.path.basename(path)} has {size - expected} bytes beyond its last tensor"
    return None


def checkpoint_problem(path: str) -> str | None:
    """Why `checkpoint-N` at `path` can't be resumed from, or None when it is complete.

    Complete means: `trainer_state.json` (the last file Trainer writes) parses and records step N, and every
    safetensors weight file in the folder is whole.
    """
    match = _CHECKPOINT.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        return f"{path} is not named {PREFIX_CHECKPOINT_DIR}-<step>"
    state_file = os.path.join(path, TRAINER_STATE)
    try:
        with open(state_file, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return f"{TRAINER_STATE} is missing (the save was interrupted)"
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE} is unreadable ({error})"
    if not isinstance(state, dict) or state.get("global_step") != int(match.group(1)):
        return f"{TRAINER_STATE} does not record step {match.group(1)}"
    try:
        weight_files = sorted(name for name in os.listdir(path) if name.endswith(".safetensors"))
    except OSError as error:
        return f"the folder is unreadable ({error})"
    index_file = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index_file):
        try:
            with open(index_file, encoding="utf-8") as handle:
                shards = set(json.load(handle)["weight_map"].values())
        except (OSError, ValueError, KeyError) as error:
            return f"model.safetensors.index.json is unreadable ({error})"
        missing = sorted(shards - set(weight_files))
        if missing:
            return f"weight shard(s) {missing} are missing"
    for name in weight_files:
        problem = safetensors_problem(os.path.join(path, name))
        if problem:
            return problem
    return None


def _checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the `checkpoint-N` folders in `output_dir`, newest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found, reverse=True)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir` (None if there is none); incomplete ones are skipped.

    A drop-in for `transformers.trainer_utils.get_last_checkpoint`, which returns the newest folder even when a
    kill interrupted its save.
    """
    for _, path in _checkpoints(output_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("Skipping %s: %s.", path, problem)
    return None


def set_aside_incomplete_checkpoints(output_dir: str) -> list[str]:
    """Rename every incomplete `checkpoint-N` to `incomplete-checkpoint-N` (kept for inspection, but invisible
    to Trainer's resume and rotation). Call on the main process only, before training starts.

    Returns:
        The new paths of the folders set aside.
    """
    moved = []
    for _, path in _checkpoints(output_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            continue
        target = os.path.join(output_dir, INCOMPLETE_PREFIX + os.path.basename(path))
        suffix = 1
        while os.path.exists(target):
            suffix += 1
            target = os.path.join(output_dir, f"{INCOMPLETE_PREFIX}{suffix}-{os.path.basename(path)}")
        os.rename(path, target)
        logger.warning("Set aside the incomplete checkpoint %s as %s: %s.", path, target, problem)
        moved.append(target)
    return moved


def set_aside_previous_run(output_dir: str) -> str | None:
    """Move every `checkpoint-N` of an earlier run into `output_dir/previous-run-<UTC time>/` (for
    `overwrite_output_dir`): nothing is deleted, and Trainer's resume and rotation and checkpoint averaging see only
    the new run's checkpoints. Call on the main process only, before training starts.

    Returns:
        The folder the checkpoints were moved into, or None when there were none.
    """
    old = [path for _, path in _checkpoints(output_dir)]
    if not old:
        return None
    base = os.path.join(output_dir, "previous-run-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    target, suffix = base, 1
    while os.path.exists(target):
        suffix += 1
        target = f"{base}-{suffix}"
    os.makedirs(target)
    for path in old:
        os.rename(path, os.path.join(target, os.path.basename(path)))
    logger.warning("overwrite_output_dir: moved %d checkpoint(s) of the earlier run into %s.", len(old), target)
    return target


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` so that a kill at any moment leaves either the old or the new file, never half."""
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


# ---------------------------------------------------------------------------------------------------------
# Non-finite loss
# ---------------------------------------------------------------------------------------------------------
class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss (and so the gradients) of a step was NaN or infinite."""


class NonFiniteLossGuard(TrainerCallback):
    """Before every optimizer step, check that the gradients are finite (a NaN/inf loss makes them non-finite).

    Args:
        policy: "error" stops the run with `NonFiniteLossError` naming the step and the last complete checkpoint
            (which stays untouched: nothing is saved after the bad step); "skip" drops the step's gradients so
            the optimizer leaves the weights alone, logs a warning, and goes on.
        max_consecutive_skips: with "skip", stop with the error after this many bad steps in a row.

    The check runs after the gradients are all-reduced, so under several processes every process takes the same
    decision (no process waits for another that stopped). Under fp16 mixed precision the gradient scaler already
    skips steps with overflowing gradients, so the guard leaves those runs alone.
    """

    def __init__(self, policy: str = "error", max_consecutive_skips: int = 10) -> None:
        if policy not in NONFINITE_POLICIES:
            raise ValueError(
                f"Unknown non-finite loss policy {policy!r} (`training.on_nonfinite_loss`); "
                f"choose one of {NONFINITE_POLICIES}."
            )
        if max_consecutive_skips < 1:
            raise ValueError(f"`max_consecutive_skips` must be >= 1, got {max_consecutive_skips}.")
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive = 0
        self.skipped_steps: list[int] = []

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        model = kwargs.get("model")
        if args.fp16 or model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False))):
            self.consecutive = 0
            return
        step = state.global_step + 1  # the step being taken (Trainer counts it after the optimizer step)
        self.consecutive += 1
        if self.policy == "skip" and self.consecutive <= self.max_consecutive_skips:
            for parameter in model.parameters():
                parameter.grad = None  # the optimizer skips parameters without gradients
            self.skipped_steps.append(step)
            logger.warning("Non-finite loss/gradients at step %d: skipped the step (weights unchanged).", step)
            return
        last = last_complete_checkpoint(args.output_dir) if args.output_dir else None
        in_a_row = f" ({self.consecutive} steps in a row)" if self.policy == "skip" else ""
        raise NonFiniteLossError(
            f"The loss or its gradients became NaN/inf at step {step} (epoch {state.epoch or 0.0:.2f}){in_a_row}; "
            f"training stopped before the optimizer step, so the weights are still finite. Last complete "
            f"checkpoint: {last or 'none yet'}. Lower the learning rate, check the data, or set "
            "`training.on_nonfinite_loss: skip`."
        )
