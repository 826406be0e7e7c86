"""Autoregressive decoding: the key/value cache, generate() with and without it, cross-attention computed once."""

import warnings

import pytest
import torch
from conftest import tiny_config
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from vanilla_transformer import VanillaTransformerForConditionalGeneration

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)


def build(normalize_before: bool = False, seed: int = 0) -> VanillaTransformerForConditionalGeneration:
    """A random tiny model. Its output projection is untied: a random model with tied embeddings mostly predicts
    its input token again (`<start> <start> ...`), which would make cache/no-cache comparisons trivially equal."""
    torch.manual_seed(seed)
    config = tiny_config(normalize_before=normalize_before, tie_word_embeddings=False)
    return VanillaTransformerForConditionalGeneration(config).eval()


def padded_source(vocab_size: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (3, 8), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 7:] = 0
    return input_ids.masked_fill(attention_mask == 0, 0), attention_mask


@pytest.mark.parametrize("cache_argument", ["past_key_values", "cache"])  # the old name still works, with a warning
@pytest.mark.parametrize("normalize_before", [False, True])
def test_incremental_decoding_matches_the_full_forward_pass(normalize_before: bool, cache_argument: str) -> None:
    model = build(normalize_before)
    config = model.config
    input_ids, attention_mask = padded_source(config.vocab_size)
    decoder_input_ids = torch.randint(3, config.vocab_size, (3, 7), generator=torch.Generator().manual_seed(5))
    decoder_input_ids[:, 0] = config.decoder_start_token_id
    with torch.no_grad():
        full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
        encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        for t in range(decoder_input_ids.shape[1]):
            step = model(
                encoder_outputs=encoder_outputs,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids[:, t : t + 1],  # the newest token only
                use_cache=True,
                **{cache_argument: cache},
            )
            assert step.logits.shape == (3, 1, config.vocab_size)
            assert cache.get_seq_length() == t + 1
            torch.testing.assert_close(step.logits[:, 0], full[:, t], atol=1e-5, rtol=1e-5)


def test_the_old_cache_name_warns_as_the_library_does() -> None:
    """`past_key_values=` is the deprecated spelling of `cache=` (transformers 5.24): a FutureWarning, same result."""
    model = build()
    ids = torch.tensor([[5, 6, 7]])
    results = []
    for name in ("cache", "past_key_values"):
        cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = model(input_ids=ids, decoder_input_ids=ids[:, :1], use_cache=True, **{name: cache})
        deprecations = [
            w for w in caught if issubclass(w.category, FutureWarning) and "`past_key_values`" in str(w.message)
        ]
        assert len(deprecations) == (1 if name == "past_key_values" else 0)
        assert out.cache is cache and cache.get_seq_length() == 1
        results.append(out.logits)
    torch.testing.assert_close(results[0], results[1])
    both = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
    unused = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
    with pytest.warns(FutureWarning, match="Both `past_key_values` and `cache` are set"):
        model(input_ids=ids, decoder_input_ids=ids[:, :1], past_key_values=unused, cache=both, use_cache=True)
    assert both.get_seq_length() == 1 and unused.get_seq_length() == 0  # the current name wins


