"""training.max_train_minutes counts the time spent in training steps only, not evaluation or checkpointing."""

from transformers import TrainerControl, TrainerState, TrainingArguments

from vanilla_transformer import training


def test_time_limit_counts_training_steps_only(monkeypatch, tmp_path) -> None:
    clock = [0.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: clock[0])
    callback = training.TimeLimitCallback(minutes=1.0)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, eval_strategy="steps", eval_steps=1)
    state, control = TrainerState(), TrainerControl()
    stopped_at = None
    for step in range(1, 10):
        callback.on_step_begin(args, state, control)
        clock[0] += 20.0  # a 20-second training step
        state.global_step = step
        control = callback.on_step_end(args, state, control)
        if control.should_training_stop:
            stopped_at = step
            break
        clock[0] += 300.0  # then five minutes of evaluation and saving, which must not count
    assert stopped_at == 4  # 80 s of steps > 60 s; wall clock would have stopped after the first step
    assert control.should_save and control.should_evaluate
