"""Layer-wise Fisher information (paper sect. 4, eq. 4) and checks of Propositions 1 and 3.

For every weight layer of ``VAE.linear_layers()`` we report the mean over that layer's weights
of the diagonal Fisher  F_ii = E_x E_t[(d log p(t|x) / d w_i)^2]  (Desjardins et al. 2015),
estimated with one target t per data point:

- encoder: log q(z|x), z ~ q(z|x), z held fixed;
- decoder: log p(x~|z), same z, x~ ~ p(x|z) (``targets="model"``) or x~ = x (``"empirical"``).
  There is no observed z, so "empirical" still samples z: it changes the decoder targets only.

Weights only, no biases (Desjardins et al.; the eval.json schema). A masked PixelCNN
convolution's free parameters are its unmasked weights (the masked ones get zero gradient),
so its mean is over the unmasked entries.

Two routes to the exact diagonal, checked against each other in the tests:

- ``path="hooks"`` (the reports use it): one batched backward of sum_n log p_n per chunk, with
  hooks keeping each layer's input a_n and the gradient g_n w.r.t. its output (per example,
  since examples do not interact). A Linear layer's per-example weight gradient is g_n a_n^T,
  with squared norm |g_n|^2 |a_n|^2; a convolution's is sum_t g_nt a_nt^T over unfolded patches.
- ``path="func"``: per-example gradients by torch.func (functional_call + vmap + grad), chunked.

KFAC (Martens & Grosse 2015, as used by Desjardins et al.) takes diag(E[a a^T] (x) E[g g^T])
= E[a^2] (x) E[g^2]; for convolutions the KFC factors (Grosse & Martens 2016)
Omega = E[sum_t a_t a_t^T], Gamma = E[mean_t g_t g_t^T].

PixelCNN decoder: ``pixel_sampling="autoregressive"`` (default) draws x~ with
``decoder.sample`` (784 passes: about 0.5 CPU-second per point for scvae+pixel). ``"teacher_forced"`` is a
one-pass approximation: pixel i is drawn from p(x_i | x_<i = data, z) and scored in that same
context, i.e. the exact Fisher of the teacher-forced conditionals, not of p(x|z).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from statistics import fmean, stdev

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from .models import VAE, log_bernoulli_logits, log_normal_diag

PARTS = ("encoder", "decoder")
TARGETS = ("model", "empirical")
PIXEL_SAMPLING = ("autoregressive", "teacher_forced")
METHODS = ("exact", "kfac", "both")
PATHS = ("hooks", "func", "loop")
LOG10_2 = math.log10(2.0)
# Examples per batched pass. The hooks route holds only activations; the func route holds
# chunk x (all weights) per-example gradients (16 x 6M floats = 0.4 GB for an 11-layer model).
HOOKS_CHUNK = 100
FUNC_CHUNK = 16


def _check(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"{what}={value!r}; choose one of {valid}")


# --- targets ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draw:
    """One target per data point, drawn once and then held fixed while differentiating.

    Every public function accepts a ``Draw`` in place of x, so that costly PixelCNN samples
    can be shared; its own ``targets`` and ``pixel_sampling`` then apply.
    """

    targets: str
    pixel_sampling: str
    x: Tensor  # data (N, 784): the encoder's input
    z: Tensor  # z ~ q(z|x): the encoder's target and the decoder's input
    xt: Tensor  # the decoder's target x~
    ctx: Tensor  # the pixels the PixelCNN conditions on (x~, or the data when teacher-forced)

    def __len__(self) -> int:
        return self.x.shape[0]

    def chunks(self, size: int) -> Iterator[Draw]:
        for i in range(0, len(self), size):
            s = slice(i, i + size)
            yield replace(self, x=self.x[s], z=self.z[s], xt=self.xt[s], ctx=self.ctx[s])


@torch.no_grad()
def draw_targets(model: VAE, x: Tensor, targets: str = "model", generator: torch.Generator | None = None,
                 pixel_sampling: str = "autoregressive") -> Draw:
    """z ~ q(z|x) and the decoder's target for each data point (see the module doc)."""
    _check(targets, TARGETS, "targets")
    _check(pixel_sampling, PIXEL_SAMPLING, "pixel_sampling")
    x = x.to(model.device)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=mu.device)
    decoder = model.decoder
    if targets == "empirical":
        return Draw(targets, pixel_sampling, x, z, x, x)
    if decoder.pixelcnn is not None and pixel_sampling == "teacher_forced":
        xt = torch.bernoulli(torch.sigmoid(decoder.logits(x, z)), generator=generator)
        return Draw(targets, pixel_sampling, x, z, xt, x)
    xt = decoder.sample(z, generator=generator)
    return Draw(targets, pixel_sampling, x, z, xt, xt)


