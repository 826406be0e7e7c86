"""Save a finished model so that it translates, as a pipeline, where this package is not installed.

Not shipped to the Hub. `save_with_pipeline` is what train.py, checkpoint averaging and the Hub upload use, so
every model they write carries the pipeline code beside the model code:

    pipe = pipeline("vanilla-translation", model=folder, trust_remote_code=True)
"""

import os

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .pipeline_vanilla_transformer import VanillaTranslationPipeline


def save_with_pipeline(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike) -> None:
    """Save `model` (weights, config, generation config, model code), `tokenizer` and the pipeline into `folder`.

    `config.json` gets `custom_pipelines` naming `VanillaTranslationPipeline` for the task "vanilla-translation"
    and `pipeline_vanilla_transformer.py` is copied into the folder (transformers' `Pipeline.save_pretrained`).
    The model stays where it is (no move between devices), and its in-memory config is left as it was.

    Args:
        model: any seq2seq model with `generate()` (ours, or e.g. a `MarianMTModel`).
        tokenizer: its tokenizer.
        folder: the output folder (created if missing).
    """
    config = model.config
    had_pipelines, before = hasattr(config, "custom_pipelines"), getattr(config, "custom_pipelines", None)
    device = None if getattr(model, "hf_device_map", None) else model.device  # None would move it to GPU 0
    try:
        VanillaTranslationPipeline(model=model, tokenizer=tokenizer, device=device).save_pretrained(str(folder))
    finally:
        if had_pipelines:
            config.custom_pipelines = before
        elif hasattr(config, "custom_pipelines"):
            del config.custom_pipelines
