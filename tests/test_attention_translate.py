"""`translate --alignments`: word alignments from cross-attention on the command line, in the Pharaoh format.

On the reversal task the alignment is known (output word j is source word n-1-j).
"""

import pytest
from reversal_task import reversal_model

from vanilla_transformer.translate import main as translate_main

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_translate_prints_pharaoh_alignments(saved_model, tmp_path, capsys) -> None:
    translate_main(["--model", saved_model, "--alignments", "--num-beams", "2", "a b c d e", "j k l"])
    assert capsys.readouterr().out.splitlines() == ["e d c b a ||| 4-0 3-1 2-2 1-3 0-4", "l k j ||| 2-0 1-1 0-2"]
    source = tmp_path / "in.txt"
    source.write_text("f g h i\n\nj k l\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    translate_main(
        ["--model", saved_model, "--alignments", "--alignment-layer", "-1", "--file", str(source)]
        + ["--output", str(output)]
    )
    assert output.read_text(encoding="utf-8").splitlines() == [
        "i h g f ||| 3-0 2-1 1-2 0-3",
        " ||| ",
        "l k j ||| 2-0 1-1 0-2",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--alignment-layer", "0", "a b"], "--alignment-layer needs --alignments"),
        (["--alignments", "--alignment-layer", "2", "a b"], "alignment layer 2 does not exist"),
        (["--alignments", "--alignment-layer", "-3", "a b"], "alignment layer -3 does not exist"),
    ],
)
def test_translate_refuses_alignment_mistakes_with_status_2(saved_model, argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        translate_main(["--model", saved_model, *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
