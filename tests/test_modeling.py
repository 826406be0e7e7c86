"""Behaviour of the encoder-decoder: the three kinds of attention, masks, encodings, loss, ties, save/load."""

import json
import math

import pytest
import torch
from conftest import NEEDS_VECTORISING_INDUCTOR, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from vanilla_transformer import (
    VanillaTransformerConfig,
    VanillaTransformerForConditionalGeneration,
    VanillaTransformerModel,
    shift_tokens_right,
)
from vanilla_transformer.modeling_vanilla_transformer import VanillaTransformerSinusoidalPositionalEncoding

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

# A worked example: a 4-token source and the decoder input "<start> I love easy courses".
PAD, START, END = 0, 1, 2
VOCAB = {"<pad>": PAD, "<start>": START, "<end>": END, "I": 3, "love": 4, "easy": 5, "courses": 6}
SOURCE = torch.tensor([[7, 8, 9, 10]])  # 4 source tokens
TARGET_IN = torch.tensor([[VOCAB[w] for w in "<start> I love easy courses".split()]])  # 5 decoder inputs


def build(config: VanillaTransformerConfig, attn: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    model = VanillaTransformerForConditionalGeneration(config)
    model.set_attn_implementation(attn)
    return model.eval()


def random_batch(config: VanillaTransformerConfig, batch: int = 3, src: int = 7, tgt: int = 6, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, (batch, src), generator=gen)
    decoder_input_ids = torch.randint(3, config.vocab_size, (batch, tgt), generator=gen)
    decoder_input_ids[:, 0] = config.decoder_start_token_id
    return input_ids, decoder_input_ids


# ------------------------------------------------------------------------------------------------------------
# The worked example (d_model = 512): three kinds of attention.
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worked_example():
    config = tiny_config(vocab_size=16, d_model=512, encoder_attention_heads=8, decoder_attention_heads=8)
    model = build(config, attn="eager")
    source5 = torch.tensor([[7, 8, 9, 10, 11]])  # "A B C D E" for the encoder self-attention example
    with torch.no_grad():
        out = model(input_ids=SOURCE, decoder_input_ids=TARGET_IN, output_attentions=True)
        enc5 = model.model.encoder(input_ids=source5, output_attentions=True)
    return config, out, enc5


def test_cross_attention_is_5_by_4_and_rows_sum_to_one(worked_example) -> None:
    config, out, _ = worked_example
    assert len(out.cross_attentions) == config.decoder_layers
    for weights in out.cross_attentions:
        assert weights.shape == (1, 8, 5, 4)  # (B, h, target 5, source 4)
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 8, 5), atol=1e-5, rtol=0)
        assert bool((weights > 0).all())  # every target word looks at every source word


def test_decoder_self_attention_is_exactly_zero_above_the_diagonal(worked_example) -> None:
    config, out, _ = worked_example
    above = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    assert len(out.decoder_attentions) == config.decoder_layers
    for weights in out.decoder_attentions:
        assert weights.shape == (1, 8, 5, 5)
        assert bool((weights[..., above] == 0).all())  # "love" never sees "easy" or "courses"
        assert bool((weights[..., ~above] > 0).all())  # ... but sees "<start>", "I" and itself
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 8, 5), atol=1e-5, rtol=0)
    # "<start>" can only attend to itself.
    assert bool((out.decoder_attentions[0][0, :, 0, 0] == 1).all())


def test_encoder_self_attention_is_bidirectional(worked_example) -> None:
    config, _, enc5 = worked_example
    assert len(enc5.attentions) == config.encoder_layers
    for weights in enc5.attentions:
        assert weights.shape == (1, 8, 5, 5)
        token_c = weights[0, :, 2, :]  # token 3 of 5 ("C") attends to A, B, D, E and itself
        assert bool((token_c > 0).all())
        torch.testing.assert_close(token_c.sum(-1), torch.ones(8), atol=1e-5, rtol=0)


