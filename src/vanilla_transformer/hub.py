"""Saving a finished run and publishing it: the filled model card, the Hub upload.

Not shipped to the Hub. A published repo holds exactly what `from_pretrained(..., trust_remote_code=True)` and
`AutoTokenizer.from_pretrained` need: config, weights, generation config, the shipped model code, the tokenizer
files, the code of the "vanilla-translation" pipeline, and `README.md` (the project's `model_card.md` filled with
this run's config, data and scores).
"""

import os
import re
import tempfile

import yaml
from huggingface_hub import HfApi
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .saving import save_with_pipeline

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
TEMPLATE_NOTE = re.compile(r"<!--.*?-->\n*", re.DOTALL)  # notes for the template's editors, not for the card


def fill_model_card(template: str, values: dict[str, str]) -> str:
    """Replace every `{{ name }}` in `template` by `values[name]` and drop the template's `<!-- ... -->` notes.

    Raises:
        KeyError: the template has a placeholder with no value (a card is never published half-filled).
    """
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise KeyError(f"The model card template has placeholders without values: {missing}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), TEMPLATE_NOTE.sub("", template))


def card_values(run: dict, model: PreTrainedModel, results: dict, training: dict) -> dict[str, str]:
    """The values of the card's placeholders for one run.

    Args:
        run: the run config as a dict (`RunConfig.to_dict()`).
        model: the trained model.
        results: scores of `final_evaluation` (may be empty).
        training: {"steps", "minutes", "processes", "device"} of the run.
    """
    data = run["data"]
    src, tgt = data["source_lang"], data["target_lang"]
    if data["quickstart"] is not None:
        task = data["quickstart"]
        source = (
            f"the offline quick-start task: numbers 0 to {task['max_number']} written out in German words (source) "
            "and English words (target) with `num2words`"
        )
        if task.get("cover_below"):
            source += (
                f"; every number below {task['cover_below']} and every round number (7, 40, 300, 5000, ...) is in "
                "training"
            )
        source += "; validation and test numbers are held out from training"
    elif data["dataset"]:
        source = f"the Hub dataset `{data['dataset']}` (configuration `{data['dataset_config']}`)"
    else:
        files = {k: data[k] for k in ("train_file", "validation_file", "test_file") if data[k]}
        source = "local files: " + ", ".join(f"{k} `{os.path.basename(v)}`" for k, v in files.items())
    if results:
        scores = (
            f"| {results['split']} | {int(results['n'])} | {results['bleu']:.2f} | {results['chrf']:.2f} "
            f"| {results['exact_match']:.1f} |"
        )
        samples = "\n".join(f"- `{s}` -> `{h}` (reference: `{r}`)" for s, r, h in results["samples"])
    else:
        scores, samples = "| (not evaluated) | | | | |", "(none)"
    n_params = sum(p.numel() for p in model.parameters())
    cfg, train, gen = model.config, run["training"], run["generation"]
    batch = f"{train['max_tokens']} tokens" if train["max_tokens"] else f"{train['batch_size']} pairs"
    return {
        "source_lang": src,
        "target_lang": tgt,
        "datasets_yaml": f"datasets:\n- {data['dataset']}\n" if data["dataset"] else "",
        "data_description": source,
        "model_type": cfg.model_type,
        "model_summary": (
            f"{n_params / 1e6:.2f}M parameters; d_model {getattr(cfg, 'd_model', '?')}, "
            f"{getattr(cfg, 'encoder_layers', '?')}+{getattr(cfg, 'decoder_layers', '?')} layers, "
            f"vocabulary {cfg.vocab_size}"
        ),
        "training_summary": (
            f"{training['steps']} optimizer steps in {training['minutes']:.1f} minutes on {training['processes']} "
            f"process(es), {training['device']}"
        ),
        "recipe": (
            f"Adam β₁ = {train['adam_beta1']}, β₂ = {train['adam_beta2']}, ε = {train['adam_epsilon']:g}; warm-up "
            f"{train['warmup_steps']} steps; label smoothing {train['label_smoothing']}; dropout "
            f"{getattr(cfg, 'dropout', '?')}; batches of {batch} per process × "
            f"{train['gradient_accumulation_steps']} accumulated"
        ),
        "label_smoothing": str(train["label_smoothing"]),
        "example_source": repr(results["samples"][0][0]) if results and results["samples"] else '"..."',
        "decoding": f"beam search with {gen['num_beams']} beams, length penalty {gen['length_penalty']}",
        "results_table": scores,
        "samples": samples,
        "run_config": yaml.safe_dump(run, sort_keys=False).strip(),
    }


def stage_repo(folder: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, card: str) -> list[str]:
    """Write the files of a Hub repo into `folder`: model + code + generation config, tokenizer, the translation
    pipeline's code, README.md.

    Returns:
        The sorted relative paths written.
    """
    save_with_pipeline(model, tokenizer, folder)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(card)
    return sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )


def push_to_hub(
    repo_id: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    card: str,
    private: bool = False,
    commit_message: str = "Upload vanilla-transformer translation model",
) -> str:
    """Create (or reuse) the model repo `repo_id` and upload one commit with the staged files.

    Returns:
        The URL of the commit.
    """
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        stage_repo(folder, model, tokenizer, card)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