def _as_draw(model: VAE, x: Tensor | Draw, targets: str, generator, pixel_sampling: str) -> Draw:
    return x if isinstance(x, Draw) else draw_targets(model, x, targets, generator, pixel_sampling)


def _log_probs(model: VAE, d: Draw) -> Tensor:
    """log q(z|x) + log p(x~|z) per example. z is an input here, so encoder weights get gradient
    from the first term only and decoder weights from the second only: one backward serves both."""
    mu, logvar = model.encode(d.x)
    return log_normal_diag(d.z, mu, logvar) + log_bernoulli_logits(d.xt, model.decoder.logits(d.ctx, d.z))


def _mask(layer: nn.Module) -> Tensor:
    """Which weights are free parameters, shaped (out, rest) like ``weight.flatten(1)``."""
    mask = getattr(layer, "mask", None)
    return torch.ones_like(layer.weight).flatten(1) if mask is None else mask.flatten(1)


# --- per-example gradients (torch.func and a plain loop) --------------------------------------
class _LogProb(nn.Module):
    """``_log_probs`` as a forward(), which functional_call needs (a VAE has no forward)."""

    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, d: Draw) -> Tensor:
        return _log_probs(self.model, d)


def per_example_grads(model: VAE, x: Tensor | Draw, targets: str = "model", generator=None,
                      chunk: int = FUNC_CHUNK, pixel_sampling: str = "autoregressive") -> Iterator[dict[str, Tensor]]:
    """Per-example weight gradients of log q(z|x) + log p(x~|z), ``chunk`` examples at a time:
    yields {layer name: (chunk, *weight.shape)}, so memory stays at chunk x (all weights).
    Targets are drawn now, not when iteration starts."""
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    wrapped = _LogProb(model)
    weights = {f"model.{n}.weight": m.weight.detach() for n, m in model.linear_layers().items()}

    def one(w: dict[str, Tensor], x: Tensor, z: Tensor, xt: Tensor, ctx: Tensor) -> Tensor:
        single = Draw(d.targets, d.pixel_sampling, x[None], z[None], xt[None], ctx[None])
        return functional_call(wrapped, w, (single,))[0]

    batched = vmap(grad(one), in_dims=(None, 0, 0, 0, 0))

    def run() -> Iterator[dict[str, Tensor]]:
        for c in d.chunks(chunk):
            g = batched(weights, c.x, c.z, c.xt, c.ctx)
            yield {n.removeprefix("model.").removesuffix(".weight"): t for n, t in g.items()}

    return run()


def per_example_grads_loop(model: VAE, x: Tensor | Draw, targets: str = "model", generator=None,
                           pixel_sampling: str = "autoregressive") -> Iterator[dict[str, Tensor]]:
    """Same as :func:`per_example_grads`, one example per backward (reference and benchmark)."""
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    layers = model.linear_layers()

    def run() -> Iterator[dict[str, Tensor]]:
        for c in d.chunks(1):
            with torch.enable_grad():
                gs = torch.autograd.grad(_log_probs(model, c).sum(), [m.weight for m in layers.values()])
            yield {n: g[None] for n, g in zip(layers, gs)}

    return run()


def _exact_from_grads(model: VAE, grads: Iterable[dict[str, Tensor]]) -> dict[str, float]:
    layers = model.linear_layers()
    sq, n = dict.fromkeys(layers, 0.0), 0
    for g in grads:
        n += next(iter(g.values())).shape[0]
        for name, t in g.items():
            sq[name] += torch.linalg.vector_norm(t).item() ** 2  # no squared copy of a big tensor
    return {name: sq[name] / (n * _mask(m).sum().item()) for name, m in layers.items()}


