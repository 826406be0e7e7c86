"""The training objective of the recipe: label-smoothed cross-entropy (paper Section 5.4), memory-lean.

A model's `outputs.loss` is the plain cross-entropy, as everywhere in transformers (evaluation loss and perplexity
mean what users expect). Label smoothing is a property of the training recipe, so it lives here and reaches
`Trainer` as its `compute_loss_func` (Trainer then pops the labels, and the model computes no loss of its own).
It works for any seq2seq model whose output has `logits` (B, T, V): ours and `MarianMTModel` train with the same
objective and the same implementation.

Not shipped to the Hub: the model files never import this module.
"""

import torch


class _LabelSmoothedCrossEntropy(torch.autograd.Function):
    """`cross_entropy(logits, labels, ignore_index, reduction="sum", label_smoothing=epsilon)` and the summed NLL.

    loss_i = (1 - epsilon) * (lse_i - z_i,y) + epsilon * (lse_i - mean_v z_i,v), lse = logsumexp(z). The backward
    pass keeps only the logits (already alive: the model returns them) and the (N,) lse, instead of a (N, V)
    log-softmax, and writes the gradient softmax(z) - (1 - epsilon) onehot(y) - epsilon / V straight into one
    (N, V) tensor. Float32 math in row chunks, so half-precision logits are never copied to float32 whole.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        logits: torch.Tensor,
        labels: torch.Tensor,
        epsilon: float,
        ignore_index: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: logits (N, V), labels (N,). Returns: summed smoothed loss and summed NLL, float32 scalars."""
        rows = max(1, 2**22 // logits.shape[-1])  # float32 working set of ~16 MiB per chunk
        valid = labels != ignore_index
        safe_labels = labels.masked_fill(~valid, 0)
        lse = torch.cat([torch.logsumexp(part.float(), dim=-1) for part in logits.split(rows)])  # (N,)
        target = logits.gather(1, safe_labels[:, None]).squeeze(1).float()  # (N,)
        mean = logits.mean(dim=-1, dtype=torch.float32)  # (N,)
        nll = lse - target
        per_token = (1.0 - epsilon) * nll + epsilon * (lse - mean)
        ctx.save_for_backward(logits, lse, safe_labels, valid)
        ctx.epsilon, ctx.rows = epsilon, rows
        nll_sum = (nll * valid).sum()
        ctx.mark_non_differentiable(nll_sum)  # the NLL is reported, not trained on
        return (per_token * valid).sum(), nll_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor, _grad_nll: object) -> tuple:
        logits, lse, safe_labels, valid = ctx.saved_tensors
        epsilon, rows = ctx.epsilon, ctx.rows
        scale = (grad_output * valid)[:, None]  # (N, 1); ignored positions get no gradient
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], rows):
            part = slice(start, start + rows)
            if logits.dtype == torch.float32:
                chunk = torch.sub(logits[part], lse[part, None], out=grad[part]).exp_()  # softmax, in place
            else:
                chunk = (logits[part].float() - lse[part, None]).exp_()
            chunk.sub_(epsilon / logits.shape[-1])
            chunk.scatter_add_(1, safe_labels[part, None], chunk.new_full((chunk.shape[0], 1), epsilon - 1.0))
            chunk.mul_(scale[part])
            if chunk.data_ptr() != grad[part].data_ptr():
                grad[part] = chunk
        return grad, None, None, None


def label_smoothed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, epsilon: float, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed label-smoothed cross-entropy and summed NLL over the non-ignored tokens.

    Args:
        logits: (B, T, V) or (N, V) scores.
        labels: (B, T) or (N,) target ids aligned with the logits; `ignore_index` positions count for nothing.
        epsilon: epsilon_ls in [0, 1); 0 gives the plain cross-entropy.

    Returns:
        (smoothed, nll): float32 scalars; `smoothed` is differentiable, `nll` is not.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {epsilon}.")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} are not aligned.")
    return _LabelSmoothedCrossEntropy.apply(
        logits.reshape(-1, logits.shape[-1]), labels.to(logits.device).reshape(-1), float(epsilon), ignore_index
    )


class LabelSmoothedLoss:
    """Trainer's `compute_loss_func`: the summed label-smoothed cross-entropy divided by the target tokens.

    Trainer passes `num_items_in_batch`, the non-ignored target tokens of the whole accumulated (and, with
    `average_tokens_across_devices`, distributed) batch, so the loss is the paper's per-token average however the
    batch is split. Each call also records the batch's NLL (the plain cross-entropy) for the training log:
    `pop_nll()` returns the per-token NLL since the previous call.

    Args:
        epsilon: epsilon_ls (the paper: 0.1).
    """

    def __init__(self, epsilon: float) -> None:
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {epsilon}.")
        self.epsilon = float(epsilon)
        self._nll_sum: torch.Tensor | float = 0.0  # tensors: no device sync per step
        self._tokens: torch.Tensor | int = 0

    def __call__(
        self, outputs: object, labels: torch.Tensor | None, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        if labels is None:
            raise ValueError("The label-smoothed loss needs `labels` (batches of target ids with -100 padding).")
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        smoothed, nll = label_smoothed_cross_entropy(logits, labels, self.epsilon)
        tokens = (labels != -100).sum()
        if torch.is_grad_enabled():  # a training step (evaluation runs without gradients)
            self._nll_sum = self._nll_sum + nll
            self._tokens = self._tokens + tokens
        if num_items_in_batch is None:
            if not int(tokens):
                raise ValueError("`labels` holds no target token (every position is -100): the loss would be 0 / 0.")
            num_items_in_batch = tokens.to(smoothed.device)
        elif isinstance(num_items_in_batch, torch.Tensor):
            num_items_in_batch = num_items_in_batch.to(smoothed.device)
        return smoothed / num_items_in_batch

    def pop_nll(self) -> float | None:
        """Per-token NLL of the batches seen since the last call (this process), or None if there were none."""
        tokens = int(self._tokens)
        if not tokens:
            return None
        value = float(self._nll_sum) / tokens
        self._nll_sum, self._tokens = 0.0, 0
        return value
