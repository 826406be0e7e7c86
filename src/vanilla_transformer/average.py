"""Checkpoint averaging (paper Section 6.1: "averaging the last 5 checkpoints, written at 10-minute intervals").

Not shipped to the Hub. Usage:

    python -m vanilla_transformer.average runs/small --last 5 --output runs/small/averaged
    python -m vanilla_transformer.average runs/small/checkpoint-1000 runs/small/checkpoint-1500 --output avg

The output folder loads like any checkpoint (`AutoModelForSeq2SeqLM.from_pretrained`): weights are the
element-wise mean of the checkpoints' weights; config, generation config, model code and tokenizer files are
taken from the newest checkpoint, and the code of the "vanilla-translation" pipeline is saved with them (when the
checkpoint has a tokenizer), so that `pipeline("vanilla-translation", model=output, trust_remote_code=True)` works.
"""

import argparse
import json
import os
import re
import shutil
from collections.abc import Sequence

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from .config_file import debug_tracebacks
from .saving import save_with_pipeline

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "source.spm",
    "target.spm",
)


def last_checkpoints(run_dir: str, n: int) -> list[str]:
    """The `n` newest `checkpoint-STEP` folders of a run, oldest first: the paper's "last n checkpoints".

    Trainer keeps the best checkpoint (by BLEU) inside `save_total_limit`, so the newest folders on disk need not
    be the last consecutive saves. The steps of the chosen folders must follow each other at the run's
    `save_steps` (read from the newest `trainer_state.json`; the final save may come sooner).

    Raises:
        ValueError: fewer than `n` checkpoints, or an older checkpoint (the kept best one) among them.
    """
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"Run directory not found: {run_dir}")
    steps = sorted(int(m.group(1)) for name in os.listdir(run_dir) if (m := CHECKPOINT.match(name)))
    if len(steps) < n:
        raise ValueError(f"{run_dir} has {len(steps)} checkpoint(s), fewer than the {n} asked for.")
    chosen = steps[-n:]
    state_file = os.path.join(run_dir, f"checkpoint-{chosen[-1]}", "trainer_state.json")
    save_steps = None
    if os.path.isfile(state_file):
        with open(state_file, encoding="utf-8") as handle:
            save_steps = json.load(handle).get("save_steps")
    if isinstance(save_steps, int) and save_steps > 0:
        if any(later - earlier > save_steps for earlier, later in zip(chosen[:-1], chosen[1:], strict=True)):
            raise ValueError(
                f"The {n} newest checkpoints of {run_dir} (steps {chosen}) are not the last {n} saves, one every "
                f"{save_steps} steps: Trainer also keeps the best checkpoint. Set `training.save_total_limit` to at "
                f"least {n + 1} so the last {n} are kept, or name the checkpoint folders to average."
            )
    return [os.path.join(run_dir, f"checkpoint-{step}") for step in chosen]


def average_state_dicts(paths: Sequence[str]) -> dict[str, torch.Tensor]:
    """Element-wise mean (in float64, cast back) of the `model.safetensors` tensors of each checkpoint folder.

    Raises:
        ValueError: no checkpoints, or checkpoints whose tensor names or shapes differ.
    """
    if not paths:
        raise ValueError("No checkpoints to average.")
    total: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}
    for path in paths:
        file = os.path.join(path, "model.safetensors")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"No model.safetensors in {path}")
        state = load_file(file)
        if not reference:
            reference = state
            total = {key: value.to(torch.float64) for key, value in state.items()}
            continue
        if state.keys() != reference.keys():
            raise ValueError(f"{path} has different tensors from {paths[0]}: can't average them.")
        for key, value in state.items():
            if value.shape != reference[key].shape:
                raise ValueError(f"`{key}` is {tuple(value.shape)} in {path} but {tuple(reference[key].shape)}.")
            total[key] += value.to(torch.float64)
    return {key: (value / len(paths)).to(reference[key].dtype) for key, value in total.items()}


def average_checkpoints(paths: Sequence[str], output_dir: str) -> PreTrainedModel:
    """Average the checkpoints in `paths` and save a loadable model (plus tokenizer and pipeline) to `output_dir`."""
    averaged = average_state_dicts(paths)
    newest = paths[-1]
    model = AutoModelForSeq2SeqLM.from_pretrained(newest)
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    if unexpected or set(missing) - tied:
        raise ValueError(
            f"Averaged weights don't fit the model: missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)}."
        )
    model.tie_weights()
    if any(os.path.isfile(os.path.join(newest, name)) for name in TOKENIZER_FILES):
        save_with_pipeline(model, AutoTokenizer.from_pretrained(newest), output_dir)
    else:
        model.save_pretrained(output_dir)
    for name in TOKENIZER_FILES:  # the checkpoint's own files, byte for byte
        if os.path.isfile(os.path.join(newest, name)):
            shutil.copyfile(os.path.join(newest, name), os.path.join(output_dir, name))
    return model


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: average the last N checkpoints of a run, or the checkpoint folders given."""
    import vanilla_transformer  # noqa: F401  (registers the model so checkpoints load without remote code)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="a run directory (with --last) or checkpoint folders")
    parser.add_argument("--last", type=int, help="average the last N checkpoint-* folders of the run directory")
    parser.add_argument("--output", required=True, help="folder to write the averaged model to")
    options = parser.parse_args(argv)
    if options.last is not None and len(options.paths) != 1:
        parser.error("--last takes exactly one run directory")
    try:  # a user error is one line and exit status 2; VT_DEBUG=1 keeps the traceback
        paths = last_checkpoints(options.paths[0], options.last) if options.last is not None else options.paths
        average_checkpoints(paths, options.output)
    except (ValueError, OSError) as error:
        if debug_tracebacks():
            raise
        parser.error(str(error))
    print(f"Averaged {len(paths)} checkpoints ({', '.join(os.path.basename(p) for p in paths)}) -> {options.output}")


if __name__ == "__main__":
    main()
