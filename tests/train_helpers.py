"""Shared pieces of the train.py tests: a tiny run config, running train.py (or its probe), the fake Hub."""

import concurrent.futures
import contextlib
import copy
import os
import shutil
import socket
import subprocess
import sys
from unittest import mock

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "tests", "train_probe.py")

# A few seconds of training on the numbers task: 2+2 layers of width 32, token-budget batches (about 16 per
# epoch), 2 batches accumulated per step, 40 steps = 5 epochs, a checkpoint every 10 steps, no dropout.
TINY_RUN = {
    "model": {
        "model_type": "vanilla_transformer",
        "config": {
            "d_model": 32,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "dropout": 0.0,
            "max_position_embeddings": 64,
            "init_std": None,  # Xavier: learns this tiny task within the tests' few steps
        },
    },
    "data": {
        "source_lang": "de",
        "target_lang": "en",
        "quickstart": {"max_number": 999, "train_size": 192, "validation_size": 16, "test_size": 16},
        "max_source_length": 32,
        "max_target_length": 32,
    },
    "tokenizer": {"vocab_size": 200, "min_frequency": 1},
    "training": {
        "max_tokens": 96,
        "gradient_accumulation_steps": 2,
        "max_steps": 40,
        "learning_rate": 0.003,
        "warmup_steps": 5,
        "logging_steps": 5,
        "eval_steps": None,
        "save_steps": 10,
        "save_total_limit": None,
        "seed": 1,
        "num_threads": 1,
        "eval_batch_size": 16,
    },
    "generation": {"num_beams": 2, "max_new_tokens": 24, "num_samples": 2},
}


def write_config(path: str, output_dir: str, **sections: dict) -> str:
    """Write TINY_RUN (sections updated key by key) with `output_dir` to `path`; returns the path."""
    tree = copy.deepcopy(TINY_RUN)
    for name, values in sections.items():
        tree[name].update(values)
    tree["output_dir"] = output_dir
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(tree, handle)
    return path


def run_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("WORLD_SIZE", None)
    return env


def run_probe(*args: str, env: dict | None = None, processes: int = 1, timeout: int = 300):
    """Run tests/train_probe.py (= train.py + recording) in 1 process, or under accelerate in several."""
    if processes == 1:
        command = [sys.executable, PROBE, *args]
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port), PROBE, *args,
        ]  # fmt: skip
        env = dict(env or run_env(), ACCELERATE_USE_CPU="1")
    return subprocess.run(command, cwd=ROOT, env=env or run_env(), capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def fake_hub(root: str):
    """Capture Hub uploads into `root/REPO_ID/` instead of the network (HF-NOTES section 3)."""
    from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard, RepoUrl
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    commits = []

    def create_repo(self, repo_id, *args, **kwargs):
        os.makedirs(os.path.join(root, repo_id), exist_ok=True)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message="", **kwargs):
        for op in operations:  # copy now: the caller deletes its staging folder afterwards
            out = os.path.join(root, repo_id, op.path_in_repo)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copyfile(op.path_or_fileobj, out)
        commits.append(
            {"repo_id": repo_id, "message": commit_message, "files": sorted(o.path_in_repo for o in operations)}
        )
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/0",
            commit_message=commit_message,
            commit_description="",
            oid="0" * 40,
        )

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, commit_message="", allow_patterns=None,
                      ignore_patterns=None, run_as_future=False, **kwargs):  # fmt: skip
        rel = [os.path.relpath(os.path.join(d, f), folder_path) for d, _, fs in os.walk(folder_path) for f in fs]
        rel = list(filter_repo_objects(rel, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        ops = [CommitOperationAdd(path_in_repo=r, path_or_fileobj=os.path.join(folder_path, r)) for r in rel]
        info = create_commit(self, repo_id, ops, commit_message=commit_message)
        if run_as_future:
            future = concurrent.futures.Future()
            future.set_result(info)
            return future
        return info

    def card_load(cls, path, *args, **kwargs):
        raise EntryNotFoundError("no README")

    with (
        mock.patch.object(HfApi, "create_repo", create_repo),
        mock.patch.object(HfApi, "create_commit", create_commit),
        mock.patch.object(HfApi, "upload_folder", upload_folder),
        mock.patch.object(HfApi, "create_branch", lambda *a, **k: None),
        mock.patch.object(ModelCard, "load", classmethod(card_load)),
    ):
        yield commits