def test_output_hidden_states_and_attentions_of_every_stack() -> None:
    config = tiny_config(encoder_layers=3, decoder_layers=2)
    model = build(config, attn="eager")
    input_ids, decoder_input_ids = random_batch(config, src=7, tgt=5)
    out = model(
        input_ids=input_ids, decoder_input_ids=decoder_input_ids, output_hidden_states=True, output_attentions=True
    )
    assert len(out.encoder_hidden_states) == 4 and len(out.decoder_hidden_states) == 3  # N + 1 (embeddings first)
    assert len(out.encoder_attentions) == 3 and len(out.decoder_attentions) == 2 and len(out.cross_attentions) == 2
    torch.testing.assert_close(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)
    assert out.encoder_attentions[0].shape == (3, 4, 7, 7)
    assert out.cross_attentions[0].shape == (3, 4, 5, 7)
    # The last decoder hidden state is what the output projection reads.
    torch.testing.assert_close(model.lm_head(out.decoder_hidden_states[-1]), out.logits)


def test_output_attentions_with_sdpa_warns_and_names_the_fix() -> None:
    """As transformers' own models: sdpa computes no weights, so the library warns (naming eager) and records none."""
    from transformers.integrations import sdpa_attention
    from transformers.testing_utils import CaptureLogger, LoggingLevel
    from transformers.utils import logging

    config = tiny_config()
    sdpa, eager = build(config, attn="sdpa"), build(tiny_config(), attn="eager")
    input_ids, decoder_input_ids = random_batch(config)
    sdpa_attention.logger.warning_once.cache_clear()
    with LoggingLevel(logging.WARNING), CaptureLogger(sdpa_attention.logger) as captured:
        out = sdpa(input_ids=input_ids, decoder_input_ids=decoder_input_ids, output_attentions=True)
    assert "set your attention to `eager`" in captured.out
    assert out.encoder_attentions == out.decoder_attentions == out.cross_attentions == ()
    reference = eager(input_ids=input_ids, decoder_input_ids=decoder_input_ids, output_attentions=True)
    assert len(reference.cross_attentions) == config.decoder_layers
    torch.testing.assert_close(out.logits, reference.logits, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Masks: the decoder cannot see the future, padding changes nothing, the source matters.
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_before", [False, True])
def test_changing_a_future_target_token_leaves_earlier_outputs_unchanged(normalize_before: bool) -> None:
    config = tiny_config(normalize_before=normalize_before)
    model = build(config)
    input_ids, decoder_input_ids = random_batch(config, tgt=8)
    changed = decoder_input_ids.clone()
    changed[:, 5] = (changed[:, 5] + 7) % (config.vocab_size - 3) + 3
    with torch.no_grad():
        before = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
        after = model(input_ids=input_ids, decoder_input_ids=changed).logits
    torch.testing.assert_close(after[:, :5], before[:, :5], atol=1e-6, rtol=0)
    assert (after[:, 5:] - before[:, 5:]).abs().amax() > 1e-3  # the changed position and later ones do move


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_padded_source_positions_change_nothing(attn: str) -> None:
    config = tiny_config()
    model = build(config, attn=attn)
    input_ids, decoder_input_ids = random_batch(config, batch=2, src=9)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 6:] = 0  # row 0: 6 real tokens then 3 pads
    attention_mask[1, 8:] = 0
    other = input_ids.clone()
    other[attention_mask == 0] = torch.tensor([4, 5, 6, 7])  # different ids in the padded slots
    with torch.no_grad():
        a = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        b = model(input_ids=other, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-6, rtol=0)
    real = attention_mask.bool()
    torch.testing.assert_close(b.encoder_last_hidden_state[real], a.encoder_last_hidden_state[real], atol=1e-6, rtol=0)
    # A padded row gives the same result as the unpadded sequence on its own.
    with torch.no_grad():
        alone = model(input_ids=input_ids[:1, :6], decoder_input_ids=decoder_input_ids[:1]).logits
    torch.testing.assert_close(alone, a.logits[:1], atol=1e-5, rtol=1e-5)


