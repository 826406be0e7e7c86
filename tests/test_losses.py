"""The recipe's label-smoothed loss: equal to torch's cross-entropy (values and gradients), normalised by the
token count Trainer passes, and what Trainer logs with it (smoothed loss and NLL), checked in absolute values."""

import pytest
import torch
from conftest import tiny_config
from test_trainer_integration import arguments, reverse_examples
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, Seq2SeqTrainer
from transformers.modeling_outputs import Seq2SeqLMOutput

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.losses import LabelSmoothedLoss, label_smoothed_cross_entropy
from vanilla_transformer.training import TranslationTrainer

F = torch.nn.functional


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_lean_loss_and_gradient_equal_torch_cross_entropy(dtype: torch.dtype, epsilon: float) -> None:
    gen = torch.Generator().manual_seed(0)
    vocab = 3000  # 1500 rows: more than one row chunk (2**22 // vocab) of the loss' float32 working set
    logits = (3 * torch.randn(1500, vocab, generator=gen)).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (1500,), generator=gen)
    labels[::7] = -100
    loss, nll = label_smoothed_cross_entropy(logits, labels, epsilon)
    (grad,) = torch.autograd.grad(2.5 * loss, logits)  # the incoming gradient (2.5) must reach the logits
    reference_logits = logits.detach().clone().requires_grad_()
    expected = F.cross_entropy(
        reference_logits.float(), labels, ignore_index=-100, reduction="sum", label_smoothing=epsilon
    )
    (expected_grad,) = torch.autograd.grad(2.5 * expected, reference_logits)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)
    plain = F.cross_entropy(logits.detach().float(), labels, ignore_index=-100, reduction="sum")
    torch.testing.assert_close(nll, plain, rtol=1e-5, atol=1e-3)
    assert not nll.requires_grad
    assert grad.dtype == dtype
    rtol = 1e-4 if dtype == torch.float32 else 1.6e-2  # bfloat16: one rounding step of the stored gradient
    torch.testing.assert_close(grad.float(), expected_grad.float(), rtol=rtol, atol=1e-5)
    assert grad[::7].abs().max() == 0  # ignored positions get no gradient


def test_loss_func_divides_the_summed_loss_by_num_items_in_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 11, generator=gen).requires_grad_()
    labels = torch.randint(0, 11, (2, 5), generator=gen)
    labels[1, 3:] = -100  # 8 target tokens
    loss_func = LabelSmoothedLoss(0.1)
    outputs = Seq2SeqLMOutput(logits=logits)
    summed = F.cross_entropy(logits.view(-1, 11), labels.view(-1), reduction="sum", label_smoothing=0.1)
    torch.testing.assert_close(loss_func(outputs, labels, num_items_in_batch=20), summed / 20)  # whole batch: 20
    torch.testing.assert_close(loss_func(outputs, labels), summed / 8)  # alone: its own 8 tokens
    torch.testing.assert_close(loss_func(outputs, labels, num_items_in_batch=torch.tensor(16)), summed / 16)
    with pytest.raises(ValueError, match="holds no target token"):
        loss_func(outputs, torch.full_like(labels, -100))
    with pytest.raises(ValueError, match="needs `labels`"):
        loss_func(outputs, None)
    with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\)"):
        LabelSmoothedLoss(1.0)


def test_pop_nll_averages_training_batches_only() -> None:
    gen = torch.Generator().manual_seed(2)
    loss_func = LabelSmoothedLoss(0.1)
    batches = [(torch.randn(1, n, 7, generator=gen), torch.randint(0, 7, (1, n), generator=gen)) for n in (3, 5)]
    for logits, labels in batches:
        loss_func(Seq2SeqLMOutput(logits=logits.requires_grad_()), labels)
    with torch.no_grad():  # an evaluation step: not part of the training NLL
        loss_func(Seq2SeqLMOutput(logits=torch.zeros(1, 4, 7)), torch.zeros(1, 4, dtype=torch.long))
    logits = torch.cat([b[0].view(-1, 7) for b in batches])
    labels = torch.cat([b[1].view(-1) for b in batches])
    assert loss_func.pop_nll() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert loss_func.pop_nll() is None  # reset by the previous call


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    from test_trainer_integration import tokenizer as make_tokenizer

    return make_tokenizer.__wrapped__()


def _expected(model: VanillaTransformerForConditionalGeneration, examples: list[dict], epsilon: float, collator):
    """Label-smoothed loss and NLL per target token of `examples` as one batch, by torch's cross-entropy."""
    batch = collator(examples)
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
        ).logits
    flat, labels = logits.view(-1, logits.shape[-1]), batch["labels"].view(-1)
    return F.cross_entropy(flat, labels, label_smoothing=epsilon).item(), F.cross_entropy(flat, labels).item()


@pytest.mark.parametrize("route", ["recipe", "trainer_label_smoothing_factor"])
def test_trainer_logs_exactly_the_label_smoothed_loss(tmp_path, tokenizer, route: str) -> None:
    """Learning rate 0 and one batch of the whole data per step: every logged loss is known in advance."""
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(tiny_config(vocab_size=13, max_position_embeddings=16))
    examples = reverse_examples(24, seed=2)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)  # builds decoder_input_ids: Trainer pops labels
    smoothed, nll = _expected(model, examples, 0.1, collator)
    args = arguments(tmp_path, per_device_train_batch_size=24, max_steps=2, learning_rate=0.0, logging_steps=1)
    if route == "recipe":
        trainer = TranslationTrainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=collator,
            compute_loss_func=LabelSmoothedLoss(0.1),
        )
    else:
        args.label_smoothing_factor = 0.1
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=examples, data_collator=collator)
        assert trainer.label_smoother is not None
    trainer.train()
    rows = [row for row in trainer.state.log_history if "loss" in row]
    assert len(rows) == 2
    for row in rows:
        assert row["loss"] == pytest.approx(smoothed, abs=2e-4)  # Trainer rounds logged losses to 4 digits
        if route == "recipe":
            assert row["nll_loss"] == pytest.approx(nll, abs=2e-4)
    assert abs(smoothed - nll) > 1e-3  # the two really differ, so the checks above tell them apart