# --- the batched route: hooks -------------------------------------------------------------
def _capture(model: VAE, layers: dict[str, nn.Module], d: Draw) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Each layer's input and the gradient of sum_n log p_n w.r.t. its output, one backward."""
    inputs, outputs = {}, {}

    def keep(name: str):
        def hook(module, args, out):
            if name in outputs:  # the per-example identities assume one use per forward
                raise RuntimeError(f"layer {name} ran twice in one forward pass")
            inputs[name], outputs[name] = args[0].detach(), out
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in layers.items()]
    try:
        with torch.enable_grad():
            logp = _log_probs(model, d)
            grads = torch.autograd.grad(logp.sum(), list(outputs.values()))
    finally:
        for h in handles:
            h.remove()
    return inputs, dict(zip(outputs, grads))


def _hook_stats(model: VAE, d: Draw, chunk: int) -> dict[str, dict]:
    """exact, kfac, grad_rms (rms of d log p / d output over examples, units, positions) and
    per_point (each point's squared weight gradient over the layer's free weights: exact is their mean)."""
    layers = model.linear_layers()
    sq = dict.fromkeys(layers, 0.0)
    per_point: dict[str, list[Tensor]] = {name: [] for name in layers}
    a2: dict[str, Tensor] = {}
    g2: dict[str, Tensor] = {}
    for c in d.chunks(chunk):
        inputs, out_grads = _capture(model, layers, c)
        for name, m in layers.items():
            a, g = inputs[name], out_grads[name]
            if isinstance(m, nn.Conv2d):
                a = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
                g = g.flatten(2)  # a: (B, C*k*k, T), g: (B, O, T)
                per_example = torch.einsum("bot,bct->boc", g, a) * _mask(m)
                point = per_example.double().pow(2).sum((1, 2))
                sa, sg = a.double().pow(2).sum((0, 2)), g.double().pow(2).mean(2).sum(0)
            else:
                a, g = a.double(), g.double()
                point = g.pow(2).sum(1) * a.pow(2).sum(1)
                sa, sg = a.pow(2).sum(0), g.pow(2).sum(0)
            sq[name] += point.sum().item()
            per_point[name].append(point.cpu())
            a2[name] = a2[name] + sa if name in a2 else sa
            g2[name] = g2[name] + sg if name in g2 else sg
    n = len(d)
    stats = {}
    for name, m in layers.items():
        mask = _mask(m).double()
        kfac = (torch.outer(g2[name] / n, a2[name] / n) * mask).sum() / mask.sum()
        stats[name] = {
            "exact": sq[name] / (n * mask.sum().item()),
            "kfac": kfac.item(),
            "grad_rms": math.sqrt(g2[name].mean().item() / n),
            "per_point": torch.cat(per_point[name]) / mask.sum().item(),
        }
    return stats


# --- layer-wise Fisher and the eval.json block -------------------------------------------------
def layer_fisher(model: VAE, x: Tensor | Draw, targets: str = "model", method: str = "exact", generator=None,
                 chunk: int | None = None, path: str = "hooks", pixel_sampling: str = "autoregressive") -> list[dict]:
    """[{name, part, exact and/or kfac}] for every weight layer, encoder first, forward order.
    ``path`` picks the route to ``exact`` ("hooks", "func" or "loop"); kfac always uses hooks.
    ``chunk``: examples per batched pass (default HOOKS_CHUNK, or FUNC_CHUNK for path="func")."""
    _check(method, METHODS, "method")
    _check(path, PATHS, "path")
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    names = list(model.linear_layers())
    hooks = path == "hooks" or method != "exact"
    stats = _hook_stats(model, d, chunk or HOOKS_CHUNK) if hooks else {n: {} for n in names}
    if path != "hooks" and method != "kfac":
        grads = (per_example_grads(model, d, chunk=chunk or FUNC_CHUNK) if path == "func"
                 else per_example_grads_loop(model, d))
        for name, value in _exact_from_grads(model, grads).items():
            stats[name]["exact"] = value
    keys = ("exact", "kfac") if method == "both" else (method,)
    return [{"name": n, "part": n.split(".")[0], **{k: stats[n][k] for k in keys}} for n in names]


def summarize(layers: list[dict]) -> dict[str, float]:
    """Means of ``exact`` over the encoder's layers, the decoder's and all of them."""
    return {
        "encoder_mean": fmean(r["exact"] for r in layers if r["part"] == "encoder"),
        "decoder_mean": fmean(r["exact"] for r in layers if r["part"] == "decoder"),
        "model_mean": fmean(r["exact"] for r in layers),
    }


