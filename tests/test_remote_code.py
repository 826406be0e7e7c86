"""A saved model loads with trust_remote_code=True in a fresh process where the package cannot be imported, and its
code is not run without the flag."""

import os
import subprocess
import sys
import textwrap

import torch
from conftest import tiny_config

from vanilla_transformer import VanillaTransformerForConditionalGeneration

# Put on PYTHONPATH of the child process: makes `import vanilla_transformer` fail however it is installed.
BLOCKER = """
import sys


class _BlockVanillaTransformer:
    def find_spec(self, name, path=None, target=None):
        if name == "vanilla_transformer" or name.startswith("vanilla_transformer."):
            raise ImportError(f"{name} is blocked for this test")
        return None


sys.meta_path.insert(0, _BlockVanillaTransformer())
"""

CHILD = """
import sys

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

try:
    import vanilla_transformer  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("the package is importable: the test would prove nothing")

path, inputs_file, out_file = sys.argv[1:]
inputs = torch.load(inputs_file)
config = AutoConfig.from_pretrained(path, trust_remote_code=True)
assert type(config).__module__.startswith("transformers_modules."), type(config).__module__
model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr(), "ties lost"
base = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
assert type(base).__name__ == "VanillaTransformerModel", type(base)
with torch.no_grad():
    logits = model(**inputs).logits
    hidden = base(**inputs).last_hidden_state
generated = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=5,
                           num_beams=2)
torch.save({"logits": logits, "hidden": hidden, "generated": generated}, out_file)
"""


def test_remote_code_load_in_a_fresh_process_without_the_package(tmp_path) -> None:
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(tiny_config()).eval()
    model_dir = tmp_path / "my-model.v1"  # hyphens and dots in the folder name are fine
    model.save_pretrained(model_dir)
    assert not (model_dir / "__init__.py").exists()
    input_ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    inputs = dict(
        input_ids=input_ids,
        attention_mask=(input_ids != 0).long(),
        decoder_input_ids=torch.tensor([[1, 3, 4], [1, 5, 6]]),
    )
    torch.save(inputs, tmp_path / "inputs.pt")
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "child.py").write_text(textwrap.dedent(CHILD))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "PYTHON"))}
    env.update(
        PYTHONPATH=str(tmp_path / "blocker"),
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    result = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "child.py"),
            str(model_dir),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "out.pt"),
        ],
        cwd=tmp_path,  # away from the repository, whose src/ must not be found
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    remote = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        hidden = model.model(**inputs).last_hidden_state
    generated = model.generate(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=5, num_beams=2
    )
    torch.testing.assert_close(remote["logits"], logits, atol=0, rtol=0)
    torch.testing.assert_close(remote["hidden"], hidden, atol=0, rtol=0)
    assert torch.equal(remote["generated"], generated)
    assert (tmp_path / "hf_home" / "modules" / "transformers_modules").is_dir()  # code came from the model folder


def test_remote_code_needs_trust_remote_code(checkpoint, tmp_path) -> None:
    """In a process without the package, the saved model code is not run unless `trust_remote_code=True`
    (tests/test_remote_code.py checks that it loads with the flag)."""
    script = (
        "import sys\n"
        "from transformers import AutoModelForSeq2SeqLM\n"
        "try:\n"
        f"    AutoModelForSeq2SeqLM.from_pretrained({str(checkpoint)!r})\n"
        "except ValueError as e:\n"
        "    assert 'trust_remote_code=True' in str(e), e\n"
        "    print('REFUSED')\n"
        "ran = [m for m in sys.modules if m.endswith('modeling_vanilla_transformer') or m == 'vanilla_transformer']\n"
        "print('IMPORTED', ran)\n"
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "REFUSED" in run.stdout
    assert "IMPORTED []" in run.stdout
