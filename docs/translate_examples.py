"""Regenerate the README's translate examples by running them on a trained quick-start model.

    python docs/translate_examples.py runs/quickstart          # rewrite docs/translate_examples.md and README.md
    python docs/translate_examples.py runs/quickstart --check  # only compare; exit status 1 if they differ

Run from anywhere; RUN_DIR is the folder `accelerate launch train.py` saved (`runs/quickstart` by default). Each
command of `COMMANDS` runs verbatim in bash, in a temporary folder where `runs/quickstart` is RUN_DIR, and its
output (standard output, then standard error without transformers' weight-loading progress bar) is written below
the command. The result goes to docs/translate_examples.md and, between the two marker lines, into README.md;
tests/test_docs.py checks that the README holds exactly that file.
"""

import argparse
import difflib
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "translate_examples.md")
README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- begin: docs/translate_examples.md, written by docs/translate_examples.py -->"
END = "<!-- end: docs/translate_examples.md -->"

# (command as the README shows it, the exit status it must end with)
COMMANDS = [
    ('python -m vanilla_transformer.translate --model runs/quickstart "dreihundertzwölf" "siebzehn"', 0),
    ('echo "neunundneunzig" | python -m vanilla_transformer.translate --model runs/quickstart --num-beams 1', 0),
    (  # a line of 200 words: longer than the model's 128 positions
        "python -m vanilla_transformer.translate --model runs/quickstart "
        '"$(python -c \'print(" ".join(["sieben"] * 200))\')"',
        2,
    ),
]


def run_examples(run_dir: str) -> str:
    """Run `COMMANDS` against the model in `run_dir`: the Markdown block of commands and what they print.

    Raises:
        RuntimeError: a command ended with another exit status than expected.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # this Python's `python`
    lines = ["```console"]
    with tempfile.TemporaryDirectory() as folder:
        os.makedirs(os.path.join(folder, "runs"))
        os.symlink(os.path.abspath(run_dir), os.path.join(folder, "runs", "quickstart"))
        for command, status in COMMANDS:
            done = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600
            )
            if done.returncode != status:
                raise RuntimeError(f"`{command}` exited with {done.returncode}, not {status}:\n{done.stderr[-3000:]}")
            errors = [line for line in done.stderr.splitlines() if line.strip() and "Loading weights" not in line]
            lines += [f"$ {command}", *done.stdout.splitlines(), *errors]
    return "\n".join(lines + ["```"]) + "\n"


def readme_with(examples: str, readme: str) -> str:
    """`readme` with the text between the marker lines replaced by `examples`.

    Raises:
        ValueError: the README lacks the marker lines.
    """
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md needs the lines {BEGIN!r} and {END!r}, once each, in that order.")
    head, rest = readme.split(BEGIN + "\n", 1)
    return head + BEGIN + "\n" + examples + END + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a trained quick-start run (the output_dir of `accelerate launch train.py`)")
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run_dir, "config.json")):
        parser.error(
            f"{args.run_dir} holds no saved model (no config.json): train one with `accelerate launch train.py`"
        )
    examples = run_examples(args.run_dir)
    with open(README, encoding="utf-8") as handle:
        readme = handle.read()
    new_readme = readme_with(examples, readme)
    if args.check:
        with open(EXAMPLES, encoding="utf-8") as handle:
            saved = handle.read()
        if saved == examples and new_readme == readme:
            return 0
        diff = difflib.unified_diff(saved.splitlines(), examples.splitlines(), EXAMPLES, "this run", lineterm="")
        print("\n".join(diff) or "README.md does not hold docs/translate_examples.md", file=sys.stderr)
        return 1
    with open(EXAMPLES, "w", encoding="utf-8") as handle:
        handle.write(examples)
    with open(README, "w", encoding="utf-8") as handle:
        handle.write(new_readme)
    print(f"wrote {os.path.relpath(EXAMPLES)} and the examples in {os.path.relpath(README)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
