"""The speed/memory code paths compute exactly what the plain ones do: the memory-lean label-smoothed loss and its
gradient, and beam search that leaves the (beam-invariant) cross-attention cache unreordered."""

import pytest
import torch
from conftest import tiny_config
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.modeling_vanilla_transformer import _LabelSmoothedCrossEntropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_lean_loss_and_gradient_equal_torch_cross_entropy(dtype: torch.dtype, epsilon: float) -> None:
    gen = torch.Generator().manual_seed(0)
    vocab = 3000  # 1500 rows: more than one row chunk (2**22 // vocab) of the loss' float32 working set
    logits = (3 * torch.randn(1500, vocab, generator=gen)).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (1500,), generator=gen)
    labels[::7] = -100
    loss = _LabelSmoothedCrossEntropy.apply(logits, labels, epsilon, -100)
    (grad,) = torch.autograd.grad(2.5 * loss, logits)
    reference_logits = logits.detach().clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(
        reference_logits.float(), labels, ignore_index=-100, reduction="sum", label_smoothing=epsilon
    )
    (expected_grad,) = torch.autograd.grad(2.5 * expected, reference_logits)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)
    assert grad.dtype == dtype
    rtol = 1e-4 if dtype == torch.float32 else 1.6e-2  # bfloat16: one rounding step of the stored gradient
    torch.testing.assert_close(grad.float(), expected_grad.float(), rtol=rtol, atol=1e-5)
    assert grad[::7].abs().max() == 0  # ignored positions get no gradient


def test_model_loss_gradients_equal_the_plain_cross_entropy() -> None:
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(tiny_config(label_smoothing=0.1)).train()
    input_ids = torch.randint(3, 64, (3, 6))
    labels = torch.randint(3, 64, (3, 5))
    labels[1, 3:] = -100
    torch.manual_seed(1)
    out = model(input_ids=input_ids, labels=labels)
    out.loss.backward()
    lean = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(1)  # same dropout masks
    logits = model(input_ids=input_ids, labels=labels).logits
    plain = torch.nn.functional.cross_entropy(logits.view(-1, 64), labels.view(-1), label_smoothing=0.1)
    torch.testing.assert_close(out.loss, plain)
    plain.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(lean[name], p.grad, msg=name)


def test_beam_search_reorders_self_attention_cache_only_and_matches_full_reordering() -> None:
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(tiny_config(tie_word_embeddings=False)).eval()
    gen = torch.Generator().manual_seed(3)
    input_ids = torch.randint(3, 64, (3, 7), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    kwargs = dict(num_beams=4, num_return_sequences=2, max_new_tokens=9, min_new_tokens=9, do_sample=False)
    with torch.no_grad():
        fast = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        class FullReorder(VanillaTransformerForConditionalGeneration):
            def _reorder_cache(self, past_key_values, beam_idx):  # what GenerationMixin does without the hook
                past_key_values.reorder_cache(beam_idx)
                return past_key_values

        model.__class__ = FullReorder
        slow = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        model.__class__ = VanillaTransformerForConditionalGeneration
    assert torch.equal(fast, slow)
    assert fast.shape == (6, 10)

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    cache.self_attention_cache.update(torch.arange(4.0).view(4, 1, 1, 1), torch.zeros(4, 1, 1, 1), 0)
    cache.cross_attention_cache.update(torch.arange(4.0).view(4, 1, 1, 1), torch.zeros(4, 1, 1, 1), 0)
    model._reorder_cache(cache, torch.tensor([1, 1, 0, 3]))
    assert cache.self_attention_cache.layers[0].keys.flatten().tolist() == [1, 1, 0, 3]
    assert cache.cross_attention_cache.layers[0].keys.flatten().tolist() == [0, 1, 2, 3]
