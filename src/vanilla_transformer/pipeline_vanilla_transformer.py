"""A translation pipeline for encoder-decoder models, registered as the task "vanilla-translation".

transformers 5.x removed `pipeline("translation")`. This file brings it back as a custom pipeline: saved next to
a model with `pipe.save_pretrained(folder)` (which writes `custom_pipelines` into `config.json` and copies this
file), it loads where this package is not installed:

    pipe = pipeline("vanilla-translation", model=folder, trust_remote_code=True)
    pipe(["a sentence", "another one"], num_beams=4, max_new_tokens=64)
    # [{"translation_text": "..."}, {"translation_text": "..."}]

Shipped to the Hub as remote code: imports only the standard library, torch and transformers. The task is not
called "translation" because transformers rejects that removed task name before looking at custom pipelines.
"""

import torch
from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "vanilla-translation"

# Keyword arguments handled by the pipeline itself; every other keyword goes to `model.generate()`.
_PREPROCESS_KEYS = ("truncation", "max_source_length")
_POSTPROCESS_KEYS = ("skip_special_tokens", "clean_up_tokenization_spaces")


class VanillaTranslationPipeline(Pipeline):
    """Translate text with any seq2seq model that has `generate()` and a tokenizer.

    Call with a string (returns a list with one `{"translation_text": str}` per returned sequence) or a list of
    strings (returns one such result per string; flattened to one dict per string when each has a single
    sequence). Generation keywords (`num_beams`, `length_penalty`, `max_new_tokens`, `num_return_sequences`,
    ...) pass through to `model.generate()`, at construction or per call; `batch_size` batches inputs.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, **kwargs: object) -> tuple[dict, dict, dict]:
        preprocess = {key: kwargs.pop(key) for key in _PREPROCESS_KEYS if key in kwargs}
        postprocess = {key: kwargs.pop(key) for key in _POSTPROCESS_KEYS if key in kwargs}
        return preprocess, kwargs, postprocess  # the rest are generation parameters

    def __call__(self, inputs: str | list[str], **kwargs: object) -> list:
        """Translate one string or a list of strings (see the class docstring for the return format)."""
        if isinstance(inputs, str):
            return super().__call__(inputs, **kwargs)
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(text, str) for text in inputs):
            raise TypeError(f"{TASK} takes a string or a list of strings, got {type(inputs).__name__}.")
        results = super().__call__(list(inputs), **kwargs)
        if all(len(result) == 1 for result in results):
            return [result[0] for result in results]
        return results

    def preprocess(
        self, text: str, truncation: bool = True, max_source_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """One string -> `input_ids` and `attention_mask` of shape (1, S), truncated to what the model accepts."""
        if not isinstance(text, str):
            raise TypeError(f"{TASK} takes strings, got {type(text).__name__}.")
        if max_source_length is None:
            limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
            max_source_length = min(limit for limit in limits if isinstance(limit, int) and limit > 0)
        return self.tokenizer(
            text, return_tensors="pt", truncation=truncation, max_length=max_source_length if truncation else None
        )

    def _forward(self, model_inputs: dict[str, torch.Tensor], **generate_kwargs: object) -> dict[str, torch.Tensor]:
        """(B, S) inputs -> `output_ids` (B, R, L) for R = `num_return_sequences` generated sequences each."""
        batch = model_inputs["input_ids"].shape[0]
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        return {"output_ids": output_ids.reshape(batch, -1, output_ids.shape[-1])}

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[dict[str, str]]:
        """(1, R, L) ids of one input -> R dicts `{"translation_text": str}`."""
        texts = self.tokenizer.batch_decode(
            model_outputs["output_ids"][0],
            skip_special_tokens=skip_special_tokens,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        )
        return [{"translation_text": text} for text in texts]


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=VanillaTranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)
