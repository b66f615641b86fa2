"""Fast eval-mode BRITS: the same function as ``BRITSAbundance.forward`` in eval mode (equal to
float rounding, checked by the tests), rearranged for CPU throughput.

Where the time goes in the straightforward network on a CPU is not the arithmetic but the many
small tensor operations per step, the small matrix products whose widths (7 features) make BLAS
slow, torch's slow CPU ``tanh`` and ``exp``, and copies of strided slices. This path:

- reads the series time-major, both directions side by side: ``(steps, 2, batch, features)``
  with the backward direction stored in walking order (last step first), so each step is one
  contiguous slice and each product is one batched matrix product for both directions;
- packs each step's gaps, mask and a ones column into one zero-padded 16-wide block, so the
  hidden-state decay, the combination weights, the feature regression and the input part of the
  LSTM are each one product with the biases folded in (widths padded to multiples of 16, which
  BLAS handles several times faster than 7);
- writes every intermediate into buffers allocated once per call (no page faults per step);
- computes ``exp(-relu(a))`` as ``exp2(min(-a log2 e, 0))`` with the factor folded into the
  weights, and the LSTM's gates with one sigmoid: the cell-input gate's rows are doubled and
  ``tanh(a) = 2 sigmoid(2a) - 1``.

Inputs come from ``pack`` (from the ``(batch, steps, features)`` tensors the network takes) or
are built directly by the caller (``models.abundance.time_major_inputs``) in the same layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from landcoverpy.models.brits import RITS, BRITSAbundance

LOG2E = 1.0 / math.log(2.0)


def padded_width(n_features: int) -> int:
    """Width of a step's packed block: gaps, mask, a ones column, rounded up to 16."""
    return -(-(2 * n_features + 1) // 16) * 16


@dataclass
class Packed:
    """One direction's weights rearranged for the step loop (shapes for F features, hidden H,
    packed width P)."""

    w_decay_h: torch.Tensor  # (P, H): [gaps, mask, 1] -> -(W d + b) log2 e
    w_decay_x: torch.Tensor  # (F,): -w log2 e (diagonal)
    b_decay_x: torch.Tensor  # (F,): -b log2 e
    w_beta: torch.Tensor  # (P, 16): [gamma_x, mask, 1] -> combination weights (pre-sigmoid)
    w_gates: torch.Tensor  # (H, 4H): decayed h -> gate part
    w_history: torch.Tensor  # (H, 16): decayed h -> history estimate (no bias)
    b_history: torch.Tensor  # (F,)
    w_feature: torch.Tensor  # (P, 16): [x_c, mask(0), 1] -> feature regression
    w_input: torch.Tensor  # (P, 4H): [c_c, mask, 1] -> gate part with both biases


def pack_direction(rits: RITS, n: int, width: int) -> Packed:
    hid = rits.hidden
    dtype = rits.history.weight.dtype
    device = rits.history.weight.device
    scale = torch.ones(4 * hid, dtype=dtype, device=device)
    scale[2 * hid : 3 * hid] = 2  # cell-input gate: sigmoid(2a) gives tanh(a) = 2 sigmoid(2a) - 1

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape, dtype=dtype, device=device)

    w_decay_h = zeros(width, hid)
    w_decay_h[:n] = -rits.decay_h.weight.t() * LOG2E
    w_decay_h[2 * n] = -rits.decay_h.bias * LOG2E
    w_beta = zeros(width, 16)
    w_beta[: 2 * n, :n] = rits.combine.weight.t()
    w_beta[2 * n, :n] = rits.combine.bias
    w_gates = (rits.cell.weight_hh * scale[:, None]).t().contiguous()
    w_history = zeros(hid, 16)
    w_history[:, :n] = rits.history.weight.t()
    w_feature = zeros(width, 16)
    w_feature[:n, :n] = (rits.feature.weight * rits.feature.off_diagonal).t()
    w_feature[2 * n, :n] = rits.feature.bias
    w_input = zeros(width, 4 * hid)
    w_input[: 2 * n] = (rits.cell.weight_ih * scale[:, None]).t()
    w_input[2 * n] = (rits.cell.bias_ih + rits.cell.bias_hh) * scale
    return Packed(
        w_decay_h,
        -torch.diagonal(rits.decay_x.weight) * LOG2E,
        -rits.decay_x.bias * LOG2E,
        w_beta,
        w_gates,
        w_history,
        rits.history.bias.detach().clone(),
        w_feature,
        w_input,
    )


def pack(
    x: torch.Tensor, m: torch.Tensor, d_fwd: torch.Tensor, d_bwd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's ``(batch, steps, features)`` inputs (``d_bwd`` in the flipped order
    ``forward`` takes) as ``values (steps, 2, batch, F)`` and ``gaps_mask (steps, 2, batch, 2F)``,
    direction 1 in walking order; values are zero where the mask is 0."""
    xt = (x * m).transpose(0, 1)
    mt = m.transpose(0, 1)
    values = torch.stack([xt, xt.flip(0)], dim=1).contiguous()
    gaps = torch.stack([d_fwd.transpose(0, 1), d_bwd.transpose(0, 1)], dim=1)
    masks = torch.stack([mt, mt.flip(0)], dim=1)
    return values, torch.cat([gaps, masks], dim=3).contiguous()


def step_gaps(steps: int, times: np.ndarray | None) -> np.ndarray:
    """(steps, 2): the time from the previous step in each direction's walking order (0 first)."""
    t = np.arange(steps, dtype="float32") if times is None else np.asarray(times, dtype="float32")
    return np.stack([np.diff(t, prepend=t[0]), np.diff(t[-1] - t[::-1], prepend=np.float32(0))], axis=1).astype(
        "float32"
    )


