"""The optimised part of the latent: which W+ rows move, how they compose with w0, and the Adam update.

DragGAN optimises the first k rows of W+ (W mode: one w repeated into them) and keeps the others at w0
(docs/architecture.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dragkit.engine.result import StepFailedError
from dragkit.nn.protocol import Generator, SynthesisResult

__all__ = ["LatentRows", "adam_step"]


class LatentRows:
    """w0 [1, num_ws, w_dim] and the rows ``optimize_ws`` that are optimised ('w+': one vector each; 'w': one w)."""

    def __init__(self, w0: torch.Tensor, optimize_ws: Sequence[int], w_mode: str) -> None:
        self.w0 = w0
        self.optimize_ws = tuple(optimize_ws)
        self.w_mode = w_mode
        self._index = torch.tensor(self.optimize_ws, dtype=torch.long, device=w0.device)

    def initial(self) -> torch.Tensor:
        """The optimised rows at w0: [1, k, w_dim] (W+) or [1, 1, w_dim] (W)."""
        rows = self.w0.index_select(1, self._index)
        return (rows[:, :1] if self.w_mode == "w" else rows).clone()

    def compose(self, ws_opt: torch.Tensor) -> torch.Tensor:
        """Optimised rows → full W+ [1, num_ws, w_dim]; other rows stay at w0 (W mode: one w repeated)."""
        rows = ws_opt.expand(1, len(self.optimize_ws), -1) if self.w_mode == "w" else ws_opt
        return self.w0.index_copy(1, self._index, rows)

    def compose_layers(self, ws_opt: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`compose` as num_ws tensors [1, w_dim]: optimised rows from ``ws_opt``, the rest w0's rows.

        Passed to ``synthesize`` this keeps the fixed rows out of autograd, so the layers they modulate skip their
        weight-gradient work; the values, and so the results, are the same.
        """
        w_mode = self.w_mode == "w"
        layers = list(self.w0.unbind(1))
        for pos, layer in enumerate(self.optimize_ws):
            layers[layer] = ws_opt[:, 0 if w_mode else pos]
        return layers

    def synthesize(self, generator: Generator, ws_opt: torch.Tensor, block: int, *, full: bool) -> SynthesisResult:
        """``generator.synthesize`` of these rows with w0: the whole generator from one W+ tensor (``full``: the
        reference path, as the official code), else stopped after ``block`` with per-layer rows (fast)."""
        if full:
            return generator.synthesize(self.compose(ws_opt), block)
        return generator.synthesize(self.compose_layers(ws_opt), block, stop_after_features=True)


#: torch.optim.Adam's defaults, which DragGAN uses.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def adam_step(
    param: torch.Tensor, grad: torch.Tensor, adam: dict[str, torch.Tensor] | None, lr: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One Adam update (default betas and eps, no weight decay) as a pure function; the inputs are left untouched.

    ``adam``: None (first step) or {"step": 0-d float32 tensor, "exp_avg", "exp_avg_sq": tensors shaped like
    ``param``}. The arithmetic is torch's single-tensor Adam, op for op, so results equal ``torch.optim.Adam``'s
    bit for bit without importing ``torch.optim`` (whose import costs seconds at start-up). Returns the updated
    parameter (detached) and moments; raises :class:`StepFailedError` when the update fails or is not finite.
    """
    beta1, beta2 = ADAM_BETAS
    with torch.no_grad():
        param, grad = param.detach(), grad.detach()
        try:
            if adam is None:
                step = torch.tensor(0.0)
                exp_avg, exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
            else:
                step, exp_avg, exp_avg_sq = adam["step"], adam["exp_avg"], adam["exp_avg_sq"]
            step = step + 1
            exp_avg = exp_avg.lerp(grad, 1 - beta1)
            exp_avg_sq = exp_avg_sq.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
            t = step.item()
            step_size = lr / (1 - beta1**t)
            denom = (exp_avg_sq.sqrt() / (1 - beta2**t) ** 0.5).add_(ADAM_EPS)
            new_param = param.addcdiv(exp_avg, denom, value=-step_size)
        except (RuntimeError, ArithmeticError) as exc:  # an lr so large that the step overflows; a broken state
            raise StepFailedError(f"the Adam update failed ({exc}); lower the lr") from exc
    if not torch.isfinite(new_param).all():
        raise StepFailedError("the Adam update produced a non-finite latent; lower the lr")
    return new_param, {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
