"""Shared test set-up: one thread, no Hub, and tiny model configurations."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def tiny_config(**overrides: object):
    """A small VanillaTransformerConfig for fast CPU tests (fields overridable)."""
    from vanilla_transformer import VanillaTransformerConfig

    fields = dict(
        vocab_size=64,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        init_std=None,  # Xavier: larger random weights, so behaviour tests do not compare near-tied logits
    )
    fields.update(overrides)
    return VanillaTransformerConfig(**fields)


def inductor_vectorises() -> bool:
    """Whether torch.compile's CPU code generator has a vector instruction set here (AVX2 or better).

    Without one (an SSE-era CPU, or `ATEN_CPU_CAPABILITY=default`), torch 2.13's Inductor refuses flex attention
    ("not supported for CPU") and writes some kernels that do not build ("'at::vec' has not been declared").
    """
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return bool(pick_vec_isa())


NEEDS_VECTORISING_INDUCTOR = pytest.mark.skipif(
    not inductor_vectorises(), reason="torch.compile on a CPU without AVX2: see conftest.inductor_vectorises"
)


@pytest.fixture
def config():
    return tiny_config()


# Sizes of tiny_config() that tests use in their inputs and expected messages: vocabulary, positional table, width.
VOCAB, MAX_POS, E = 64, 64, 32


def ids(batch: int = 2, length: int = 5, low: int = 3, high: int = VOCAB) -> torch.Tensor:
    """Random token ids of shape (batch, length), the same on every call with the same shape."""
    return torch.randint(low, high, (batch, length), generator=torch.Generator().manual_seed(batch * 100 + length))


SRC, TGT = ids(2, 5), ids(2, 4)


@pytest.fixture(scope="module")
def model():
    """A random tiny model (tiny_config(), seed 0) in eval mode, shared by the tests of one module."""
    from vanilla_transformer import VanillaTransformerForConditionalGeneration

    torch.manual_seed(0)
    return VanillaTransformerForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    """`model` saved with save_pretrained: the folder's path."""
    path = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(path)
    return path


def copy_with_config(checkpoint, tmp_path, **changes: object):
    """A copy of the saved `checkpoint` under `tmp_path` whose config.json has `changes` applied: the copy's path."""
    path = tmp_path / "edited"
    shutil.copytree(checkpoint, path)
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """The offline quick-start (`configs/quickstart.yaml`, unchanged) trained once per test session, in-process.

    Several minutes of CPU: mark tests that use it `@pytest.mark.slow`.

    Returns:
        A namespace with `output_dir` (the saved run folder: model, tokenizer, generation config, model card,
        `all_results.json`, the kept checkpoints), `results` (what `train.main` returns: split, bleu, chrf,
        exact_match, n, samples) and `stdout` (everything the run printed).
    """
    import contextlib
    import io
    import sys
    import types

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    import train

    output_dir = str(tmp_path_factory.mktemp("quickstart") / "run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = train.main([os.path.join(root, "configs", "quickstart.yaml"), f"output_dir={output_dir}"])
    return types.SimpleNamespace(output_dir=output_dir, results=results, stdout=printed.getvalue())
