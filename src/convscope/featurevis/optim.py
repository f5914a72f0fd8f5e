"""Update rules: Adam, and the gradient-ascent steps of the lecture notes and the papers.

Adam is written here (Kingma & Ba 2015, Algorithm 1, the same arithmetic as ``torch.optim.Adam``
with its defaults) because ``torch.optim`` imports ``torch._dynamo`` on first use, seconds of
start-up that a one-minute demo page and a command line cannot afford.
"""

from __future__ import annotations

import torch

__all__ = ["Adam", "ascent_rate"]

RULES = ("plain", "normalized", "progress")


class Adam:
    """Adam ascending ``params`` (maximizing): ``p <- p + lr * m_hat / (sqrt(v_hat) + eps)``."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def ascend(self, grads: tuple[torch.Tensor, ...]) -> None:
        """One step up the gradients ``grads`` (one per parameter)."""
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=self.lr / c1)


def ascent_rate(
    g: torch.Tensor, lr: torch.Tensor, rule: torch.Tensor, gain: torch.Tensor
) -> torch.Tensor:
    """The per-image step size ``s`` of ``x <- x + s * g`` (g: (N, ...), the rest (N,)):

    - rule 0, plain (Simonyan et al. 2014): ``s = lr``;
    - rule 1, normalized (the lecture notes' "trick"): ``s = lr / ||g||``;
    - rule 2, progress (Yosinski et al.'s ``lr_policy="progress"``): ``s = min(lr, gain / ||g||^2)``,
      the step that would raise the objective by ``gain`` if it were linear, at most ``lr``.

    A zero gradient gives a zero step."""
    gn = g.flatten(1).norm(dim=1)
    safe = torch.where(gn > 0, gn, torch.ones_like(gn))
    s = torch.where(
        rule == 0, lr, torch.where(rule == 1, lr / safe, torch.minimum(lr, gain / safe.square()))
    )
    return torch.where(gn > 0, s, torch.zeros_like(s))
