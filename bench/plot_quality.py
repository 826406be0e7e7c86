"""Draw validation BLEU (and validation loss) against training step for several runs, from their trainer_state.json.

Usage (from the repository root):

    python bench/plot_quality.py --out bench/quality.png \\
        "ours de-en=runs/ours-deen/checkpoint-1000/trainer_state.json" \\
        "Marian de-en=runs/marian-deen/checkpoint-900/trainer_state.json"

Each argument is LABEL=PATH; runs whose labels share a direction ("de-en", "en-de") share a panel. Also prints a
Markdown table of validation loss / BLEU at every evaluated step.
"""

import argparse
import json
import sys


def curves(path: str) -> dict[str, list[tuple[int, float]]]:
    """The (step, value) points of eval_bleu and eval_loss in one trainer_state.json."""
    with open(path, encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    out: dict[str, list[tuple[int, float]]] = {"eval_bleu": [], "eval_loss": []}
    for row in history:
        for key in out:
            if key in row:
                out[key].append((row["step"], row[key]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/trainer_state.json")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_quality.py: error: needs matplotlib (pip install -e '.[viz]').")
    runs = []
    for spec in args.runs:
        label, sep, path = spec.partition("=")
        if not sep:
            sys.exit(f"plot_quality.py: error: expected LABEL=PATH, got {spec!r}")
        runs.append((label, curves(path)))
    directions = sorted({label.split()[-1] for label, _ in runs})
    fig, axes = plt.subplots(2, len(directions), figsize=(5.5 * len(directions), 7), squeeze=False)
    for column, direction in enumerate(directions):
        for label, data in runs:
            if label.split()[-1] != direction:
                continue
            for row, key in enumerate(("eval_bleu", "eval_loss")):
                steps, values = zip(*data[key], strict=True) if data[key] else ((), ())
                axes[row][column].plot(steps, values, marker="o", label=label)
        axes[0][column].set_title(f"Multi30k {direction}")
        axes[0][column].set_ylabel("validation BLEU (cased, sacreBLEU)")
        axes[1][column].set_ylabel("validation loss (cross-entropy)")
        for row in range(2):
            axes[row][column].set_xlabel("training step")
            axes[row][column].grid(alpha=0.3)
            axes[row][column].legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    steps = sorted({step for _, data in runs for step, _ in data["eval_bleu"]})
    print("| run | " + " | ".join(f"step {step}" for step in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for label, data in runs:
        at = {step: (bleu, loss) for (step, bleu), (_, loss) in zip(data["eval_bleu"], data["eval_loss"], strict=True)}
        cells = [f"{at[s][1]:.2f} / {at[s][0]:.1f}" if s in at else "" for s in steps]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
