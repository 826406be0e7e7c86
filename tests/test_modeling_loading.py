"""Loading a checkpoint: weights of another size or depth are refused, corrupt files are named, safetensors only."""

import ast
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SRC, TGT, VOCAB, E

from vanilla_transformer import VanillaTransformerForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]


def test_weights_of_another_size_are_refused(model, checkpoint) -> None:
    """transformers' default (`ignore_mismatched_sizes=False`) raises and logs a report naming each weight."""
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        VanillaTransformerForConditionalGeneration.from_pretrained(checkpoint, d_model=64, encoder_ffn_dim=128)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        VanillaTransformerForConditionalGeneration.from_pretrained(checkpoint, vocab_size=VOCAB + 16)
    # Opting in re-initialises only the mismatched weights; the rest is loaded.
    loaded = VanillaTransformerForConditionalGeneration.from_pretrained(
        checkpoint, vocab_size=VOCAB + 16, ignore_mismatched_sizes=True
    )
    assert loaded.model.shared.weight.shape == (VOCAB + 16, E)
    torch.testing.assert_close(
        loaded.model.encoder.layers[0].ffn.fc1.weight, model.model.encoder.layers[0].ffn.fc1.weight
    )


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            dict(encoder_layers=3),
            r"does not fit .*: 16 weight\(s\) of the model are not in it \['model.encoder.layers.2",
        ),
        (dict(decoder_layers=1), r"does not fit .*: 0 weight\(s\) .* and 26 of its weights are not in the model"),
    ],
)
def test_checkpoint_of_another_depth_is_refused(model, checkpoint, overrides: dict, pattern: str) -> None:
    with pytest.raises(RuntimeError, match=pattern):
        VanillaTransformerForConditionalGeneration.from_pretrained(checkpoint, **overrides)
    loaded, info = VanillaTransformerForConditionalGeneration.from_pretrained(
        checkpoint, output_loading_info=True, **overrides
    )
    assert info["missing_keys"] or info["unexpected_keys"]


def test_an_explicit_state_dict_is_taken_as_given(model) -> None:
    """`from_pretrained(None, config=..., state_dict=...)` is the library's way to build from given weights: what the
    dict lacks is initialised as in a fresh model (transformers' own tests load with `state_dict={}`)."""
    torch.manual_seed(0)
    fresh = VanillaTransformerForConditionalGeneration(model.config)
    torch.manual_seed(0)
    empty = VanillaTransformerForConditionalGeneration.from_pretrained(None, config=model.config, state_dict={})
    assert not any(p.device.type == "meta" for p in empty.parameters())
    pe = empty.model.encoder.embed_positions
    torch.testing.assert_close(pe.pe, pe.create())  # the non-persistent sinusoid table is rebuilt
    assert empty.lm_head.weight is empty.model.shared.weight  # tied
    assert set(empty.state_dict()) == set(fresh.state_dict())
    given = VanillaTransformerForConditionalGeneration.from_pretrained(
        None, config=model.config, state_dict=model.state_dict()
    ).eval()
    torch.testing.assert_close(
        given(input_ids=SRC, decoder_input_ids=TGT).logits, model(input_ids=SRC, decoder_input_ids=TGT).logits
    )


def test_matching_checkpoint_loads(model, checkpoint) -> None:
    loaded = VanillaTransformerForConditionalGeneration.from_pretrained(checkpoint).eval()
    torch.testing.assert_close(
        loaded(input_ids=SRC, decoder_input_ids=TGT).logits, model(input_ids=SRC, decoder_input_ids=TGT).logits
    )


# ---------------------------------------------------------------------------------------------------------
# Corrupt checkpoints; safetensors only; remote code only when trusted.
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated half", "truncated header", "garbage", "empty"])
def test_corrupt_safetensors_is_named(checkpoint, tmp_path, damage: str) -> None:
    path = tmp_path / "damaged"
    shutil.copytree(checkpoint, path)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {
            "truncated half": data[: len(data) // 2],
            "truncated header": data[:5],
            "garbage": b"\x07" * 4096,
            "empty": b"",
        }[damage]
    )
    with pytest.raises(
        OSError, match=re.escape(repr(str(path))) + r" are not a readable safetensors file \(corrupt or truncated"
    ):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)


def test_truncated_config_json_is_named(checkpoint, tmp_path) -> None:
    path = tmp_path / "damaged"
    shutil.copytree(checkpoint, path)
    (path / "config.json").write_text((checkpoint / "config.json").read_text()[:50])
    with pytest.raises(OSError, match=r"config.json' is not a valid JSON file"):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)


def test_pickled_weights_are_not_loaded_by_default(model, checkpoint, tmp_path) -> None:
    path = tmp_path / "pickled"
    shutil.copytree(checkpoint, path)
    (path / "model.safetensors").unlink()
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    with pytest.raises(OSError, match="no file named model.safetensors"):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)


def _calls(tree: ast.AST, module: str, attribute: str):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == attribute
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == module
        ):
            yield node


def _our_python_files() -> list[Path]:
    files = sorted((ROOT / "src").rglob("*.py")) + sorted(ROOT.glob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    assert any(f.name == "modeling_vanilla_transformer.py" for f in files)
    return files


def _unsafe_calls(source: str, where: str) -> list[str]:
    """`torch.load` without `weights_only=True`, `pickle.load(s)` and hard-coded `trust_remote_code=True`."""
    problems = []
    tree = ast.parse(source, filename=where)
    for call in _calls(tree, "torch", "load"):
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in call.keywords
        )
        if not safe:
            problems.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
    for name in ("load", "loads"):
        for call in _calls(tree, "pickle", name):
            problems.append(f"{where}:{call.lineno}: pickle.{name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
            if isinstance(node.value, ast.Constant) and node.value.value is True:
                problems.append(f"{where}:{node.value.lineno}: trust_remote_code=True hard-coded")
    return problems


def test_the_scan_finds_unsafe_calls() -> None:
    bad = "torch.load(f)\ntorch.load(f, weights_only=False)\npickle.loads(b)\nf(p, trust_remote_code=True)\n"
    assert len(_unsafe_calls(bad, "bad.py")) == 4
    assert _unsafe_calls("torch.load(f, map_location='cpu', weights_only=True)\n", "good.py") == []


def test_no_unsafe_deserialisation_in_our_code() -> None:
    """Scan src/, train.py and bench/: `torch.load` only with `weights_only=True`, no `pickle.load(s)`, and
    `trust_remote_code=True` never hard-coded (it comes from the user)."""
    problems = []
    for file in _our_python_files():
        problems += _unsafe_calls(file.read_text(), str(file.relative_to(ROOT)))
    assert not problems, "\n".join(problems)
