"""The paper's recipe as train.py sets it up: Adam, the warm-up + inverse-square-root schedule, beam search."""

import json
import os

import pytest
import torch
from train_helpers import ROOT
from transformers import get_scheduler

from vanilla_transformer.config_file import ConfigError, model_config_of, parse_config
from vanilla_transformer.training import build_training_args, paper_learning_rate

BASE = os.path.join(ROOT, "configs", "base.yaml")


def paper_schedule(step: int, d_model: int, warmup: int) -> float:
    """Section 5.3: lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)."""
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def test_training_arguments_follow_the_paper(tmp_path):
    config = parse_config([BASE, f"output_dir={tmp_path}"], BASE)
    args = build_training_args(config, model_config_of(config))
    assert args.learning_rate == pytest.approx(512**-0.5 * 4000**-0.5)  # the paper's peak, set once
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (0.9, 0.98, 1e-9)
    assert args.weight_decay == 0.0 and args.warmup_steps == 4000 and args.max_steps == 100000
    assert args.lr_scheduler_type == "inverse_sqrt" and args.predict_with_generate
    assert args.metric_for_best_model == "bleu" and args.load_best_model_at_end


@pytest.mark.parametrize("d_model,warmup", [(512, 4000), (128, 400)])
def test_schedule_is_the_papers(d_model, warmup):
    peak = paper_learning_rate(d_model, warmup)
    assert peak == pytest.approx(paper_schedule(warmup, d_model, warmup))
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = get_scheduler("inverse_sqrt", optimizer, num_warmup_steps=warmup)
    lrs = [peak * factor for factor in (scheduler.lr_lambdas[0](s) for s in range(6 * warmup + 1))]
    for step in (warmup // 2, warmup, 2 * warmup, 6 * warmup):
        # Hugging Face's schedule is the paper's shifted by one step (it starts at lr 0 at step 0)
        assert lrs[step] == pytest.approx(paper_schedule(max(step, 1), d_model, warmup), rel=2 / warmup + 1e-6)
    assert max(lrs) == pytest.approx(peak)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generation_config_saves_for_greedy_and_beam(tmp_path, num_beams):
    """Beam-only settings (length penalty, early stopping) must not leak into a greedy config: it would not save."""
    from vanilla_transformer.tokenizer import train_joint_bpe
    from vanilla_transformer.training import build_model

    quickstart = os.path.join(ROOT, "configs", "quickstart.yaml")
    config = parse_config(
        [quickstart, f"output_dir={tmp_path}", f"generation.num_beams={num_beams}", "model.config.d_model=32"],
        quickstart,
    )
    tokenizer = train_joint_bpe(["eins zwei drei", "one two three"] * 4, vocab_size=40, min_frequency=1)
    model = build_model(config, tokenizer)
    model.generation_config.save_pretrained(tmp_path)  # raises if the settings contradict each other
    gen = model.generation_config
    assert gen.num_beams == num_beams and gen.max_length == config.generation.max_new_tokens + 1
    if num_beams > 1:
        assert gen.length_penalty == config.generation.length_penalty and gen.early_stopping is True


def test_a_given_learning_rate_is_honoured_and_zero_is_refused(tmp_path):
    """`training.learning_rate: 0` would train nothing (it used to fall back to the paper's schedule silently)."""
    config = parse_config([BASE, f"output_dir={tmp_path}", "training.learning_rate=3e-4"], BASE)
    assert build_training_args(config, model_config_of(config)).learning_rate == 3e-4
    for value in ("0", "-1e-3"):
        with pytest.raises(ConfigError, match=r"`training\.learning_rate` must be positive, or null for the paper"):
            parse_config([BASE, f"training.learning_rate={value}"], BASE)


def test_max_new_tokens_may_use_every_position(tmp_path):
    """Generating N tokens feeds the decoder positions 0..N-1: N = max_position_embeddings fits, N + 1 does not."""
    from vanilla_transformer.tokenizer import train_joint_bpe
    from vanilla_transformer.training import build_model

    quickstart = os.path.join(ROOT, "configs", "quickstart.yaml")
    sizes = ["model.config.d_model=32", "model.config.max_position_embeddings=16", "data.max_source_length=16"]
    sizes.append("data.max_target_length=16")
    config = parse_config([quickstart, f"output_dir={tmp_path}", *sizes, "generation.max_new_tokens=16"], quickstart)
    with pytest.raises(ConfigError, match=r"`generation\.max_new_tokens` \(17\) exceeds the model's max_position_emb"):
        parse_config([quickstart, *sizes, "generation.max_new_tokens=17"], quickstart)
    tokenizer = train_joint_bpe(["eins zwei drei", "one two three"] * 4, vocab_size=40, min_frequency=1)
    model = build_model(config, tokenizer).eval()
    source = tokenizer(["eins zwei"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**source, num_beams=1, min_new_tokens=16)  # the saved max_length: 16 new tokens
    assert out.shape[1] == 1 + 16  # decoder start + 16 tokens, the last at position 15


def test_the_best_evaluation_between_two_saves_is_the_final_model(tmp_path, monkeypatch, capsys):
    """eval_steps 5, save_steps 10: the best validation BLEU comes at step 15, which `save_steps` does not save."""
    import sys

    from safetensors.torch import load_file
    from train_helpers import write_config

    sys.path.insert(0, ROOT)
    import train
    from vanilla_transformer import training

    out = tmp_path / "run"
    config = write_config(str(tmp_path / "tiny.yaml"), str(out), training={"eval_steps": 5, "max_steps": 20})
    bleu_by_evaluation = iter([10.0, 20.0, 60.0, 50.0])  # steps 5, 10, 15, 20; then the final test evaluation
    real_score = training.score

    def scripted_score(hypotheses: list[str], references: list[str]) -> dict[str, float]:
        return real_score(hypotheses, references) | {"bleu": next(bleu_by_evaluation, 0.0)}

    monkeypatch.setattr(training, "score", scripted_score)
    train.main([config])
    capsys.readouterr()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] == 60.0 and state["best_model_checkpoint"].endswith("checkpoint-15")
    best = load_file(out / "checkpoint-15" / "model.safetensors")
    final = load_file(out / "model.safetensors")
    assert best.keys() == final.keys() and all(torch.equal(best[k], final[k]) for k in best)
    assert not torch.equal(load_file(out / "checkpoint-20" / "model.safetensors")["model.shared.weight"],
                           final["model.shared.weight"])  # fmt: skip