def test_changing_the_source_changes_the_output() -> None:
    config = tiny_config()
    model = build(config)
    input_ids, decoder_input_ids = random_batch(config)
    other = input_ids.clone()
    other[:, 2] = (other[:, 2] + 5) % (config.vocab_size - 3) + 3
    with torch.no_grad():
        a = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
        b = model(input_ids=other, decoder_input_ids=decoder_input_ids).logits
    # Every target position, the first included, sees the source through cross-attention.
    assert bool(((a - b).abs().amax(-1) > 1e-4).all())


def test_decoder_padding_mask_hides_padded_target_positions() -> None:
    config = tiny_config()
    model = build(config)
    input_ids, decoder_input_ids = random_batch(config, batch=1, tgt=6)
    left_padded = torch.cat([torch.full((1, 2), PAD), decoder_input_ids], dim=1)
    other_pads = left_padded.clone()
    other_pads[:, :2] = torch.tensor([9, 11])
    mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a = model(input_ids=input_ids, decoder_input_ids=left_padded, decoder_attention_mask=mask).logits
        b = model(input_ids=input_ids, decoder_input_ids=other_pads, decoder_attention_mask=mask).logits
        unmasked = model(input_ids=input_ids, decoder_input_ids=other_pads).logits
    torch.testing.assert_close(b[:, 2:], a[:, 2:], atol=1e-6, rtol=0)
    assert (unmasked[:, 2:] - a[:, 2:]).abs().amax() > 1e-4  # without the mask the pads would be seen


# ------------------------------------------------------------------------------------------------------------
# Section 3.4 / 3.5: embeddings x sqrt(d_model) + sinusoidal positional encoding.
# ------------------------------------------------------------------------------------------------------------
def test_sinusoidal_table_matches_the_paper_formula() -> None:
    d, n = 16, 50
    table = VanillaTransformerSinusoidalPositionalEncoding(n, d).pe
    for pos in range(n):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_concatenated_layout_is_a_permutation_of_the_interleaved_table() -> None:
    d, n = 12, 20
    interleaved = VanillaTransformerSinusoidalPositionalEncoding(n, d, "interleaved").pe
    concatenated = VanillaTransformerSinusoidalPositionalEncoding(n, d, "concatenated").pe
    torch.testing.assert_close(concatenated, torch.cat([interleaved[:, 0::2], interleaved[:, 1::2]], dim=-1))


@pytest.mark.parametrize("scale_embedding", [True, False])
def test_encoder_input_is_scaled_embedding_plus_positional_encoding(scale_embedding: bool) -> None:
    config = tiny_config(scale_embedding=scale_embedding)
    model = build(config)
    input_ids, decoder_input_ids = random_batch(config, src=9, tgt=4)
    out = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, output_hidden_states=True)
    scale = math.sqrt(config.d_model) if scale_embedding else 1.0
    pe = VanillaTransformerSinusoidalPositionalEncoding(config.max_position_embeddings, config.d_model).pe
    expected_src = model.model.shared(input_ids) * scale + pe[:9]
    expected_tgt = model.model.shared(decoder_input_ids) * scale + pe[:4]
    torch.testing.assert_close(out.encoder_hidden_states[0], expected_src)
    torch.testing.assert_close(out.decoder_hidden_states[0], expected_tgt)


def test_sequences_longer_than_the_table_are_rejected() -> None:
    config = tiny_config(max_position_embeddings=8)
    model = build(config)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.full((1, 9), 5), decoder_input_ids=torch.full((1, 3), 5))


