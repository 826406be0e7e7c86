"""Seq2SeqTrainer: loss normalisation under gradient accumulation and learning a real task (label smoothing:
test_losses.py)."""

import random

import pytest
import torch
from conftest import tiny_config
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerFast,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from vanilla_transformer import VanillaTransformerForConditionalGeneration, shift_tokens_right

PAD, START, END = 0, 1, 2
DIGITS = {str(d): 3 + d for d in range(10)}


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level digit tokenizer: <pad>=0, <s>=1 (decoder start), </s>=2, digits 3..12."""
    vocab = {"<pad>": PAD, "<s>": START, "</s>": END, **DIGITS}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def reverse_examples(count: int, seed: int) -> list[dict[str, list[int]]]:
    """Source: 3-6 random digits + </s>; target: the same digits reversed + </s>."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        digits = [rng.randrange(10) for _ in range(rng.randint(3, 6))]
        examples.append(
            {"input_ids": [3 + d for d in digits] + [END], "labels": [3 + d for d in digits[::-1]] + [END]}
        )
    return examples


def arguments(tmp_path, **overrides) -> Seq2SeqTrainingArguments:
    fields = dict(
        output_dir=str(tmp_path),
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    fields.update(overrides)
    return Seq2SeqTrainingArguments(**fields)


def digit_model(seed: int = 0, **overrides) -> VanillaTransformerForConditionalGeneration:
    torch.manual_seed(seed)
    return VanillaTransformerForConditionalGeneration(
        tiny_config(vocab_size=13, max_position_embeddings=16, **overrides)
    )


def test_collator_builds_decoder_inputs_from_labels(tokenizer) -> None:
    model = digit_model()
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    batch = collator(reverse_examples(3, seed=1))
    labels = batch["labels"]
    assert bool((labels == -100).any())  # unequal lengths were padded with -100
    assert torch.equal(batch["decoder_input_ids"], shift_tokens_right(labels, PAD, START))
    assert bool((batch["decoder_input_ids"][:, 0] == START).all())


def test_gradient_accumulation_2_x_bs1_equals_bs2(tmp_path, tokenizer) -> None:
    # Target lengths 4 and 7: averaging two per-example means would differ from the per-token mean of the batch.
    data = [
        {"input_ids": [3, 4, 5, END], "labels": [5, 4, 3, END]},
        {"input_ids": [6, 7, 8, 9, 10, 11, END], "labels": [11, 10, 9, 8, 7, 6, END]},
    ]
    results = []
    for batch_size, accumulation in ((2, 1), (1, 2)):
        model = digit_model()
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = arguments(
            tmp_path / f"bs{batch_size}",
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            optim="sgd",  # plain SGD: the update is proportional to the gradient, so a mis-scaled loss shows
            learning_rate=0.5,
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
        )
        trainer = Seq2SeqTrainer(
            model=model, args=args, train_dataset=data, data_collator=DataCollatorForSeq2Seq(tokenizer, model=model)
        )
        loss = trainer.train().training_loss
        moved = max((p.detach() - start[n]).abs().max().item() for n, p in model.named_parameters())
        assert moved > 1e-3
        results.append((loss, {n: p.detach().clone() for n, p in model.named_parameters()}))

    (loss_big, params_big), (loss_acc, params_acc) = results
    assert loss_acc == pytest.approx(loss_big, rel=1e-5)
    for name in params_big:
        torch.testing.assert_close(params_acc[name], params_big[name], atol=1e-6, rtol=1e-5, msg=name)


def exact_match(predictions, examples) -> float:
    """Share of generated sequences (after `<s>`, up to and including `</s>`) equal to the labels."""
    correct = 0
    for row, example in zip(predictions.tolist(), examples, strict=True):
        tokens = [t for t in row if t != -100][1:]
        if END in tokens:
            tokens = tokens[: tokens.index(END) + 1]
        correct += tokens == example["labels"]
    return correct / len(examples)


def test_seq2seq_trainer_learns_to_reverse_digit_sequences(tmp_path, tokenizer) -> None:
    model = digit_model(d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128)
    test = reverse_examples(100, seed=99)
    args = arguments(
        tmp_path,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=100,
        num_train_epochs=6,
        learning_rate=3e-3,
        warmup_steps=30,
        lr_scheduler_type="linear",
        logging_steps=50,
        predict_with_generate=True,
        generation_max_length=10,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=reverse_examples(2000, seed=0),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    untrained = exact_match(trainer.predict(test).predictions, test)
    trainer.train()
    prediction = trainer.predict(test)
    assert prediction.predictions.shape[0] == 100
    assert bool((torch.as_tensor(prediction.predictions)[:, 0] == START).all())
    solved = exact_match(prediction.predictions, test)
    assert untrained < 0.05
    assert solved >= 0.9, f"exact match {solved:.2f} after training"
    assert prediction.metrics["test_loss"] < 0.2
