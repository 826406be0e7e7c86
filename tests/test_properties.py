"""Property tests (hypothesis): the forward pass over random small configs, batch shapes, padding patterns and
attention backends. No crash, no NaN; padded source positions never change the output; future target tokens
never change earlier logits; incremental decoding with a cache gives the logits of a full pass.

Bounded for CI: few examples per property, fixed seed (`derandomize`), no example database.
"""

import itertools

import pytest
import torch
from conftest import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vanilla_transformer import VanillaTransformerForConditionalGeneration

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TOLERANCE = dict(atol=2e-5, rtol=1e-4)


@st.composite
def models(draw: st.DrawFn) -> VanillaTransformerForConditionalGeneration:
    """A random tiny model (heads always divide d_model), in eval mode, on a random attention backend."""
    heads = draw(st.sampled_from([1, 2, 4]))
    decoder_heads = draw(st.sampled_from([1, 2, 4]))
    d_model = max(heads, decoder_heads) * draw(st.sampled_from([2, 4, 6, 8]))  # powers of two: max is the lcm
    config = tiny_config(
        vocab_size=draw(st.integers(8, 40)),
        d_model=d_model,
        encoder_layers=draw(st.integers(1, 2)),
        decoder_layers=draw(st.integers(1, 2)),
        encoder_attention_heads=heads,
        decoder_attention_heads=decoder_heads,
        encoder_ffn_dim=draw(st.sampled_from([8, 24])),
        decoder_ffn_dim=draw(st.sampled_from([8, 24])),
        max_position_embeddings=16,
        normalize_before=draw(st.booleans()),
        scale_embedding=draw(st.booleans()),
        positional_encoding_layout=draw(st.sampled_from(["interleaved", "concatenated"])),
        activation_function=draw(st.sampled_from(["relu", "gelu"])),
        tie_word_embeddings=draw(st.booleans()),
    )
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = VanillaTransformerForConditionalGeneration(config).eval()
    model.set_attn_implementation(draw(st.sampled_from(["eager", "sdpa"])))
    return model


@st.composite
def batches(draw: st.DrawFn, vocab_size: int) -> dict[str, torch.Tensor]:
    """Random ids, a random padding pattern (any positions, at least one real token per row) and targets."""
    batch, source_len, target_len = draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    input_ids = torch.randint(0, vocab_size, (batch, source_len), generator=generator)
    mask = torch.randint(0, 2, (batch, source_len), generator=generator)
    mask[torch.arange(batch), torch.randint(0, source_len, (batch,), generator=generator)] = 1
    decoder_input_ids = torch.randint(0, vocab_size, (batch, target_len), generator=generator)
    return dict(input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_input_ids)


def logits(model: VanillaTransformerForConditionalGeneration, **inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits


@PROPERTY
@given(data=st.data())
def test_finite_and_padding_invariant(data: st.DataObject) -> None:
    """Logits are finite, and rewriting the ids at masked (padded) source positions changes nothing."""
    model = data.draw(models())
    inputs = data.draw(batches(model.config.vocab_size))
    reference = logits(model, **inputs)
    assert reference.shape == (*inputs["decoder_input_ids"].shape, model.config.vocab_size)
    assert torch.isfinite(reference).all()

    noise = torch.randint(0, model.config.vocab_size, inputs["input_ids"].shape)
    rewritten = torch.where(inputs["attention_mask"].bool(), inputs["input_ids"], noise)
    torch.testing.assert_close(logits(model, **{**inputs, "input_ids": rewritten}), reference, **TOLERANCE)


@PROPERTY
@given(data=st.data())
def test_right_padded_row_equals_row_alone(data: st.DataObject) -> None:
    """A right-padded row in a batch gives the logits it gives alone, unpadded (padding and batch-mates invisible)."""
    model = data.draw(models())
    inputs = data.draw(batches(model.config.vocab_size))
    batch, source_len = inputs["input_ids"].shape
    lengths = torch.tensor([data.draw(st.integers(1, source_len)) for _ in range(batch)])
    mask = (torch.arange(source_len)[None, :] < lengths[:, None]).long()
    padded = logits(model, **{**inputs, "attention_mask": mask})
    for row in range(batch):
        alone = logits(
            model,
            input_ids=inputs["input_ids"][row : row + 1, : lengths[row]],
            decoder_input_ids=inputs["decoder_input_ids"][row : row + 1],
        )
        torch.testing.assert_close(padded[row : row + 1], alone, **TOLERANCE)


@PROPERTY
@given(data=st.data())
def test_future_target_tokens_never_change_earlier_logits(data: st.DataObject) -> None:
    model = data.draw(models())
    inputs = data.draw(batches(model.config.vocab_size))
    target_len = inputs["decoder_input_ids"].shape[1]
    cut = data.draw(st.integers(0, target_len - 1))  # positions >= cut are rewritten
    future = inputs["decoder_input_ids"].clone()
    future[:, cut:] = torch.randint(0, model.config.vocab_size, future[:, cut:].shape)
    reference = logits(model, **inputs)
    changed = logits(model, **{**inputs, "decoder_input_ids": future})
    torch.testing.assert_close(changed[:, :cut], reference[:, :cut], **TOLERANCE)


@PROPERTY
@given(data=st.data())
def test_cache_and_no_cache_agree(data: st.DataObject) -> None:
    """Feeding the target in chunks with the cache (as generate() does) gives the logits of one full pass."""
    model = data.draw(models())
    inputs = data.draw(batches(model.config.vocab_size))
    target = inputs["decoder_input_ids"]
    reference = logits(model, **inputs)

    cuts = sorted(
        set(data.draw(st.lists(st.integers(1, target.shape[1] - 1), max_size=3)) if target.shape[1] > 1 else [])
    )
    bounds = [0, *cuts, target.shape[1]]
    past, encoder_outputs, pieces = None, None, []
    with torch.no_grad():
        for start, end in itertools.pairwise(bounds):
            out = model(
                attention_mask=inputs["attention_mask"],
                input_ids=inputs["input_ids"] if encoder_outputs is None else None,
                encoder_outputs=encoder_outputs,
                decoder_input_ids=target[:, start:end],
                cache=past,
                use_cache=True,
            )
            past = out.cache
            encoder_outputs = (out.encoder_last_hidden_state,)
            pieces.append(out.logits)
    assert past.get_seq_length() == target.shape[1]
    torch.testing.assert_close(torch.cat(pieces, dim=1), reference, **TOLERANCE)
