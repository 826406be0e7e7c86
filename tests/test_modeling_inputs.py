"""Bad input to the model's forward and generate() gets a clear error naming the problem; valid edges pass.

Every case feeds the bad input and checks the error type and message; the checks must not break tracing,
`torch.compile` or generation, which is tested at the end.
"""

import warnings

import pytest
import torch
from conftest import MAX_POS, SRC, TGT, VOCAB, E, ids, tiny_config

from vanilla_transformer import VanillaTransformerForConditionalGeneration, VanillaTransformerModel

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

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