# ------------------------------------------------------------------------------------------------------------
# Post-norm (the paper) and pre-norm (`normalize_before`).
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_before", [False, True])
def test_encoder_layer_computes_the_configured_residual_form(normalize_before: bool) -> None:
    config = tiny_config(normalize_before=normalize_before)
    model = build(config, attn="eager")
    layer = model.model.encoder.layers[0]
    x = torch.randn(2, 5, config.d_model)
    with torch.no_grad():
        got = layer(x)  # layers return hidden states only; the library records attentions
        if normalize_before:  # x + Sublayer(LayerNorm(x))
            h = x + layer.self_attn(layer.self_attn_layer_norm(x))[0]
            want = h + layer.ffn(layer.final_layer_norm(h))
        else:  # LayerNorm(x + Sublayer(x))
            h = layer.self_attn_layer_norm(x + layer.self_attn(x)[0])
            want = layer.final_layer_norm(h + layer.ffn(h))
    torch.testing.assert_close(got, want)


def test_pre_norm_differs_from_post_norm_and_has_final_layer_norms() -> None:
    post = build(tiny_config(), seed=0)
    pre = build(tiny_config(normalize_before=True), seed=0)
    assert post.model.encoder.layer_norm is None and post.model.decoder.layer_norm is None
    assert isinstance(pre.model.encoder.layer_norm, torch.nn.LayerNorm)
    assert isinstance(pre.model.decoder.layer_norm, torch.nn.LayerNorm)
    missing, unexpected = pre.load_state_dict(post.state_dict(), strict=False)
    assert sorted(missing) == ["model.decoder.layer_norm.bias", "model.decoder.layer_norm.weight"] + [
        "model.encoder.layer_norm.bias",
        "model.encoder.layer_norm.weight",
    ]
    assert not unexpected
    input_ids, decoder_input_ids = random_batch(post.config)
    with torch.no_grad():
        a = post(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
        b = pre(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
    assert (a - b).abs().amax() > 1e-2  # same weights, different computation


@pytest.mark.parametrize("normalize_before", [False, True])
def test_training_steps_reduce_the_loss(normalize_before: bool) -> None:
    config = tiny_config(normalize_before=normalize_before)
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(config).train()
    input_ids, labels = random_batch(config, batch=4, src=6, tgt=6, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------------------------------------------------
# Attention implementations and gradient checkpointing.
# ------------------------------------------------------------------------------------------------------------
def test_eager_and_sdpa_agree() -> None:
    config = tiny_config()
    eager, sdpa = build(tiny_config(), attn="eager"), build(tiny_config(), attn="sdpa")
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    input_ids, decoder_input_ids = random_batch(config, batch=3, src=9, tgt=7)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    decoder_attention_mask = torch.ones_like(decoder_input_ids)
    decoder_attention_mask[2, :2] = 0
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
    )
    with torch.no_grad():
        a, b = eager(**kwargs), sdpa(**kwargs)
    # Compare real (non-padding) positions: a fully masked padded query row has no defined output.
    real_tgt, real_src = decoder_attention_mask.bool(), attention_mask.bool()
    torch.testing.assert_close(a.logits[real_tgt], b.logits[real_tgt], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        a.encoder_last_hidden_state[real_src], b.encoder_last_hidden_state[real_src], atol=1e-5, rtol=1e-5
    )


@pytest.mark.slow  # flex attention is compiled on first use (about a minute on a 2-core CPU)
@NEEDS_VECTORISING_INDUCTOR
def test_flex_attention_agrees_with_eager() -> None:
    config = tiny_config()
    eager, flex = build(tiny_config(), attn="eager"), build(tiny_config(), attn="flex_attention")
    input_ids, decoder_input_ids = random_batch(config, batch=2, src=7, tgt=6)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    with torch.no_grad():
        a, b = eager(**kwargs), flex(**kwargs)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    config = tiny_config()
    input_ids, labels = random_batch(config, batch=2)
    grads = []
    for checkpointing in (False, True):
        model = build(config).train()
        if checkpointing:
            model.activation_checkpointing_enable()  # formerly gradient_checkpointing_enable
            assert model.is_activation_checkpointing
        calls = []
        model.model.decoder.layers[0].ffn.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        model(input_ids=input_ids, labels=labels).loss.backward()
        assert len(calls) == (2 if checkpointing else 1)  # checkpointed layers run again in the backward pass
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(model.parameters()))
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


# ------------------------------------------------------------------------------------------------------------
# Teacher forcing and the loss.
# ------------------------------------------------------------------------------------------------------------
def test_shift_tokens_right_builds_the_teacher_forcing_input() -> None:
    labels = torch.tensor([[3, 4, 5, 6, END], [3, 4, END, -100, -100]])  # "I love easy courses <end>"
    shifted = shift_tokens_right(labels, PAD, START)
    assert shifted.tolist() == [[START, 3, 4, 5, 6], [START, 3, 4, END, PAD]]
    config = tiny_config()
    model = build(config)
    assert torch.equal(model.prepare_decoder_input_ids_from_labels(labels), shifted)


def test_loss_is_the_per_token_cross_entropy_ignoring_minus_100() -> None:
    config = tiny_config()
    model = build(config)
    input_ids, labels = random_batch(config, batch=2, tgt=5)
    labels[1, 3:] = -100
    out = model(input_ids=input_ids, labels=labels)
    decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(out.logits, logits)
    keep = labels != -100
    expected = -torch.log_softmax(logits, -1)[keep].gather(-1, labels[keep][:, None]).mean()
    torch.testing.assert_close(out.loss, expected)


def test_loss_is_plain_cross_entropy_also_for_configs_saved_with_label_smoothing() -> None:
    """Earlier versions saved `label_smoothing` in config.json; such configs load and their loss is the plain CE."""
    config = VanillaTransformerConfig.from_dict({**tiny_config().to_dict(), "label_smoothing": 0.1})
    model = build(config)
    input_ids, labels = random_batch(config, batch=2, tgt=5)
    out = model(input_ids=input_ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits.reshape(-1, config.vocab_size), labels.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert out.loss > 3.0  # about ln(64) for a random model: an absolute check, not only a relative one


def test_num_items_in_batch_makes_accumulated_gradients_equal_one_big_batch() -> None:
    config = tiny_config()
    input_ids, labels = random_batch(config, batch=2, tgt=6)
    labels[1, 2:] = -100  # unequal token counts: averaging the two per-example means would be wrong
    total = int((labels != -100).sum())

    big = build(config).train()
    big_loss = big(input_ids=input_ids, labels=labels).loss
    big_loss.backward()

    small = build(config).train()
    accumulated = 0.0
    for i in range(2):
        loss = small(input_ids=input_ids[i : i + 1], labels=labels[i : i + 1], num_items_in_batch=total).loss
        loss.backward()
        accumulated += loss.item()
    assert accumulated == pytest.approx(big_loss.item(), rel=1e-5)
    for (name, p), q in zip(big.named_parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_labels_must_align_with_decoder_inputs() -> None:
    config = tiny_config()
    model = build(config)
    input_ids, decoder_input_ids = random_batch(config, tgt=5)
    with pytest.raises(ValueError, match="aligned"):
        model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, labels=decoder_input_ids[:, :4])


# ------------------------------------------------------------------------------------------------------------
# Save/load, tied weights, the non-persistent sinusoid table, Auto classes.
# ------------------------------------------------------------------------------------------------------------
def assert_tied(model: VanillaTransformerForConditionalGeneration) -> None:
    shared = model.model.shared.weight
    for other in (
        model.lm_head.weight,
        model.model.encoder.embed_tokens.weight,
        model.model.decoder.embed_tokens.weight,
    ):
        assert other is shared or other.data_ptr() == shared.data_ptr()


def test_save_load_round_trip_is_exact_and_rebuilds_the_sinusoids(tmp_path) -> None:
    config = tiny_config()
    model = build(config)
    input_ids, decoder_input_ids = random_batch(config)
    with torch.no_grad():
        before = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
    model.save_pretrained(tmp_path)
    loaded = VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert_tied(loaded)
    for stack in (loaded.model.encoder, loaded.model.decoder):  # the table is not saved, but rebuilt
        assert torch.equal(stack.embed_positions.pe, stack.embed_positions.create())
    saved, again = model.state_dict(), loaded.state_dict()
    assert saved.keys() == again.keys()
    for name in saved:
        assert torch.equal(saved[name], again[name]), name
    with torch.no_grad():
        after = loaded(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
    assert torch.equal(before, after)


def test_embeddings_and_output_projection_are_tied(tmp_path) -> None:
    model = build(tiny_config())
    assert_tied(model)
    with torch.no_grad():
        model.model.shared.weight[5] += 1.0
    assert torch.equal(model.lm_head.weight[5], model.model.shared.weight[5])

    resized = model.resize_token_embeddings(80)
    assert resized.weight.shape == (80, 32) and model.config.vocab_size == 80
    assert model.lm_head.weight.shape == (80, 32)
    assert_tied(model)
    logits = model(input_ids=torch.tensor([[79, 3]]), decoder_input_ids=torch.tensor([[1, 79]])).logits
    assert logits.shape == (1, 2, 80)

    model.save_pretrained(tmp_path)
    loaded = VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.vocab_size == 80
    assert_tied(loaded)


@pytest.mark.parametrize("tie", [True, False])
def test_trainer_style_reload_re_ties_instead_of_reporting_missing_keys(tmp_path, tie: bool) -> None:
    """Trainer's load_best_model_at_end loads the saved state dict non-strictly; the keys it then misses must be
    exactly the tied copies listed in `_keys_to_ignore_on_save`, so it re-ties them instead of warning."""
    from safetensors.torch import load_file

    model = build(tiny_config(tie_word_embeddings=tie))
    model.save_pretrained(tmp_path)
    result = model.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    assert set(result.missing_keys) == set(model._keys_to_ignore_on_save) and not result.unexpected_keys
    assert ("lm_head.weight" in result.missing_keys) == tie


def test_untied_output_projection_when_asked() -> None:
    model = build(tiny_config(tie_word_embeddings=False))
    assert model.lm_head.weight.data_ptr() != model.model.shared.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.model.shared.weight)


@pytest.mark.parametrize("overrides", [dict(tie_word_embeddings=False), dict(add_final_logits_bias=True)])
def test_resize_keeps_separate_matrices_and_the_logits_bias_consistent(tmp_path, overrides: dict) -> None:
    """Separate source/target matrices (converted Marian variants) must each keep their own rows, and a converted
    final_logits_bias must grow with the vocabulary; the resized model saves, reloads and computes the same."""
    model = build(tiny_config(**overrides))
    with torch.no_grad():
        if model.config.add_final_logits_bias:
            model.final_logits_bias.normal_()
    encoder, decoder = (m.embed_tokens.weight.detach().clone() for m in (model.model.encoder, model.model.decoder))
    bias = model.final_logits_bias.clone() if model.config.add_final_logits_bias else None
    vocab = model.config.vocab_size
    model.resize_token_embeddings(vocab + 8, mean_resizing=False)
    assert torch.equal(model.model.encoder.embed_tokens.weight[:vocab], encoder)
    assert torch.equal(model.model.decoder.embed_tokens.weight[:vocab], decoder)
    if bias is not None:
        assert model.final_logits_bias.shape == (1, vocab + 8)
        assert torch.equal(model.final_logits_bias[:, :vocab], bias) and not model.final_logits_bias[:, vocab:].any()
    batch = dict(input_ids=torch.tensor([[vocab + 3, 4]]), decoder_input_ids=torch.tensor([[1, vocab + 5]]))
    logits = model(**batch).logits
    assert logits.shape == (1, 2, vocab + 8)
    model.save_pretrained(tmp_path)
    loaded = VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**batch).logits, logits)