def fisher_report(model: VAE, x: Tensor | Draw, targets: str = "model", generator=None, chunk: int = HOOKS_CHUNK,
                  pixel_sampling: str = "autoregressive") -> dict:
    """The ``fisher`` (or ``fisher_empirical``) block of eval.json: per layer exact (hooks
    route) and kfac, their means per side, and per side a robust summary over points."""
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    stats = _hook_stats(model, d, chunk)
    layers = [{"name": n, "part": n.split(".")[0], "exact": st["exact"], "kfac": st["kfac"]} for n, st in stats.items()]
    per_point = {n: st["per_point"] for n, st in stats.items()}
    sides = {side: point_summary(_side_points(per_point, side)) for side in SIDES}
    return {"targets": d.targets, "points": len(d), "layers": layers, **summarize(layers), "sides": sides}


# --- a robust summary over points ----------------------------------------------------------------
# The layer mean is dominated by rare points: in a collapsed VAE(11L) one target draw in 200 moved
# a decoder layer's mean 10^4-fold. The reports add the mean over points of log10 of each point's
# value (the log of the geometric mean): one point 10^4 times the rest moves it by 4/N, it is an
# average (so it has a standard error and compares across models as a difference), and every
# claim about Fisher is a ratio, i.e. a difference of logs. Points with a zero gradient (a dead
# ReLU unit everywhere, say) are floored at LOG10_FLOOR and counted.
SIDES = ("encoder", "decoder", "model")
LOG10_FLOOR = -30.0
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0


def _side_points(per_point: dict[str, Tensor], side: str) -> Tensor:
    """Each point's mean over the side's layers (``model``: all layers) of its layer value."""
    rows = [v for n, v in per_point.items() if side == "model" or n.split(".")[0] == side]
    return torch.stack(rows).mean(0)


def point_summary(values: Tensor, level: float = 0.95) -> dict:
    """Mean, robust mean of log10 and median of log10 over points, with bootstrap intervals."""
    v = values.double()
    logs = torch.log10(v).clamp(min=LOG10_FLOOR)
    n = len(v)
    g = torch.Generator().manual_seed(BOOTSTRAP_SEED)
    idx = torch.randint(n, (BOOTSTRAP, n), generator=g)
    boot_mean, boot_log = v[idx].mean(1), logs[idx].mean(1)
    lo, hi = (1 - level) / 2, (1 + level) / 2

    def interval(t: Tensor) -> list[float]:
        return [torch.quantile(t, lo).item(), torch.quantile(t, hi).item()]

    return {
        "mean": v.mean().item(), "mean_ci": interval(boot_mean),
        "log10_mean_of_points": logs.mean().item(), "log10_se": boot_log.std().item(), "log10_ci": interval(boot_log),
        "median_log10": logs.median().item(), "zero_points": int((v <= 0).sum()), "points": n,
        "bootstrap": BOOTSTRAP,
    }


# --- the authors' reading: Fisher information ratio in hidden layers --------------------------------
# The first author's follow-up code (JegZheng/Fisher-AutoEncoder, "Understanding VAEs in
# Fisher-Shannon Plane", AAAI 2019) reports per side, after training, for each hidden layer but
# the first: with W the layer's weights and G the gradient of the training loss (negative ELBO at
# the current KL weight, mean over the last minibatch), A = G W^T and the layer's value sum |A A^T|;
# the side's value is the mean over those layers. A convolution's weights are flattened per output
# channel (we use the masked, i.e. effective, PixelCNN weights). One minibatch is a noisy statistic:
# we take AUTHORS_BATCHES of them and report the last, their mean and spread. A side with one
# hidden layer has no layer after the first: its strict value is None ("not defined"); the variant
# ``with_first`` includes the first hidden layer and is defined for every side.
AUTHORS_BATCHES = 10


def authors_layers(model: VAE) -> dict[str, list[str]]:
    """The hidden weight layers of each side as the authors' measure walks them."""
    layers = model.linear_layers()
    out = {part: _hidden(model, part) for part in PARTS}
    if model.decoder.pixelcnn is not None:
        out["pixelcnn"] = [n for n in layers if n.startswith("decoder.pixelcnn.")]
    return out


def authors_layer_value(weight: Tensor, grad: Tensor) -> float:
    """sum |A A^T| with A = G W^T, each weight flattened per output unit or channel."""
    w, g = weight.detach().flatten(1).double(), grad.detach().flatten(1).double()
    a = g @ w.T
    return (a @ a.T).abs().sum().item()


