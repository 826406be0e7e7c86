"""Where the model applies dropout and layer normalisation, and which matrices the embedding setter replaces.

Each check watches the sub-layers through forward hooks (standard module names: `self_attn`, `encoder_attn`,
`ffn`, `*_layer_norm`, the stacks' `layer_norm`, `lm_head`), so it tests the computation, not the code's layout.
"""

import pytest
import torch
from conftest import SRC, TGT, tiny_config

from vanilla_transformer import VanillaTransformerForConditionalGeneration

# Sub-layer -> the LayerNorm that follows it in post-norm (precedes it in pre-norm), per stack.
ENCODER_SUBLAYERS = {"self_attn": "self_attn_layer_norm", "ffn": "final_layer_norm"}
DECODER_SUBLAYERS = {**ENCODER_SUBLAYERS, "encoder_attn": "encoder_attn_layer_norm"}


def build(seed: int = 0, **overrides: object) -> VanillaTransformerForConditionalGeneration:
    """A tiny model whose LayerNorms are not at their identity initialisation."""
    torch.manual_seed(seed)
    model = VanillaTransformerForConditionalGeneration(tiny_config(**overrides))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_norm" in name:
                parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def sublayer_names(model: VanillaTransformerForConditionalGeneration) -> list[tuple[str, str]]:
    """(sub-layer, its LayerNorm) module names of every layer of both stacks."""
    pairs = []
    for stack, sublayers in (("encoder", ENCODER_SUBLAYERS), ("decoder", DECODER_SUBLAYERS)):
        for index in range(len(getattr(model.model, stack).layers)):
            prefix = f"model.{stack}.layers.{index}"
            pairs += [(f"{prefix}.{sub}", f"{prefix}.{norm}") for sub, norm in sublayers.items()]
    return pairs


class Recorder:
    """Forward hooks that keep, per module name, the (hidden-states input, output) of each call."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in names}
        self.handles = [modules[name].register_forward_hook(self._hook(name), with_kwargs=True) for name in names]

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]
            self.calls[name].append((hidden.detach(), (output[0] if isinstance(output, tuple) else output).detach()))

        return hook

    def one(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The single call of module `name`: (input, output)."""
        assert len(self.calls[name]) == 1, f"{name} ran {len(self.calls[name])} times"
        return self.calls[name][0]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def run(model: VanillaTransformerForConditionalGeneration, names: list[str]) -> tuple[Recorder, torch.Tensor]:
    recorder = Recorder(model, names)
    try:
        with torch.no_grad():
            logits = model(input_ids=SRC, decoder_input_ids=TGT, use_cache=False).logits
    finally:
        recorder.close()
    return recorder, logits


# ---------------------------------------------------------------------------------------------------------
# Dropout (Section 5.4): random in training, off in evaluation, on every sub-layer output and on the embeddings.
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_before", [False, True])
def test_dropout_is_random_in_training_and_off_in_evaluation(normalize_before: bool) -> None:
    model = build(dropout=0.1, normalize_before=normalize_before)
    batch = dict(input_ids=SRC, decoder_input_ids=TGT, use_cache=False)
    model.train()
    torch.manual_seed(1)
    first = model(**batch).logits
    second = model(**batch).logits
    torch.manual_seed(1)
    again = model(**batch).logits
    assert (first - second).abs().amax() > 1e-3  # a new dropout mask each call ...
    torch.testing.assert_close(first, again, rtol=0, atol=0)  # ... drawn from the seeded generator
    model.eval()
    evaluated = model(**batch).logits
    torch.testing.assert_close(model(**batch).logits, evaluated, rtol=0, atol=0)
    without = build(dropout=0.0, normalize_before=normalize_before).eval()
    torch.testing.assert_close(without(**batch).logits, evaluated, rtol=0, atol=0)  # eval ignores the rate


def assert_dropped(dropped: torch.Tensor, full: torch.Tensor, p: float, where: str) -> None:
    """`dropped` is `full` with a fraction of about `p` of its entries zeroed and the others scaled by 1/(1-p)."""
    zero = dropped == 0
    assert 0.35 < zero.float().mean().item() < 0.65, f"{where}: {zero.float().mean().item():.2f} of entries dropped"
    torch.testing.assert_close(dropped[~zero], full[~zero] / (1 - p), rtol=1e-5, atol=1e-5, msg=where)


def test_residual_dropout_applies_to_every_sub_layer_output() -> None:
    """Post-norm: LayerNorm(x + Dropout(Sublayer(x))) for the self-attention, cross-attention and feed-forward
    sub-layers of every layer; with P_drop = 0.5 the LayerNorm's input minus x is the sub-layer's output with
    about half of its entries zeroed and the rest doubled (attention and activation dropout stay off)."""
    model = build(dropout=0.5).train()
    pairs = sublayer_names(model)
    torch.manual_seed(0)
    recorder, _ = run(model, [name for pair in pairs for name in pair])
    assert len(pairs) == 2 * 2 + 2 * 3
    for sublayer, norm in pairs:
        residual, out = recorder.one(sublayer)
        norm_input, _ = recorder.one(norm)
        assert_dropped(norm_input - residual, out, 0.5, sublayer)


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_dropout_applies_to_the_sums_of_embeddings_and_positional_encodings(stack: str) -> None:
    model = build(dropout=0.5)
    first_layer = f"model.{stack}.layers.0"
    clean, _ = run(model.eval(), [first_layer])
    torch.manual_seed(0)
    noisy, _ = run(model.train(), [first_layer])
    assert_dropped(noisy.one(first_layer)[0], clean.one(first_layer)[0], 0.5, first_layer)