@pytest.mark.parametrize("init_std", [None, 0.02])
def test_initialisation(init_std) -> None:
    """None: Xavier-uniform linear layers (std sqrt(2 / (in + out))) and embeddings N(0, d_model^-0.5); a number:
    N(0, init_std) for both (BART/Marian). Biases start at zero, LayerNorm at identity, in both cases."""
    config = tiny_config(init_std=init_std, d_model=64, encoder_ffn_dim=256, decoder_ffn_dim=256, vocab_size=2000)
    model = build(config)
    fc1 = model.model.encoder.layers[0].ffn.fc1
    expected_linear = math.sqrt(2 / (64 + 256)) if init_std is None else init_std
    expected_embedding = 64**-0.5 if init_std is None else init_std
    assert fc1.weight.std().item() == pytest.approx(expected_linear, rel=0.05)
    assert model.model.shared.weight.std().item() == pytest.approx(expected_embedding, rel=0.05)
    assert not fc1.bias.any() and bool((model.model.encoder.layers[0].self_attn_layer_norm.weight == 1).all())


def test_auto_classes_resolve(tmp_path) -> None:
    fields = {k: v for k, v in tiny_config().to_dict().items() if k != "model_type"}
    config = AutoConfig.for_model("vanilla_transformer", **fields)
    assert type(AutoModel.from_config(config)) is VanillaTransformerModel
    assert type(AutoModelForSeq2SeqLM.from_config(config)) is VanillaTransformerForConditionalGeneration

    model = build(tiny_config())
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_vanilla_transformer.VanillaTransformerConfig",
        "AutoModel": "modeling_vanilla_transformer.VanillaTransformerModel",
        "AutoModelForSeq2SeqLM": "modeling_vanilla_transformer.VanillaTransformerForConditionalGeneration",
    }
    assert (tmp_path / "modeling_vanilla_transformer.py").is_file()
    assert (tmp_path / "configuration_vanilla_transformer.py").is_file()
    assert (tmp_path / "checks_vanilla_transformer.py").is_file()  # the model file's sibling ships with it

    seq2seq = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(seq2seq) is VanillaTransformerForConditionalGeneration
    base = AutoModel.from_pretrained(tmp_path).eval()  # the base model out of the seq2seq checkpoint
    assert type(base) is VanillaTransformerModel
    input_ids, decoder_input_ids = random_batch(model.config)
    with torch.no_grad():
        want = model.model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).last_hidden_state
        got = base(input_ids=input_ids, decoder_input_ids=decoder_input_ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# Details a wrong version would pass the tests above with (found by mutation testing, tests/README.md)
# ---------------------------------------------------------------------------------------------------------
def test_attention_weights_are_softmax_of_q_k_over_sqrt_d_k() -> None:
    """Section 3.2.1 by hand from the layer's own projections: the 1/sqrt(d_k) scaling, not only its consistency
    between attention implementations."""
    config = tiny_config()
    model = build(config, attn="eager")
    attention = model.model.encoder.layers[0].self_attn
    x = torch.randn(1, 5, config.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, weights = attention(x)
        heads, d_k = config.encoder_attention_heads, config.d_model // config.encoder_attention_heads
        q = attention.q_proj(x).view(1, 5, heads, d_k).transpose(1, 2)
        k = attention.k_proj(x).view(1, 5, heads, d_k).transpose(1, 2)
        expected = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(d_k), dim=-1)
    torch.testing.assert_close(weights, expected)


def test_sinusoids_are_exact_far_along_the_table_and_not_saved() -> None:
    """Computed in float64: a float32 computation is off by ~1e-4 at position 2,000. The table is a buffer that is
    rebuilt, never written to a checkpoint."""
    n, d = 2048, 16
    table = VanillaTransformerSinusoidalPositionalEncoding(n, d).pe
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (2 * torch.arange(d // 2, dtype=torch.float64) / d)
    expected = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(n, d).float()
    torch.testing.assert_close(table, expected, atol=1e-6, rtol=0)
    model = build(tiny_config())
    assert not [name for name in model.state_dict() if name.endswith(".pe")]


def test_positions_from_an_offset_int_or_tensor() -> None:
    """Decoding with a cache reads the positions after the cached ones; a static cache gives the offset as a tensor."""
    encoding = VanillaTransformerSinusoidalPositionalEncoding(20, 8)
    torch.testing.assert_close(encoding(4), encoding.pe[:4])
    torch.testing.assert_close(encoding(4, 3), encoding.pe[3:7])
    torch.testing.assert_close(encoding(4, torch.tensor(3)), encoding.pe[3:7])


def test_the_configured_positional_layout_reaches_both_stacks() -> None:
    model = build(tiny_config(positional_encoding_layout="concatenated"))
    reference = VanillaTransformerSinusoidalPositionalEncoding(64, 32, "concatenated").pe
    for stack in (model.model.encoder, model.model.decoder):
        torch.testing.assert_close(stack.embed_positions.pe, reference)


def test_padding_embedding_gets_no_gradient() -> None:
    """`padding_idx`: pad positions of the input give the pad row no gradient (with tied embeddings the output
    projection, which scores the pad token like any other, still does)."""
    for tie in (True, False):
        config = tiny_config(tie_word_embeddings=tie)
        model = build(config).train()
        source, target = random_batch(config)
        source[:, -2:] = config.pad_token_id
        embeddings = model.get_input_embeddings()(torch.cat([source, target], dim=1))
        embeddings.sum().backward()
        for embedding in {model.model.encoder.embed_tokens, model.model.decoder.embed_tokens, model.model.shared}:
            assert embedding.padding_idx == config.pad_token_id
        grad = model.get_input_embeddings().weight.grad
        assert not grad[config.pad_token_id].any() and grad.abs().sum() > 0


def test_a_new_model_does_not_checkpoint_gradients() -> None:
    model = build(tiny_config())
    assert not model.is_activation_checkpointing
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_eval_mode_is_deterministic_with_every_dropout_set(attn: str) -> None:
    """Attention and ReLU dropout apply in training only; training mode draws them (so they are on)."""
    config = tiny_config(dropout=0.0, attention_dropout=0.3, activation_dropout=0.3)
    model = build(config, attn=attn)
    source, target = random_batch(config)
    batch = dict(input_ids=source, decoder_input_ids=target)
    with torch.no_grad():
        first, second = model(**batch).logits, model(**batch).logits
        torch.testing.assert_close(first, second)
        model.train()
        assert not torch.equal(model(**batch).logits, model(**batch).logits)


def test_eager_attention_without_dropout_is_deterministic_in_training() -> None:
    config = tiny_config(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    model = build(config, attn="eager").train()
    source, target = random_batch(config)
    batch = dict(input_ids=source, decoder_input_ids=target)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, model(**batch).logits)


def test_bfloat16_model_keeps_its_dtype_through_attention_and_positions() -> None:
    config = tiny_config()
    model = build(config, attn="eager").to(torch.bfloat16)
    with torch.no_grad():
        source, target = random_batch(config)
        out = model(input_ids=source, decoder_input_ids=target, output_attentions=True, output_hidden_states=True)
    assert out.logits.dtype == torch.bfloat16
    assert all(h.dtype == torch.bfloat16 for h in out.encoder_hidden_states + out.decoder_hidden_states)
    assert all(a.dtype == torch.bfloat16 for a in out.encoder_attentions + out.cross_attentions)


def test_shift_tokens_right_needs_both_ids() -> None:
    labels = torch.tensor([[3, 4, 2]])
    for pad, start in ((None, 1), (0, None), (None, None)):
        with pytest.raises(ValueError) as error:
            shift_tokens_right(labels, pad, start)
        assert str(error.value) == (
            "`config.pad_token_id` and `config.decoder_start_token_id` must be set to shift labels."
        )