def _side_value(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _over_batches(per_batch: list[float | None]) -> dict | None:
    if any(v is None for v in per_batch):
        return None
    logs = [math.log10(v) if v > 0 else LOG10_FLOOR for v in per_batch]
    many = len(per_batch) > 1
    return {"value": per_batch[-1], "mean": fmean(per_batch), "sd": stdev(per_batch) if many else math.nan,
            "values": per_batch, "log10_mean": fmean(logs),
            "log10_se": stdev(logs) / math.sqrt(len(logs)) if many else math.nan}


def authors_report(model: VAE, batches: Iterable[Tensor], beta: float) -> dict:
    """The ``fisher_authors`` block of eval.json over the given training minibatches."""
    parts = authors_layers(model)
    modules = model.linear_layers()
    per_layer: dict[str, list[float]] = {n: [] for names in parts.values() for n in names}
    sizes = []
    try:
        for x in batches:
            sizes.append(len(x))
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                model.elbo(x.to(model.device), beta)["loss"].mean().backward()
            for name in per_layer:
                m = modules[name]
                w = m.weight * m.mask if hasattr(m, "mask") else m.weight
                per_layer[name].append(authors_layer_value(w, m.weight.grad))
    finally:
        model.zero_grad(set_to_none=True)
    n = len(sizes)
    sides = {}
    for part, names in parts.items():
        strict = [_side_value([per_layer[nm][b] for nm in names[1:]]) for b in range(n)]
        with_first = [_side_value([per_layer[nm][b] for nm in names]) for b in range(n)]
        sides[part] = {"layers": len(names), "strict": _over_batches(strict), "with_first": _over_batches(with_first)}
    if "pixelcnn" in parts:  # the decoder as a whole: its MLP's hidden layers and the PixelCNN's
        names = parts["decoder"] + parts["pixelcnn"]
        sides["decoder"]["with_first"] = _over_batches(
            [_side_value([per_layer[nm][b] for nm in names]) for b in range(n)])
    every = list(per_layer)  # the whole model, for Figure 2's depth sweep
    sides["model"] = {"layers": len(every), "strict": None,
                      "with_first": _over_batches([_side_value([per_layer[nm][b] for nm in every]) for b in range(n)])}
    return {"batches": n, "batch_size": sizes[-1] if sizes else 0, "beta": beta,
            "layers": [{"name": nm, "part": nm.split(".")[0], "values": v} for nm, v in per_layer.items()],
            **sides}


# --- Proposition 1 (eq. 6, Remark 2) ------------------------------------------------------------
# The gradient of eq. 6, "the backpropagated gradient through the l-th non-linearity", is taken
# as d log p / d (pre-activation output of layer l): what flows back through that non-linearity
# (Saxe et al. 2013, whom Remark 2 cites). The weight gradient would make the check circular: the
# layer's mean diagonal Fisher *is* its weight-gradient mean square, so eq. 6 would hold only
# when I(l+1) = I(l). Note also that with diag Fisher = E[grad^2] a ratio of consecutive layers
# is naturally (|grad_{l+1}| / |grad_l|)^2, the inverse of eq. 6: both candidates are reported.
GRADIENT_USED = "rms over examples and units of d log p / d pre-activation of the layer"


def _log10_ratio(a: float, b: float) -> float | None:
    return math.log10(a / b) if a > 0 and b > 0 else None


def _within_2x(u: float | None, v: float | None) -> bool | None:
    return None if u is None or v is None else abs(u - v) <= LOG10_2


def _fraction(flags: Iterable[bool | None]) -> float | None:
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def _hidden(model: VAE, part: str) -> list[str]:
    return [f"{part}.mlp.layers.{i}" for i in range(len(getattr(model, part).mlp.layers))]


def check_proposition1(model: VAE, x: Tensor | Draw, generator=None, targets: str = "model", chunk: int = HOOKS_CHUNK,
                       pixel_sampling: str = "autoregressive") -> dict:
    """Eq. 6 and Remark 2 per consecutive pair (l, l+1) of hidden layers of each part."""
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    stats = _hook_stats(model, d, chunk)
    pairs = []
    for part in PARTS:
        hidden = _hidden(model, part)
        for lower, upper in zip(hidden, hidden[1:]):
            lo, up = stats[lower], stats[upper]
            fisher = _log10_ratio(up["exact"], lo["exact"])
            eq6 = _log10_ratio(lo["grad_rms"] ** 2, up["grad_rms"] ** 2)
            inverse = None if eq6 is None else -eq6
            pairs.append({
                "part": part, "lower": lower, "upper": upper,
                "fisher_lower": lo["exact"], "fisher_upper": up["exact"],
                "grad_rms_lower": lo["grad_rms"], "grad_rms_upper": up["grad_rms"],
                "fisher_ratio": None if fisher is None else 10**fisher,
                "eq6_ratio": None if eq6 is None else 10**eq6,
                "inverse_ratio": None if inverse is None else 10**inverse,
                "log10_fisher_ratio": fisher, "log10_eq6_ratio": eq6, "log10_inverse_ratio": inverse,
                "eq6_within_2x": _within_2x(fisher, eq6),
                "inverse_within_2x": _within_2x(fisher, inverse),
                "fisher_decreases": up["exact"] <= lo["exact"],  # Remark 2's conclusion
                "grad_shrinks_backward": lo["grad_rms"] <= up["grad_rms"],  # Remark 2's premise
            })

    def summary(rows: list[dict]) -> dict:
        return {"pairs": len(rows), **{k: _fraction(r[k] for r in rows) for k in (
            "eq6_within_2x", "inverse_within_2x", "fisher_decreases", "grad_shrinks_backward")}}

    return {
        "targets": d.targets, "points": len(d), "gradient": GRADIENT_USED, "pairs": pairs,
        "summary": {"all": summary(pairs), **{p: summary([r for r in pairs if r["part"] == p]) for p in PARTS}},
    }


# --- Proposition 3 (eq. 9-10) -----------------------------------------------------------------
def _receives_skip(model: VAE, name: str) -> bool:
    """Whether the layer's output h_l gets a skip term added (eq. 11 short, eq. 12 long)."""
    part = name.split(".")[0]
    skip, hidden = getattr(model.cfg, f"{part[:3]}_skip"), _hidden(model, part)
    return name in hidden and (skip == "short" or (skip == "long" and name == hidden[-1]))


def check_proposition3(model: VAE, x: Tensor | Draw, generator=None, targets: str = "model", chunk: int = HOOKS_CHUNK,
                       pixel_sampling: str = "autoregressive") -> dict:
    """Layer-wise Fisher with the skips on vs the same weights with the skips off.

    Each model is measured under its own distribution (its own z and x~ draws), since the
    Fisher is a property of the model; with a Draw the skipless copy redraws from the same x.
    """
    cfg = model.cfg
    if cfg.enc_skip == "none" and cfg.dec_skip == "none":
        raise ValueError("proposition 3 compares skips on vs off; this model has no skip connections")
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    skipless = VAE(replace(cfg, enc_skip="none", dec_skip="none")).to(model.device)
    skipless.load_state_dict(model.state_dict())
    on = layer_fisher(model, d, chunk=chunk)
    off = layer_fisher(skipless, d.x, d.targets, generator=generator, chunk=chunk, pixel_sampling=d.pixel_sampling)
    layers = [{
        "name": a["name"], "part": a["part"], "receives_skip": _receives_skip(model, a["name"]),
        "on": a["exact"], "off": b["exact"],
        "ratio": a["exact"] / b["exact"] if b["exact"] > 0 else None,
        "on_greater": a["exact"] > b["exact"],  # eq. 10 claims strictly greater
    } for a, b in zip(on, off)]
    on_sum, off_sum = summarize(on), summarize(off)
    return {
        "targets": d.targets, "points": len(d), "layers": layers,
        "summary": {
            "layers": len(layers),
            "on_greater": _fraction(r["on_greater"] for r in layers),
            "on_greater_receiving_skip": _fraction(r["on_greater"] for r in layers if r["receives_skip"]),
            **{f"{k}_on": v for k, v in on_sum.items()}, **{f"{k}_off": v for k, v in off_sum.items()},
        },
    }


def derivations_report(model: VAE, x: Tensor | Draw, generator=None, targets: str = "model", chunk: int = HOOKS_CHUNK,
                       pixel_sampling: str = "autoregressive") -> dict:
    """The ``derivations`` block of eval.json; proposition3 only for models with skips."""
    d = _as_draw(model, x, targets, generator, pixel_sampling)
    report = {"proposition1": check_proposition1(model, d, chunk=chunk)}
    if model.cfg.enc_skip != "none" or model.cfg.dec_skip != "none":
        report["proposition3"] = check_proposition3(model, d, generator=generator, chunk=chunk)
    return report
