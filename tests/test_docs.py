"""The docs: the README's translate examples are what the commands print, and no text speaks a build-time language."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs"))
import translate_examples  # noqa: E402  (docs/translate_examples.py)

# What a reader cannot decode: paths of one machine, and words from how the project was built.
UNREADABLE = re.compile(
    r"/work/|/tmp/|/home/|/root/|[A-Z]:\\|the seeds|seeds'|the issue's|issue \d|issues \d|device tool"
    r"|specified set-?up|this session|this task|the lead's",
    re.IGNORECASE,
)
DOCS = ["README.md", "model_card.md", *glob.glob("bench/*.md", root_dir=ROOT), *glob.glob("docs/*.md", root_dir=ROOT)]


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def test_readme_holds_the_generated_translate_examples() -> None:
    examples = read("docs/translate_examples.md")
    readme = read("README.md")
    assert translate_examples.readme_with(examples, readme) == readme  # the block between the markers is the file
    commands = [line[2:] for line in examples.splitlines() if line.startswith("$ ")]
    assert commands == [command for command, _ in translate_examples.COMMANDS]


def test_readme_block_replacement_needs_both_markers() -> None:
    readme = f"intro\n{translate_examples.BEGIN}\nold\n{translate_examples.END}\noutro\n"
    assert translate_examples.readme_with("new\n", readme) == (
        f"intro\n{translate_examples.BEGIN}\nnew\n{translate_examples.END}\noutro\n"
    )
    with pytest.raises(ValueError, match="needs the lines"):
        translate_examples.readme_with("new\n", "no markers\n")


@pytest.mark.parametrize("path", DOCS)
def test_docs_have_no_machine_paths_or_build_words(path: str) -> None:
    found = [(n, line) for n, line in enumerate(read(path).splitlines(), 1) if UNREADABLE.search(line)]
    assert not found, f"{path}: {found}"


@pytest.mark.slow
@pytest.mark.numerics
def test_translate_examples_are_what_a_fresh_quickstart_model_prints(quickstart_run) -> None:
    """The committed examples come out of this machine's own quick-start run: the same translations (the examples
    are numbers the quick-start model translates exactly) and the same messages."""
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "docs", "translate_examples.py"), quickstart_run.output_dir, "--check"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