def test_decoder_accepts_a_plain_dynamic_cache() -> None:
    """A self-attention-only `DynamicCache` works: it caches masked self-attention; cross-attention is recomputed."""
    model = build()
    config = model.config
    input_ids, attention_mask = padded_source(config.vocab_size)
    decoder_input_ids = torch.randint(3, config.vocab_size, (3, 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        encoder_out = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        full = model.model.decoder(
            input_ids=decoder_input_ids, encoder_hidden_states=encoder_out, encoder_attention_mask=attention_mask
        ).last_hidden_state
        cache = DynamicCache(config=config)
        for t in range(decoder_input_ids.shape[1]):
            step = model.model.decoder(
                input_ids=decoder_input_ids[:, t : t + 1],
                encoder_hidden_states=encoder_out,
                encoder_attention_mask=attention_mask,
                cache=cache,
                use_cache=True,
            )
            assert step.cache is cache and cache.get_seq_length() == t + 1
            torch.testing.assert_close(step.last_hidden_state[:, 0], full[:, t], atol=1e-5, rtol=1e-5)
        beams = torch.tensor([2, 0, 1])
        assert model._reorder_cache(cache, beams) is cache  # beam search's hook takes it too


def greedy_without_generate(model, input_ids, attention_mask, steps: int) -> torch.Tensor:
    """Argmax decoding by repeated full forward passes (no cache, no generate())."""
    decoded = torch.full((input_ids.shape[0], 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoded).logits
            decoded = torch.cat([decoded, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return decoded


@pytest.mark.parametrize("normalize_before", [False, True])
def test_greedy_generate_is_the_same_with_and_without_cache(normalize_before: bool) -> None:
    model = build(normalize_before)
    model.generation_config.eos_token_id = None  # run all steps: a random model may emit <end> at any time
    input_ids, attention_mask = padded_source(model.config.vocab_size)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=10, do_sample=False)
    kwargs.update(output_scores=True, return_dict_in_generate=True)
    with_cache = model.generate(**kwargs, use_cache=True)
    without_cache = model.generate(**kwargs, use_cache=False)
    assert torch.equal(with_cache.sequences, without_cache.sequences)
    for a, b in zip(with_cache.scores, without_cache.scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    reference = greedy_without_generate(model, input_ids, attention_mask, steps=10)
    assert torch.equal(with_cache.sequences, reference)
    assert with_cache.sequences.shape == (3, 11) and bool((with_cache.sequences[:, 0] == 1).all())
    assert len(set(map(tuple, with_cache.sequences.tolist()))) > 1  # the output depends on the source


def test_beam_search_is_the_same_with_and_without_cache() -> None:
    model = build()
    input_ids, attention_mask = padded_source(model.config.vocab_size)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8, num_beams=4)
    kwargs.update(num_return_sequences=2, output_scores=True, return_dict_in_generate=True)
    with_cache = model.generate(**kwargs, use_cache=True)
    without_cache = model.generate(**kwargs, use_cache=False)
    assert with_cache.sequences.shape[0] == 6
    assert torch.equal(with_cache.sequences, without_cache.sequences)
    torch.testing.assert_close(with_cache.sequences_scores, without_cache.sequences_scores, atol=1e-5, rtol=1e-5)
    assert not torch.equal(with_cache.sequences[0::2], with_cache.sequences[1::2])  # two different hypotheses


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cross_attention_keys_and_values_are_computed_once_per_source(num_beams: int) -> None:
    model = build()
    model.generation_config.eos_token_id = None
    input_ids, attention_mask = padded_source(model.config.vocab_size)
    cross_calls, self_calls = [], []
    for layer in model.model.decoder.layers:
        layer.encoder_attn.k_proj.register_forward_hook(lambda m, args, out: cross_calls.append(args[0].shape))
        layer.encoder_attn.v_proj.register_forward_hook(lambda m, args, out: cross_calls.append(args[0].shape))
        layer.self_attn.k_proj.register_forward_hook(lambda m, args, out: self_calls.append(args[0].shape))
    model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, num_beams=num_beams)
    layers = model.config.decoder_layers
    # One k_proj and one v_proj call per decoder layer, over the whole source (B * beams, S, E) ...
    assert cross_calls == [torch.Size([3 * num_beams, 8, model.config.d_model])] * (2 * layers)
    # ... while self-attention projects the newest target token at every one of the 6 steps.
    assert len(self_calls) == 6 * layers
    assert all(shape[1] == 1 for shape in self_calls)


def test_generate_from_precomputed_encoder_outputs() -> None:
    model = build()
    input_ids, attention_mask = padded_source(model.config.vocab_size)
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    a = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=5)
    b = model.generate(encoder_outputs=encoder_outputs, attention_mask=attention_mask, max_new_tokens=5)
    assert torch.equal(a, b)


def test_static_cache_and_fullgraph_compiled_decoding_match_the_dynamic_cache() -> None:
    """`_can_compile_fullgraph = True` is a promise: a static cache traced with fullgraph=True decodes the same."""
    from transformers.generation import CompileConfig

    model = build()
    model.generation_config.eos_token_id = None
    input_ids, attention_mask = padded_source(model.config.vocab_size)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=5, do_sample=False)
    kwargs.update(output_scores=True, return_dict_in_generate=True)
    dynamic = model.generate(**kwargs)
    static = model.generate(**kwargs, cache_implementation="static")
    assert type(static.past_key_values.self_attention_cache).__name__ == "StaticCache"
    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend="eager")  # dynamo trace, no C++ build
    compile_config._compile_all_devices = True  # generate() compiles on CPU too
    assert not hasattr(model, "_compiled_call")
    compiled = model.generate(**kwargs, cache_implementation="static", compile_config=compile_config)
    assert hasattr(model, "_compiled_call")  # the decoding steps really ran through torch.compile(fullgraph=True)
    for other in (static, compiled):
        assert torch.equal(other.sequences, dynamic.sequences)
        for a, b in zip(other.scores, dynamic.scores, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