def pack_series(
    series: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    times: np.ndarray | None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ``(N, steps, F)`` series (NaN or inf = missing) normalised with ``mean``/``std``
    straight into the packed layout: ``values (steps, 2, N, F)`` and ``gaps_mask (steps, 2, N,
    2F)``, the same numbers as ``pack`` of ``prepare_tensors``' arrays (BRITS gaps: time since the
    last observation in each direction, from the step times; steps 0, 1, ... without times).

    Done with torch operations on torch's own threads: a separate thread pool (numba, Python
    threads) would compete with torch's OpenMP workers, which keep spinning between operations.
    ``out``: tensors of those shapes to fill, reused from batch to batch (a fresh 30 MB per batch
    of 4096 costs page faults)."""
    n, steps, f = series.shape
    shapes = (steps, 2, n, f), (steps, 2, n, 2 * f)
    if out is not None and (tuple(out[0].shape), tuple(out[1].shape)) == shapes:
        values, gaps_mask = out
    else:
        values, gaps_mask = torch.empty(shapes[0]), torch.empty(shapes[1])
    raw = torch.from_numpy(np.ascontiguousarray(series, dtype="float32")).transpose(0, 1)
    forward, mask = values[:, 0], gaps_mask[:, 0, :, f:]
    torch.sub(raw, torch.from_numpy(np.asarray(mean, "float32")), out=forward)
    forward.div_(torch.from_numpy(np.asarray(std, "float32")))
    mask.copy_(torch.isfinite(forward))
    forward.nan_to_num_(0.0, 0.0, 0.0)
    values[:, 1].copy_(forward.flip(0))
    gaps_mask[:, 1, :, f:].copy_(mask.flip(0))
    gaps = torch.from_numpy(step_gaps(steps, times))[:, :, None, None]
    gaps_mask[0, :, :, :f].zero_()
    for s in range(1, steps):  # gap + previous gap where the previous step was missing
        prev, prev_mask = gaps_mask[s - 1, :, :, :f], gaps_mask[s - 1, :, :, f:]
        torch.addcmul(prev, prev, prev_mask, value=-1, out=gaps_mask[s, :, :, :f]).add_(gaps[s])
    return values, gaps_mask


def run(
    network: BRITSAbundance,
    values: torch.Tensor,
    gaps_mask: torch.Tensor,
    anc: torch.Tensor | None,
    imputed: bool = False,
) -> dict[str, torch.Tensor]:
    """Eval-mode outputs of ``network`` (abundance, sub_abundance, and with ``imputed`` the
    gap-filled series ``(batch, steps, F)``) from packed inputs."""
    if network.training:
        raise RuntimeError("the fast path is eval-mode only: call network.eval() first")
    steps, _, batch, n = values.shape
    hid = network.forward_rits.hidden
    width = padded_width(n)
    dirs = [pack_direction(network.forward_rits, n, width), pack_direction(network.backward_rits, n, width)]

    def both(name: str) -> torch.Tensor:
        return torch.stack([getattr(d, name) for d in dirs])

    w_decay_h, w_beta, w_gates, w_history, w_feature, w_input = (
        both(k) for k in ("w_decay_h", "w_beta", "w_gates", "w_history", "w_feature", "w_input")
    )
    w_decay_x, b_decay_x, b_history = (both(k)[:, None, :] for k in ("w_decay_x", "b_decay_x", "b_history"))
    new = values.new_empty
    block = values.new_zeros(2, batch, width)  # [gaps -> gamma_x -> x_c -> c_c, mask, 1, 0...]
    block[:, :, 2 * n] = 1
    part, mask = block[:, :, :n], block[:, :, n : 2 * n]
    gamma_h, beta, z, history = new(2, batch, hid), new(2, batch, 16), new(2, batch, 16), new(2, batch, 16)
    gates, x_hist, c_hat, tc = new(2, batch, 4 * hid), new(2, batch, n), new(2, batch, n), new(2, batch, hid)
    h, c2 = values.new_zeros(2, batch, hid), values.new_zeros(2, batch, hid)
    out_imputed = new(steps, 2, batch, n) if imputed else None
    for s in range(steps):
        block[:, :, : 2 * n].copy_(gaps_mask[s])
        xs = values[s]
        torch.bmm(block, w_decay_h, out=gamma_h).clamp_max_(0).exp2_()
        torch.addcmul(b_decay_x, part, w_decay_x, out=part).clamp_max_(0).exp2_()  # gamma_x
        torch.bmm(block, w_beta, out=beta).sigmoid_()
        torch.bmm(gamma_h.mul_(h), w_gates, out=gates)
        torch.bmm(gamma_h, w_history, out=history)
        torch.add(history[:, :, :n], b_history, out=x_hist)
        torch.lerp(x_hist, xs, mask, out=part)  # x_c
        torch.bmm(block, w_feature, out=z)
        torch.lerp(x_hist, z[:, :, :n], beta[:, :, :n], out=c_hat)
        torch.lerp(c_hat, xs, mask, out=part)  # c_c
        if out_imputed is not None:
            out_imputed[s].copy_(part)
        gates.baddbmm_(block, w_input).sigmoid_()
        i, f, g, o = gates.chunk(4, dim=2)
        # the cell state is kept doubled (c2 = 2c, exact in floating point): tanh(c) = 2 sigmoid(c2) - 1
        c2.mul_(f).addcmul_(i, g, value=4).sub_(i, alpha=2)
        torch.mul(torch.sigmoid(c2, out=tc), o, out=h).mul_(2).sub_(o)
    out = network.outputs(h[0], h[1], anc)
    if out_imputed is not None:
        out["imputed"] = ((out_imputed[:, 0] + out_imputed[:, 1].flip(0)) / 2).transpose(0, 1)
    return out
