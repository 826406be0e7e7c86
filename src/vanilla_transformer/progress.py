"""How far a training run is: a line per `logging_steps`, a progress bar on a terminal, `loss_curve.png` at the end.

Not shipped to the Hub. Each line reads `step 200/2000 (10%) | elapsed 92s, remaining ~830s | loss 2.294 ...`
(evaluations: `... | eval bleu 78.80 ...`), so a log file shows the same progress a terminal does. The curve needs
matplotlib (`pip install matplotlib`, or the `[viz]` extra); without it the run says so and goes on.
"""

import os
import sys
import time

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

# Logged values not worth a reader's attention in a progress line.
QUIET_KEYS = ("total_flos", "epoch", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_n")


def format_seconds(seconds: float) -> str:
    """92 -> '92s', 830.4 -> '830s' (whole seconds: easy to read and to parse)."""
    return f"{max(seconds, 0.0):.0f}s"


def progress_line(step: int, total: int, elapsed: float, remaining: float | None, logs: dict) -> str:
    """One progress line: step of total, elapsed and remaining seconds, the logged values.

    Args:
        step, total: the optimizer step reached and the run's last step.
        elapsed: seconds since training started (or resumed).
        remaining: estimated seconds to the last step (None: not known yet).
        logs: what Trainer logged at this step (`loss`, `nll_loss`, `learning_rate`, `eval_bleu`, ...).
    """
    percent = f" ({100 * step / total:.0f}%)" if total > 0 else ""
    timing = f"elapsed {format_seconds(elapsed)}"
    if remaining is not None:
        timing += f", remaining ~{format_seconds(remaining)}"
    values = []
    for key, value in logs.items():
        if key in QUIET_KEYS:
            continue
        if isinstance(value, float):
            value = f"{value:.2e}" if key == "learning_rate" else f"{value:.4g}"
        values.append(f"{key.replace('eval_', 'eval ', 1)} {value}")
    return f"step {step}/{total}{percent} | {timing} | " + " ".join(values)


class ProgressReport(TrainerCallback):
    """Trainer's progress output, replaced: a line per log (every `logging_steps`, and each evaluation) with step,
    elapsed and remaining time, and a tqdm bar of the steps when `bar` is set (a terminal).

    Only the first process reports. Remaining time is extrapolated from the steps done since training (re)started.
    """

    def __init__(self, bar: bool) -> None:
        self.bar_wanted = bar
        self.bar = None
        self.start = time.monotonic()
        self.first_step = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.start, self.first_step = time.monotonic(), state.global_step
        if self.bar_wanted and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kwargs: object,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        elapsed = time.monotonic() - self.start
        done = state.global_step - self.first_step
        remaining = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
        line = progress_line(state.global_step, state.max_steps, elapsed, remaining, logs)
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def plot_loss_curve(log_history: list[dict], path: str) -> bool:
    """Draw training loss (and NLL), validation loss and validation BLEU against the step into `path` (a PNG).

    Args:
        log_history: Trainer's `state.log_history` (rows with `step` and `loss` / `eval_loss` / `eval_bleu`).
        path: the image file to write.

    Returns:
        False when matplotlib is not installed (a message says how to get it), else True.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            f"Not drawing {os.path.basename(path)}: matplotlib is not installed (pip install matplotlib, or "
            "install this package with its [viz] extra).",
            file=sys.stderr,
            flush=True,
        )
        return False

    def series(key: str) -> tuple[list[int], list[float]]:
        rows = [row for row in log_history if key in row and "step" in row]
        return [row["step"] for row in rows], [row[key] for row in rows]

    figure, (losses, bleu) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = 0
    for key, label in (("loss", "training loss"), ("nll_loss", "training NLL"), ("eval_loss", "validation loss")):
        steps, values = series(key)
        if steps:
            losses.plot(steps, values, marker="." if key == "eval_loss" else None, label=label)
            drawn += 1
    losses.set_xlabel("step")
    losses.set_ylabel("loss per target token")
    if drawn:
        losses.legend()
    else:
        losses.text(0.5, 0.5, "no loss logged (fewer steps than logging_steps)", ha="center", va="center",
                    transform=losses.transAxes)  # fmt: skip
    steps, values = series("eval_bleu")
    if steps:
        bleu.plot(steps, values, marker="o", color="tab:green")
    else:
        bleu.text(0.5, 0.5, "no validation during training", ha="center", va="center", transform=bleu.transAxes)
    bleu.set_xlabel("step")
    bleu.set_ylabel("validation BLEU")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
