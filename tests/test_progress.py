"""Training progress (vanilla_transformer.progress): the progress lines and the loss curve."""

import sys
from types import SimpleNamespace

from vanilla_transformer.progress import ProgressReport, plot_loss_curve, progress_line

HISTORY = [
    {"step": 100, "loss": 3.2, "nll_loss": 2.9, "learning_rate": 1e-3, "epoch": 0.3},
    {"step": 200, "loss": 2.1, "nll_loss": 1.8, "learning_rate": 2e-3, "epoch": 0.6},
    {"step": 200, "eval_loss": 2.0, "eval_bleu": 41.5, "eval_runtime": 3.1, "epoch": 0.6},
    {"step": 300, "loss": 1.5, "nll_loss": 1.2, "learning_rate": 1.8e-3, "epoch": 0.9},
    {"step": 400, "eval_loss": 1.4, "eval_bleu": 77.25, "epoch": 1.2},
]


def test_progress_line_has_step_of_total_elapsed_and_remaining():
    line = progress_line(200, 2000, 92.4, 830.0, {"loss": 2.294, "nll_loss": 2.01, "learning_rate": 0.0022})
    assert (
        line == "step 200/2000 (10%) | elapsed 92s, remaining ~830s | loss 2.294 nll_loss 2.01 learning_rate 2.20e-03"
    )
    line = progress_line(500, 2000, 300.0, None, {"eval_bleu": 78.8, "eval_runtime": 2.0, "epoch": 1.6})
    assert line == "step 500/2000 (25%) | elapsed 300s | eval bleu 78.8"


def test_report_prints_a_line_per_log_on_the_first_process_only(capsys, monkeypatch):
    clock = iter([0.0, 0.0, 50.0, 100.0])  # created, training begins, two logs
    monkeypatch.setattr("vanilla_transformer.progress.time.monotonic", lambda: next(clock))
    report = ProgressReport(bar=False)
    state = SimpleNamespace(global_step=0, max_steps=1000, is_world_process_zero=True)
    report.on_train_begin(None, state, None)
    state.global_step = 100
    report.on_log(None, state, None, logs={"loss": 3.0})
    state.global_step = 200
    report.on_log(None, state, None, logs={"loss": 2.0})
    report.on_log(None, SimpleNamespace(global_step=200, max_steps=1000, is_world_process_zero=False), None, {"a": 1})
    assert capsys.readouterr().out.splitlines() == [
        "step 100/1000 (10%) | elapsed 50s, remaining ~450s | loss 3",
        "step 200/1000 (20%) | elapsed 100s, remaining ~400s | loss 2",
    ]


def test_loss_curve_is_drawn(tmp_path):
    path = tmp_path / "loss_curve.png"
    assert plot_loss_curve(HISTORY, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert plot_loss_curve(HISTORY[:2], str(tmp_path / "no_eval.png"))  # no validation: the BLEU panel says so
    assert plot_loss_curve([], str(tmp_path / "nothing.png"))  # a run shorter than logging_steps


def test_no_warnings_when_nothing_was_logged(tmp_path, recwarn):
    plot_loss_curve([{"step": 3, "train_runtime": 1.0}], str(tmp_path / "empty.png"))
    assert not [w for w in recwarn if "legend" in str(w.message)]


def test_without_matplotlib_the_run_goes_on_and_says_how_to_get_the_curve(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert not plot_loss_curve(HISTORY, str(tmp_path / "loss_curve.png"))
    assert not (tmp_path / "loss_curve.png").exists()
    assert "matplotlib is not installed (pip install matplotlib" in capsys.readouterr().err
