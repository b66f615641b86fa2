"""BRITS (Bidirectional Recurrent Imputation for Time Series; Cao et al., NeurIPS 2018) with an
ancillary-data branch and a softmax abundance head.

Each direction (RITS) runs an LSTM over the time steps. Missing values are estimated from the
hidden state (history regression) and from the other features of the same step (feature
regression), combined with learned weights, and the LSTM is fed the completed values plus the
mask. Time gaps (deltas) decay the hidden state and the history estimate. The two directions'
final states and an embedding of the ancillary variables feed a softmax head that outputs class
fractions (abundances) summing to 1.

With ``parents`` (the N1 index of each N2 class) a second head gives N2 fractions that are
consistent with N1 by construction: a softmax over the N2 classes of each parent, scaled by that
parent's N1 fraction, so the N2 fractions of a parent add up to its N1 fraction exactly.

Shapes: values/masks/deltas ``(batch, steps, features)``; ancillary ``(batch, n_ancillary)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class TemporalDecay(nn.Module):
    eye: torch.Tensor

    """gamma = exp(-relu(W delta + b)); diagonal W when decaying the inputs themselves."""

    def __init__(self, in_size: int, out_size: int, diagonal: bool = False) -> None:
        super().__init__()
        self.diagonal = diagonal
        self.weight = nn.Parameter(torch.empty(out_size, in_size))
        self.bias = nn.Parameter(torch.zeros(out_size))
        nn.init.uniform_(self.weight, -1 / in_size**0.5, 1 / in_size**0.5)
        if diagonal:
            self.register_buffer("eye", torch.eye(in_size))

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.eye if self.diagonal else self.weight
        return torch.exp(-F.relu(F.linear(delta, weight, self.bias)))


class FeatureRegression(nn.Module):
    off_diagonal: torch.Tensor

    """Estimate each feature from the others of the same step (zero diagonal)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size, size))
        self.bias = nn.Parameter(torch.zeros(size))
        nn.init.uniform_(self.weight, -1 / size**0.5, 1 / size**0.5)
        self.register_buffer("off_diagonal", 1 - torch.eye(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.off_diagonal, self.bias)


def masked_l1(target: torch.Tensor, estimate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (torch.abs(target - estimate) * mask).sum() / (mask.sum() + 1e-5)


class RITS(nn.Module):
    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.decay_h = TemporalDecay(n_features, hidden)
        self.decay_x = TemporalDecay(n_features, n_features, diagonal=True)
        self.history = nn.Linear(hidden, n_features)
        self.feature = FeatureRegression(n_features)
        self.combine = nn.Linear(2 * n_features, n_features)
        self.cell = nn.LSTMCell(2 * n_features, hidden)

    def forward(
        self, x: torch.Tensor, m: torch.Tensor, d: torch.Tensor, with_loss: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (imputed series, final hidden state, imputation loss on observed values); the
        loss is skipped (0) when ``with_loss`` is false, as in inference."""
        batch, steps, _ = x.shape
        h = x.new_zeros(batch, self.hidden)
        c = x.new_zeros(batch, self.hidden)
        loss = x.new_zeros(())
        imputed = []
        for t in range(steps):
            xt, mt, dt = x[:, t], m[:, t], d[:, t]
            h = h * self.decay_h(dt)
            x_hist = self.history(h)
            x_c = mt * xt + (1 - mt) * x_hist
            z = self.feature(x_c)
            beta = torch.sigmoid(self.combine(torch.cat([self.decay_x(dt), mt], dim=1)))
            c_hat = beta * z + (1 - beta) * x_hist
            if with_loss:
                loss = loss + masked_l1(xt, x_hist, mt) + masked_l1(xt, z, mt) + masked_l1(xt, c_hat, mt)
            c_c = mt * xt + (1 - mt) * c_hat
            h, c = self.cell(torch.cat([c_c, mt], dim=1), (h, c))
            imputed.append(c_c)
        return torch.stack(imputed, dim=1), h, loss / steps


class BRITSAbundance(nn.Module):
    parent_index: torch.Tensor

    def __init__(
        self,
        n_features: int,
        n_ancillary: int,
        n_classes: int,
        hidden: int = 64,
        ancillary_hidden: int = 32,
        dropout: float = 0.1,
        parents: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "n_features": n_features,
            "n_ancillary": n_ancillary,
            "n_classes": n_classes,
            "hidden": hidden,
            "ancillary_hidden": ancillary_hidden,
            "dropout": dropout,
            "parents": list(parents) if parents else None,
        }
        self.forward_rits = RITS(n_features, hidden)
        self.backward_rits = RITS(n_features, hidden)
        self.ancillary = nn.Sequential(nn.Linear(n_ancillary, ancillary_hidden), nn.ReLU()) if n_ancillary else None
        self.head = self.new_head(n_classes)
        self.sub_head = self.new_head(len(parents)) if parents else None
        if parents:
            if min(parents) < 0 or max(parents) >= n_classes:
                raise ValueError(f"parents {parents} must index the {n_classes} N1 classes")
            self.register_buffer("parent_index", torch.tensor(parents, dtype=torch.long))

    def new_head(self, n_classes: int) -> nn.Sequential:
        cfg = self.config
        width = 2 * cfg["hidden"] + (cfg["ancillary_hidden"] if cfg["n_ancillary"] else 0)
        return nn.Sequential(
            nn.Linear(width, cfg["hidden"]), nn.ReLU(), nn.Dropout(cfg["dropout"]), nn.Linear(cfg["hidden"], n_classes)
        )

    def replace_head(self, n_classes: int, parents: list[int] | None = None) -> None:
        """Fresh abundance heads for another class set (fine-tuning to a new legend)."""
        self.config["n_classes"] = n_classes
        self.config["parents"] = list(parents) if parents else None
        self.head = self.new_head(n_classes)
        self.sub_head = self.new_head(len(parents)) if parents else None
        if parents:
            self.register_buffer(
                "parent_index", torch.tensor(parents, dtype=torch.long, device=next(self.parameters()).device)
            )

    def nested_softmax(self, sub_logits: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """N2 fractions: a softmax over the N2 classes of each parent (computed stably with the
        per-parent maximum), times the parent's N1 fraction."""
        index = self.parent_index.expand_as(sub_logits)
        peak = torch.full_like(top, float("-inf")).scatter_reduce(1, index, sub_logits, "amax", include_self=True)
        e = torch.exp(sub_logits - peak.gather(1, index))
        total = torch.zeros_like(top).scatter_add(1, index, e)
        share = e / total.gather(1, index)
        return share * top.gather(1, index)

    def outputs(self, h_f: torch.Tensor, h_b: torch.Tensor, anc: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The abundance heads on the two directions' final states and the ancillaries."""
        parts = [h_f, h_b]
        if self.ancillary is not None and anc is not None:
            parts.append(self.ancillary(anc))
        state = torch.cat(parts, dim=1)
        abundance = torch.softmax(self.head(state).float(), dim=1)
        out = {"abundance": abundance}
        if self.sub_head is not None:
            out["sub_abundance"] = self.nested_softmax(self.sub_head(state).float(), abundance)
        return out

    def forward(
        self, x: torch.Tensor, m: torch.Tensor, d_fwd: torch.Tensor, d_bwd: torch.Tensor, anc: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        with_loss = self.training
        imp_f, h_f, loss_f = self.forward_rits(x, m, d_fwd, with_loss)
        imp_b, h_b, loss_b = self.backward_rits(torch.flip(x, [1]), torch.flip(m, [1]), d_bwd, with_loss)
        imp_b = torch.flip(imp_b, [1])
        out = self.outputs(h_f, h_b, anc)
        out.update(
            {
                "imputed": (imp_f + imp_b) / 2,
                "loss_imputation": loss_f + loss_b,
                "loss_consistency": torch.abs(imp_f - imp_b).mean(),
            }
        )
        return out
