"""Run `train.py` with a probe: record each rank's batches and final weights, optionally SIGKILL mid-run.

Used by tests/test_train.py as `python tests/train_probe.py ARGS...` or under `accelerate launch`. Writes
`OUTPUT_DIR/probe-rank{R}.json` with the source rows of every training batch (padding stripped), the md5 of the
final parameters, the global step and the log history. With `PROBE_KILL_AT_STEP=N` the process kills itself
with SIGKILL when optimizer step N begins (a checkpoint written at an earlier step survives); with
`PROBE_KILL_AFTER_TRAINING=1` it does so when training has ended, after the last checkpoint and before the final
evaluation and save.
"""

import hashlib
import json
import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from vanilla_transformer import training  # noqa: E402

seen: list[list[list[int]]] = []
kill_at = int(os.environ.get("PROBE_KILL_AT_STEP", "0"))
kill_after_training = os.environ.get("PROBE_KILL_AFTER_TRAINING") == "1"
original_step = training.TranslationTrainer.training_step
original_train = training.TranslationTrainer.train


def probed_step(self, model, inputs, *args, **kwargs):
    if kill_at and self.state.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    pad = self.processing_class.pad_token_id
    seen.append([[t for t in row if t != pad] for row in inputs["input_ids"].tolist()])
    return original_step(self, model, inputs, *args, **kwargs)


def probed_train(self, *args, **kwargs):
    result = original_train(self, *args, **kwargs)
    if kill_after_training:
        os.kill(os.getpid(), signal.SIGKILL)
    flat = torch.cat([p.detach().flatten().float() for p in self.model.parameters()])
    record = {
        "batches": seen,
        "params_md5": hashlib.md5(flat.numpy().tobytes()).hexdigest(),
        "global_step": self.state.global_step,
        "log_history": self.state.log_history,
        "world_size": self.args.world_size,
    }
    with open(os.path.join(self.args.output_dir, f"probe-rank{self.args.process_index}.json"), "w") as handle:
        json.dump(record, handle)
    return result


training.TranslationTrainer.training_step = probed_step
training.TranslationTrainer.train = probed_train

if __name__ == "__main__":
    train.main(sys.argv[1:])
