"""Bad input to the model, its config or its checkpoint gets a clear error naming the problem (issue 4).

Every case feeds the bad input and checks the error type and message; the checks must not break tracing,
`torch.compile` or generation, which is tested at the end.
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

from vanilla_transformer import (
    VanillaTransformerConfig,
    VanillaTransformerForConditionalGeneration,
    VanillaTransformerModel,
)

ROOT = Path(__file__).resolve().parents[1]
VOCAB, MAX_POS, E = 64, 64, 32


@pytest.fixture(scope="module")
def model() -> VanillaTransformerForConditionalGeneration:
    torch.manual_seed(0)
    return VanillaTransformerForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(path)
    return path


def ids(batch: int = 2, length: int = 5, low: int = 3, high: int = VOCAB) -> torch.Tensor:
    return torch.randint(low, high, (batch, length), generator=torch.Generator().manual_seed(batch * 100 + length))


SRC, TGT = ids(2, 5), ids(2, 4)


# ---------------------------------------------------------------------------------------------------------
# Forward: one row per bad input -> (kwargs, error type, message pattern).
# ---------------------------------------------------------------------------------------------------------
BAD_FORWARD = {
    "negative source id": (
        dict(input_ids=SRC - 10, decoder_input_ids=TGT),
        ValueError,
        r"`input_ids` holds token id -\d",
    ),
    "source id >= vocab": (
        dict(input_ids=SRC.clone().index_fill_(1, torch.tensor([2]), VOCAB), decoder_input_ids=TGT),
        ValueError,
        r"`input_ids` holds token id 64, outside the vocabulary \[0, 64\)",
    ),
    "decoder id >= vocab": (
        dict(input_ids=SRC, decoder_input_ids=TGT + 100),
        ValueError,
        r"`decoder_input_ids` holds token id 1\d\d, outside the vocabulary",
    ),
    "negative decoder id": (
        dict(input_ids=SRC, decoder_input_ids=TGT * 0 - 1),
        ValueError,
        r"`decoder_input_ids`.* -1",
    ),
    "label id >= vocab": (
        dict(input_ids=SRC, labels=TGT + VOCAB),
        ValueError,
        r"`labels` holds token id \d+, outside",
    ),
    "labels all -100": (
        dict(input_ids=SRC, labels=torch.full_like(TGT, -100)),
        ValueError,
        r"`labels` holds no target token \(every position is -100\)",
    ),
    "negative label other than -100": (
        dict(input_ids=SRC, labels=TGT.clone().fill_(-5)),
        ValueError,
        r"`labels` holds token id -5",
    ),
    "source longer than the table": (
        dict(input_ids=ids(1, MAX_POS + 1), decoder_input_ids=TGT[:1]),
        ValueError,
        r"encoder input of length 65 is longer than `max_position_embeddings` \(64\)",
    ),
    "target longer than the table": (
        dict(input_ids=SRC, decoder_input_ids=ids(2, MAX_POS + 1)),
        ValueError,
        r"target of length 65 is longer than `max_position_embeddings` \(64\)",
    ),
    "labels longer than the table": (
        dict(input_ids=SRC, labels=ids(2, MAX_POS + 1)),
        ValueError,
        r"target of length 65 is longer than `max_position_embeddings`",
    ),
    "attention_mask shape": (
        dict(input_ids=SRC, attention_mask=torch.ones(2, 4, dtype=torch.long), decoder_input_ids=TGT),
        ValueError,
        r"`attention_mask` has shape \(2, 4\) but the input has shape \(2, 5\)",
    ),
    "attention_mask batch": (
        dict(input_ids=SRC, attention_mask=torch.ones(3, 5, dtype=torch.long), decoder_input_ids=TGT),
        ValueError,
        r"`attention_mask` has shape \(3, 5\)",
    ),
    "decoder_attention_mask shape": (
        dict(input_ids=SRC, decoder_input_ids=TGT, decoder_attention_mask=torch.ones(2, 7, dtype=torch.long)),
        ValueError,
        r"`decoder_attention_mask` has shape \(2, 7\) but the input has shape \(2, 4\)",
    ),
    "row masking every source token": (
        dict(input_ids=SRC, attention_mask=torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]), decoder_input_ids=TGT),
        ValueError,
        r"`attention_mask` masks out every token of batch row 1",
    ),
    "empty batch": (
        dict(input_ids=SRC[:0], decoder_input_ids=TGT[:0]),
        ValueError,
        r"`input_ids` is empty \(shape \(0, 5\)\)",
    ),
    "zero-length source": (dict(input_ids=SRC[:, :0], decoder_input_ids=TGT), ValueError, r"`input_ids` is empty"),
    "zero-length target": (
        dict(input_ids=SRC, decoder_input_ids=TGT[:, :0]),
        ValueError,
        r"`decoder_input_ids` is empty \(shape \(2, 0\)\)",
    ),
    "zero-length labels": (dict(input_ids=SRC, labels=TGT[:, :0]), ValueError, r"is empty"),
    "empty inputs_embeds": (
        dict(inputs_embeds=torch.zeros(2, 0, E), decoder_input_ids=TGT),
        ValueError,
        r"`inputs_embeds` is empty",
    ),
    "float ids": (
        dict(input_ids=SRC.float(), decoder_input_ids=TGT),
        TypeError,
        r"`input_ids` must hold integer token ids, got dtype torch.float32",
    ),
    "float decoder ids": (
        dict(input_ids=SRC, decoder_input_ids=TGT.double()),
        TypeError,
        r"`decoder_input_ids` must hold integer token ids",
    ),
    "bool ids": (
        dict(input_ids=SRC > 10, decoder_input_ids=TGT),
        TypeError,
        r"integer token ids, got dtype torch.bool",
    ),
    "float labels": (dict(input_ids=SRC, labels=TGT.float()), TypeError, r"`labels` must hold integer token ids"),
    "1-D ids": (
        dict(input_ids=SRC[0], decoder_input_ids=TGT),
        ValueError,
        r"`input_ids` must have shape \(batch, length\), got \(5,\)",
    ),
    "both input_ids and inputs_embeds": (
        dict(input_ids=SRC, inputs_embeds=torch.zeros(2, 5, E), decoder_input_ids=TGT),
        ValueError,
        r"Pass exactly one of `input_ids` and `inputs_embeds`",
    ),
    "neither input_ids nor inputs_embeds": (
        dict(decoder_input_ids=TGT),
        ValueError,
        r"Pass exactly one of `input_ids` and `inputs_embeds`",
    ),
    "both decoder_input_ids and decoder_inputs_embeds": (
        dict(input_ids=SRC, decoder_input_ids=TGT, decoder_inputs_embeds=torch.zeros(2, 4, E)),
        ValueError,
        r"Pass exactly one of `decoder_input_ids` and `decoder_inputs_embeds`",
    ),
    "inputs_embeds of the wrong width": (
        dict(inputs_embeds=torch.zeros(2, 5, E + 1), decoder_input_ids=TGT),
        ValueError,
        r"`inputs_embeds` must have shape \(batch, length, 32\), got \(2, 5, 33\)",
    ),
    "labels shorter than decoder_input_ids": (
        dict(input_ids=SRC, decoder_input_ids=TGT, labels=TGT[:, :3]),
        ValueError,
        r"`labels` has shape \(2, 3\) but the decoder input has shape \(2, 4\)",
    ),
    "labels longer than decoder_inputs_embeds": (
        dict(input_ids=SRC, decoder_inputs_embeds=torch.zeros(2, 3, E), labels=TGT),
        ValueError,
        r"`labels` has shape \(2, 4\) but the decoder input has shape \(2, 3\)",
    ),
    "encoder_outputs of the wrong width": (
        dict(encoder_outputs=(torch.zeros(2, 5, E + 1),), decoder_input_ids=TGT),
        ValueError,
        r"`encoder_hidden_states` must have shape \(batch, source length, 32\), got \(2, 5, 33\)",
    ),
    "decoder batch differs from encoder batch": (
        dict(input_ids=SRC, decoder_input_ids=TGT[:1]),
        ValueError,
        r"The decoder batch \(1\) and the encoder batch \(2\) differ",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FORWARD))
def test_bad_forward_input_is_named(model, case: str) -> None:
    kwargs, error, pattern = BAD_FORWARD[case]
    with pytest.raises(error, match=pattern):
        model(**kwargs)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_checks_hold_for_every_attention_backend(attn_implementation: str) -> None:
    model = VanillaTransformerForConditionalGeneration(tiny_config()).eval()
    model.set_attn_implementation(attn_implementation)
    with pytest.raises(ValueError, match="masks out every token of batch row 0"):
        model(input_ids=SRC, attention_mask=torch.zeros(2, 5, dtype=torch.long), decoder_input_ids=TGT)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=SRC + VOCAB, decoder_input_ids=TGT)


def test_base_model_without_decoder_input_is_named() -> None:
    model = VanillaTransformerModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="Pass `decoder_input_ids`"):
        model(input_ids=SRC)


def test_decoder_without_encoder_output_is_named(model) -> None:
    with pytest.raises(ValueError, match="needs `encoder_hidden_states`"):
        model.get_decoder()(input_ids=TGT)


def test_valid_edges_are_accepted(model) -> None:
    """The checks reject only what is wrong: full-length inputs, ids 0 and V-1, and -100 labels pass."""
    src = ids(1, MAX_POS)
    src[0, 0], src[0, 1] = 0, VOCAB - 1
    labels = ids(1, MAX_POS)
    labels[0, -10:] = -100
    out = model(input_ids=src, labels=labels)
    assert torch.isfinite(out.loss)
    # -100 positions are left out of the loss: the loss equals the one over the kept prefix only.
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)[:, :-10]
    prefix = model(input_ids=src, decoder_input_ids=decoder_input_ids, labels=labels[:, :-10])
    torch.testing.assert_close(out.loss, prefix.loss)
    # A row that pads most, but not all, of its source is fine.
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.isfinite(model(input_ids=SRC, attention_mask=mask, decoder_input_ids=TGT).logits).all()


# ---------------------------------------------------------------------------------------------------------
# Generation: a clear error when the output outgrows the positional table; everything up to it works.
# ---------------------------------------------------------------------------------------------------------
def test_generate_beyond_the_table_is_named(model) -> None:
    with pytest.raises(
        ValueError, match=r"target position 64 .* beyond `max_position_embeddings` \(64\).*max_new_tokens"
    ):
        model.generate(input_ids=SRC, max_new_tokens=MAX_POS + 5, min_new_tokens=MAX_POS + 5, do_sample=False)


def test_generate_fills_the_table_exactly(model) -> None:
    """`max_new_tokens == max_position_embeddings` is the longest output that fits (start token included)."""
    out = model.generate(input_ids=SRC[:1], max_new_tokens=MAX_POS, min_new_tokens=MAX_POS, do_sample=False)
    assert out.shape == (1, MAX_POS + 1)


def test_generate_with_bad_source_is_named(model) -> None:
    with pytest.raises(ValueError, match="masks out every token of batch row 1"):
        model.generate(input_ids=SRC, attention_mask=torch.tensor([[1] * 5, [0] * 5]), max_new_tokens=3)
    with pytest.raises(ValueError, match="encoder input of length 65"):
        model.generate(input_ids=ids(1, MAX_POS + 1), max_new_tokens=3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate(input_ids=SRC - 10, max_new_tokens=3)


# ---------------------------------------------------------------------------------------------------------
# The checks do not break tracing or torch.compile.
# ---------------------------------------------------------------------------------------------------------
class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor):
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
            return_dict=False,
        )[0]


MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def test_torch_compile_forward_matches_eager(model) -> None:
    torch._dynamo.reset()
    expected = model(input_ids=SRC, attention_mask=MASK, decoder_input_ids=TGT).logits
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    got = compiled(input_ids=SRC, attention_mask=MASK, decoder_input_ids=TGT, use_cache=False).logits
    torch.testing.assert_close(got, expected)
    # Shape checks still run when compiled (without fullgraph, dynamo falls back to eager at the raise).
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(2, 4\) but the input has shape \(2, 5\)"):
        torch.compile(model, backend="eager")(
            input_ids=SRC, attention_mask=MASK[:, :4], decoder_input_ids=TGT, use_cache=False
        )
    torch._dynamo.reset()


def test_export_and_jit_trace_match_eager(model) -> None:
    expected = _Logits(model)(SRC, MASK, TGT)
    exported = torch.export.export(_Logits(model), (SRC, MASK, TGT))
    torch.testing.assert_close(exported.module()(SRC, MASK, TGT), expected)
    with warnings.catch_warnings():  # traced shape checks become constants; torch warns about that
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(_Logits(model), (SRC, MASK, TGT), check_trace=False)
    torch.testing.assert_close(traced(SRC, MASK, TGT), expected)


# ---------------------------------------------------------------------------------------------------------
# Configs that do not fit.
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (dict(d_model="32"), r"Field 'd_model' expected int, got str"),
        (dict(d_model=32.0), r"Field 'd_model' expected int, got float"),
        (dict(normalize_before="yes"), r"Field 'normalize_before' expected bool, got str"),
        (dict(dropout="0.1"), r"Field 'dropout'"),
        (dict(vocab_size=0), r"`vocab_size` must be a positive integer, got 0"),
        (dict(encoder_attention_heads=5), r"`d_model` \(32\) must be divisible by `encoder_attention_heads` \(5\)"),
        (dict(activation_function="relu6x"), r"Unknown `activation_function` 'relu6x'"),
        (dict(dropout=1.0), r"`dropout` must be in \[0, 1\), got 1.0"),
        (dict(positional_encoding_layout="rotary"), r"Unknown `positional_encoding_layout` 'rotary'"),
        (dict(pad_token_id=64), r"`pad_token_id` \(64\) is outside the vocabulary \[0, 64\)"),
        (dict(decoder_start_token_id=-1), r"`decoder_start_token_id` \(-1\) is outside the vocabulary"),
        (dict(eos_token_id=[2, 99]), r"`eos_token_id` \(99\) is outside the vocabulary"),
        (dict(model_type="bart"), r"`model_type` 'bart', but VanillaTransformerConfig is 'vanilla_transformer'"),
    ],
)
def test_bad_config_is_named(overrides: dict, pattern: str) -> None:
    with pytest.raises(StrictDataclassError, match=pattern):
        tiny_config(**overrides)


def _copy_with_config(checkpoint: Path, tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "edited"
    shutil.copytree(checkpoint, path)
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_model_built_from_another_config_class_is_named() -> None:
    from transformers import BartConfig

    with pytest.raises(TypeError, match=r"needs a VanillaTransformerConfig, got BartConfig \(model_type 'bart'\)"):
        VanillaTransformerForConditionalGeneration(BartConfig(d_model=32, encoder_layers=1, decoder_layers=1))


def test_config_json_with_wrong_field_type_is_named(checkpoint, tmp_path) -> None:
    path = _copy_with_config(checkpoint, tmp_path, d_model="32")
    with pytest.raises(StrictDataclassError, match=r"Field 'd_model' expected int, got str"):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)
    with pytest.raises(StrictDataclassError, match=r"Field 'd_model' expected int, got str"):
        AutoConfig.from_pretrained(path)


def test_checkpoint_of_another_model_type_is_named(checkpoint, tmp_path) -> None:
    path = _copy_with_config(checkpoint, tmp_path, model_type="bart")
    with pytest.raises(StrictDataclassError, match=r"`model_type` 'bart'.*load it with the config class of 'bart'"):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)
    with pytest.raises(StrictDataclassError, match=r"`model_type` 'bart'"):
        VanillaTransformerConfig.from_pretrained(path)


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


def test_remote_code_needs_trust_remote_code(checkpoint, tmp_path) -> None:
    """In a process without the package, the saved model code is not run unless `trust_remote_code=True`
    (tests/test_remote_code.py checks that it loads with the flag)."""
    script = (
        "import sys\n"
        "from transformers import AutoModelForSeq2SeqLM\n"
        "try:\n"
        f"    AutoModelForSeq2SeqLM.from_pretrained({str(checkpoint)!r})\n"
        "except ValueError as e:\n"
        "    assert 'trust_remote_code=True' in str(e), e\n"
        "    print('REFUSED')\n"
        "ran = [m for m in sys.modules if m.endswith('modeling_vanilla_transformer') or m == 'vanilla_transformer']\n"
        "print('IMPORTED', ran)\n"
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "REFUSED" in run.stdout
    assert "IMPORTED []" in run.stdout
