"""The speed code paths compute exactly what the plain ones do: beam search that leaves the (beam-invariant)
cross-attention cache unreordered. (The memory-lean loss is tested in test_losses.py.)"""

import pytest
import torch
from conftest import tiny_config
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from vanilla_transformer import VanillaTransformerForConditionalGeneration

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)


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