# ---------------------------------------------------------------------------------------------------------
# Layer normalisation: after each residual sum (post-norm, the paper), or before each sub-layer plus once at the
# end of each stack (pre-norm).
# ---------------------------------------------------------------------------------------------------------
def stack_names(model: VanillaTransformerForConditionalGeneration, stack: str) -> tuple[str, str]:
    return f"model.{stack}.layers.{len(getattr(model.model, stack).layers) - 1}", f"model.{stack}.layer_norm"


def test_post_norm_normalises_each_residual_sum_and_nothing_after_the_stacks() -> None:
    model = build().eval()
    pairs = sublayer_names(model)
    last = {stack: stack_names(model, stack)[0] for stack in ("encoder", "decoder")}
    recorder, _ = run(model, [name for pair in pairs for name in pair] + [*last.values(), "lm_head"])
    for sublayer, norm in pairs:
        residual, out = recorder.one(sublayer)
        norm_input, _ = recorder.one(norm)
        torch.testing.assert_close(norm_input, residual + out, msg=sublayer)  # LayerNorm(x + Sublayer(x))
    assert model.model.encoder.layer_norm is None and model.model.decoder.layer_norm is None
    encoder_out = model.get_encoder()(input_ids=SRC).last_hidden_state
    torch.testing.assert_close(encoder_out, recorder.one(last["encoder"])[1])
    _, final_norm_out = recorder.one(f"{last['decoder']}.final_layer_norm")
    torch.testing.assert_close(recorder.one(last["decoder"])[1], final_norm_out)
    torch.testing.assert_close(recorder.one("lm_head")[0], final_norm_out)  # the last layer's output, as it is


def test_pre_norm_normalises_each_sub_layer_input_and_the_output_of_both_stacks() -> None:
    model = build(normalize_before=True).eval()
    pairs = sublayer_names(model)
    stacks = {stack: stack_names(model, stack) for stack in ("encoder", "decoder")}
    names = [name for pair in pairs for name in pair] + [n for pair in stacks.values() for n in pair] + ["lm_head"]
    recorder, _ = run(model, names)
    for sublayer, norm in pairs:
        normalised = recorder.one(norm)[1]
        sublayer_input = recorder.one(sublayer)[0]
        # x + Sublayer(LayerNorm(x)); for the cross-attention x are the queries (keys/values: the encoder output)
        torch.testing.assert_close(sublayer_input, normalised, msg=sublayer)
    for stack, (last_layer, final_norm) in stacks.items():
        norm_input, norm_output = recorder.one(final_norm)
        torch.testing.assert_close(norm_input, recorder.one(last_layer)[1], msg=stack)  # after the last layer
        assert (norm_input - norm_output).abs().amax() > 0.1  # and it changes the values
    encoder_out = model.get_encoder()(input_ids=SRC).last_hidden_state
    torch.testing.assert_close(encoder_out, recorder.one(stacks["encoder"][1])[1])
    torch.testing.assert_close(recorder.one("lm_head")[0], recorder.one(stacks["decoder"][1])[1])


# ---------------------------------------------------------------------------------------------------------
# set_input_embeddings replaces the matrices the stacks read (as the library's resize and PEFT call it).
# ---------------------------------------------------------------------------------------------------------
def test_set_input_embeddings_replaces_the_shared_source_and_target_embeddings() -> None:
    model = build().eval()
    with torch.no_grad():
        before = model(input_ids=SRC, decoder_input_ids=TGT).logits
    new = torch.nn.Embedding(model.config.vocab_size, model.config.d_model)
    model.set_input_embeddings(new)
    assert model.get_input_embeddings() is new
    assert model.model.shared is new
    assert model.model.encoder.embed_tokens is new and model.model.decoder.embed_tokens is new
    model.tie_weights()
    assert model.get_output_embeddings().weight is new.weight  # tied (Section 3.4): the output projection follows
    twin = build().eval()  # the same weights, with the new matrix copied in place
    with torch.no_grad():
        twin.model.shared.weight.copy_(new.weight)
        expected = twin(input_ids=SRC, decoder_input_ids=TGT).logits
        got = model(input_ids=SRC, decoder_input_ids=TGT).logits
    torch.testing.assert_close(got, expected)
    assert (got - before).abs().amax() > 1e-2


def test_set_input_embeddings_with_separate_matrices_replaces_the_source_side_only() -> None:
    """`tie_word_embeddings=False` (converted Marian variants): the setter is the encoder's, as in Marian."""
    model = build(tie_word_embeddings=False).eval()
    decoder_embeddings, output = model.model.decoder.embed_tokens, model.lm_head.weight
    new = torch.nn.Embedding(model.config.vocab_size, model.config.d_model)
    model.set_input_embeddings(new)
    assert model.get_input_embeddings() is new and model.model.encoder.embed_tokens is new
    assert model.model.decoder.embed_tokens is decoder_embeddings and model.lm_head.weight is output
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=SRC).last_hidden_state
        twin = build(tie_word_embeddings=False).eval()
        twin.model.encoder.embed_tokens.weight.copy_(new.weight)
        torch.testing.assert_close(encoded, twin.get_encoder()(input_ids=SRC).last_hidden_state)
