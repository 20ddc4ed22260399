"""The paper's models: a Gaussian-encoder VAE whose MLPs may carry skip connections.

One class, :class:`VAE`, covers every model of the paper. A :class:`ModelConfig` says
how deep each side is, which skips it has (eq. 11 short skips, eq. 12 long skip), the
prior (standard normal or VampPrior) and the decoder (Bernoulli MLP or PixelCNN).
"""
from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .config import ACTIVATION_NAMES, ModelConfig

IMAGE_SIDE = 28
X_DIM = IMAGE_SIDE * IMAGE_SIDE
LOG_2PI = math.log(2 * math.pi)
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
def init_xavier_(model: nn.Module, activation: str) -> None:
    """Glorot-uniform weights and zero biases for every linear layer of the MLPs: hidden
    layers with the gain of their activation (5/3 for tanh), output heads with gain 1."""
    gain = nn.init.calculate_gain(activation) if activation in ("tanh", "relu", "sigmoid") else 1.0
    for side in (model.encoder, model.decoder):  # not the VampPrior's pseudo-inputs
        for name, m in side.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain if name.startswith("mlp.") else 1.0)
                nn.init.zeros_(m.bias)


def init_he_(model: nn.Module) -> None:
    """He (Kaiming-normal, fan-in) weights for every linear layer of the MLPs, as the
    VampPrior code the authors build on does; biases keep PyTorch's default, as there."""
    for side in (model.encoder, model.decoder):
        for m in side.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


def resample(h: torch.Tensor, size: int) -> torch.Tensor:
    """The skip map g of eq. 11 where widths differ: fixed linear interpolation.

    Parameter-free on purpose, so a skip model has exactly the parameters of its
    plain counterpart (the paper's "without changing the parameter structure").
    """
    if h.shape[-1] == size:
        return h
    return F.interpolate(h.unsqueeze(1), size=size, mode="linear", align_corners=False).squeeze(1)


class SkipMLP(nn.Module):
    """Hidden layers h_l = act(W_l h_{l-1} [+ U_l x] + b_l) [+ g(h_{l-k})].

    skip="short": k = 1 at every layer (eq. 11); skip="long": a single connection that
    adds g(h_1) to the last hidden layer (eq. 12 with l - k = 1), needing depth >= 3.
    zskip: the input x (the decoder's z) enters every layer l >= 2 through its own bias-free
    map U_l (Skip-VAE, Dieng et al. 2019), so no depth can wash z out of the decoder.
    """

    def __init__(self, n_in: int, hidden: int, depth: int, activation: str, skip: str, zskip: bool = False):
        super().__init__()
        if skip == "long" and depth < 3:
            raise ValueError(f"a long skip (eq. 12) needs depth >= 3 hidden layers, got {depth}")
        self.skip = skip
        self.layers = nn.ModuleList(
            nn.Linear(n_in if i == 0 else hidden, hidden) for i in range(depth)
        )
        self.act = ACTIVATIONS[activation]()
        if zskip:  # registered only when used: every stored checkpoint keeps its keys
            self.zmaps = nn.ModuleList(nn.Linear(n_in, hidden, bias=False) for _ in range(depth - 1))

    def forward(self, x: torch.Tensor, keep: bool = False):
        """Returns the last hidden layer, or all of them (``keep=True``)."""
        hs = []
        h = x
        zmaps = getattr(self, "zmaps", None)
        for i, layer in enumerate(self.layers):
            pre = layer(h)
            out = self.act(pre if zmaps is None or i == 0 else pre + zmaps[i - 1](x))
            if self.skip == "short":
                out = out + resample(h, out.shape[-1])
            elif self.skip == "long" and i == len(self.layers) - 1:
                out = out + hs[0]
            hs.append(out)
            h = out
        return hs if keep else h


class Encoder(nn.Module):
    """q(z|x) = N(mu(h_L), diag(exp(logvar(h_L))))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mlp = SkipMLP(X_DIM, cfg.hidden, cfg.enc_depth, cfg.activation, cfg.enc_skip)
        self.mu = nn.Linear(cfg.hidden, cfg.latent)
        self.logvar = nn.Linear(cfg.hidden, cfg.latent)

    def forward(self, x: torch.Tensor):
        h = self.mlp(x)
        # Clamped so exp() cannot overflow in a badly trained deep model.
        return self.mu(h), self.logvar(h).clamp(-12.0, 8.0)


def log_normal_diag(z, mu, logvar):
    """log N(z; mu, diag(exp(logvar))), summed over the last axis."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def log_bernoulli_logits(x, logits):
    """log Bernoulli(x; sigmoid(logits)) summed over pixels; stable for large |logits|."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


class MaskedConv2d(nn.Conv2d):
    """PixelCNN convolution: type "A" sees strictly earlier pixels, type "B" also itself."""

    def __init__(self, kind: str, c_in: int, c_out: int, k: int):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        c = k // 2
        mask[:, :, c, c + (kind == "B"):] = 0
        mask[:, :, c + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    """p(x|cond) = prod_i p(x_i | x_<i, cond): ``n_layers`` masked convolutions.

    Layer 1 is a 7x7 type-A convolution of x plus an unmasked 7x7 convolution of the
    conditioning map (the decoder MLP's 28x28 output, joined "by concatenation");
    then type-B 3x3 layers; the last is a 1x1 type-B layer giving one logit per pixel.
    """

    def __init__(self, n_layers: int, channels: int):
        super().__init__()
        self.first_x = MaskedConv2d("A", 1, channels, 7)
        self.first_cond = nn.Conv2d(1, channels, 7, padding=3)
        self.middle = nn.ModuleList(MaskedConv2d("B", channels, channels, 3) for _ in range(n_layers - 2))
        self.out = MaskedConv2d("B", channels, 1, 1)

    def forward(self, x_img: torch.Tensor, cond_img: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.first_x(x_img) + self.first_cond(cond_img))
        for layer in self.middle:
            h = F.relu(layer(h)) + h  # residual: keeps 8 layers trainable
        return self.out(h)


class Decoder(nn.Module):
    """p(x|z): an MLP giving 784 Bernoulli logits, optionally refined by a PixelCNN."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mlp = SkipMLP(cfg.latent, cfg.hidden, cfg.dec_depth, cfg.activation, cfg.dec_skip, cfg.dec_zskip)
        self.out = nn.Linear(cfg.hidden, X_DIM)
        self.pixelcnn = PixelCNN(cfg.pixel_layers, cfg.pixel_channels) if cfg.decoder == "pixelcnn" else None

    def mlp_logits(self, z):
        return self.out(self.mlp(z))

    def logits(self, x, z):
        """Per-pixel logits of p(x_i | x_<i, z) (for the MLP decoder x is not used)."""
        cond = self.mlp_logits(z)
        if self.pixelcnn is None:
            return cond
        shape = (-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        return self.pixelcnn(x.reshape(shape), cond.reshape(shape)).flatten(1)

    def log_prob(self, x, z):
        return log_bernoulli_logits(x, self.logits(x, z))

    @torch.no_grad()
    def sample(self, z, mean: bool = False, generator=None):
        """Images from p(x|z): binary draws, or (``mean``) pixel probabilities.

        For the PixelCNN, sampling is autoregressive (one pass per pixel) and ``mean``
        returns p(x_i = 1 | sampled x_<i, z), the grey-level picture of that draw.
        """
        cond = self.mlp_logits(z)
        if self.pixelcnn is None:
            p = torch.sigmoid(cond)
            return p if mean else torch.bernoulli(p, generator=generator)
        x, probs = torch.zeros_like(cond), torch.zeros_like(cond)
        for i in range(X_DIM):
            probs[:, i] = torch.sigmoid(self.logits(x, z)[:, i])
            x[:, i] = torch.bernoulli(probs[:, i], generator=generator)
        return probs if mean else x


class StandardNormalPrior(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.register_buffer("zero", torch.zeros(cfg.latent))  # carries device and size

    def log_prob(self, z, encoder=None):
        return -0.5 * (LOG_2PI + z**2).sum(-1)

    def sample(self, n, encoder=None, generator=None):
        return torch.randn(n, self.zero.shape[0], generator=generator, device=self.zero.device, dtype=self.zero.dtype)

    def fixed(self, encoder=None):
        return nullcontext()  # nothing to compute ahead (see VampPrior.fixed)


def log_mean_normal_diag(z, mu, logvar):
    """log (1/K sum_k N(z; mu_k, diag(exp(logvar_k)))) for z (..., D) and K components (K, D).

    Each component's quadratic form is expanded, sum_d (z_d^2 - 2 z_d mu_kd + mu_kd^2) / var_kd,
    so that every row against every component is one matrix product of (z^2, z) with
    (1/var, -2 mu/var): no (rows, K, D) tensor. The expanded terms are large and cancel, which
    in float32 cost up to 2.5e-3 nats (500 trained-like components, 20 of 50 dimensions
    active). Two remedies keep it near the direct form's rounding: z and mu are shifted by the
    components' mean (z - mu_k is unchanged), and each row's largest term is recomputed
    directly, the others entering relative to it. (A float64 product would be exact too, but
    cost 15% of a VAE(1L) NLL pass on the CPU.)
    """
    k, d = mu.shape
    flat = z.reshape(-1, d)
    center = mu.detach().mean(0)  # any shift gives the same value: no gradient needed
    zc, mc = flat - center, mu - center
    precision = torch.exp(-logvar)
    const = (mc * mc * precision + logvar).sum(-1) + d * LOG_2PI  # (K,): the terms without z
    weights = torch.cat([precision, -2.0 * mc * precision], -1)  # (K, 2D)
    # -0.5 * (const + [z^2, z] @ weights^T): log N(z; mu_k, var_k) for every row and component
    lp = torch.addmm(const, torch.cat([zc * zc, zc], -1), weights.t(), beta=-0.5, alpha=-0.5)
    best = lp.detach().argmax(-1, keepdim=True)
    exact = log_normal_diag(flat, mu[best[:, 0]], logvar[best[:, 0]])
    # Terms more than 80 nats below the largest (< 2e-35 of it) are clamped there, which keeps
    # exp() off its slow path for subnormal results. The gradient is the mixture's: the
    # largest term's exact and expanded forms agree, so their gradients cancel.
    rest = (lp - lp.gather(-1, best)).clamp(min=-80.0).exp().sum(-1).log()
    return (exact + rest - math.log(k)).view(z.shape[:-1])


class VampPrior(nn.Module):
    """p(z) = 1/K sum_k q(z | u_k) with learned pseudo-inputs u_k (Tomczak & Welling 2018).

    Pseudo-inputs are kept in [0, 1] by hardtanh and start near 0.05 +- 0.01, the
    published setting for binary images. Each ``log_prob`` call encodes the K pseudo-inputs
    once (a training step: with their gradient); inside ``fixed`` they are encoded once for
    all calls.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pseudo = nn.Parameter(0.05 + 0.01 * torch.randn(cfg.pseudo_inputs, X_DIM))
        self._fixed: tuple[torch.Tensor, torch.Tensor] | None = None

    def components(self, encoder):
        """(mu, logvar) of q(z | u_k), each (K, D)."""
        if self._fixed is not None:
            return self._fixed
        return encoder(F.hardtanh(self.pseudo, 0.0, 1.0))

    @contextmanager
    def fixed(self, encoder):
        """Encode the pseudo-inputs once, without gradient, for every call inside: an evaluation
        (the NLL's many passes) sees the same components, which need not be recomputed."""
        outer = self._fixed
        with torch.no_grad():
            self._fixed = tuple(t.detach() for t in self.components(encoder))
        try:
            yield
        finally:
            self._fixed = outer

    def log_prob(self, z, encoder):
        return log_mean_normal_diag(z, *self.components(encoder))

    def sample(self, n, encoder, generator=None):
        mu, logvar = self.components(encoder)
        k = torch.randint(mu.shape[0], (n,), generator=generator, device=mu.device)
        eps = torch.randn(n, mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype)
        return mu[k] + torch.exp(0.5 * logvar[k]) * eps


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.prior = VampPrior(cfg) if cfg.prior == "vamp" else StandardNormalPrior(cfg)
        if cfg.init == "xavier":
            init_xavier_(self, cfg.activation)
        elif cfg.init == "he":
            init_he_(self)

    # --- the densities every estimator is built from --------------------------------
    def encode(self, x):
        return self.encoder(x)

    def log_prior(self, z):
        return self.prior.log_prob(z, self.encoder)

    def log_likelihood(self, x, z):
        return self.decoder.log_prob(x, z)

    def encoder_hidden(self, x) -> list[torch.Tensor]:
        """h_1 .. h_L of the encoder (for layer-wise t-SNE)."""
        return self.encoder.mlp(x, keep=True)

    # --- training objective -------------------------------------------------------
    def elbo(self, x, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-example one-sample ELBO terms; ``beta`` weighs the KL (warm-up).

        KL is analytic for the standard-normal prior and a one-sample estimate,
        log q(z|x) - log p(z), for the VampPrior (which has no closed form).
        """
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = self.log_likelihood(x, z)
        if self.cfg.prior == "normal":
            kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(-1)
        else:
            kl = log_normal_diag(z, mu, logvar) - self.log_prior(z)
        return {"elbo": rec - kl, "rec": rec, "kl": kl, "loss": -(rec - beta * kl)}

    # --- what the figures show ------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x):
        """Pixel probabilities of p(x|z) at z = the posterior mean."""
        mu, _ = self.encode(x)
        return self.decoder.sample(mu, mean=True)

    @torch.no_grad()
    def sample(self, n: int, generator=None):
        z = self.prior.sample(n, self.encoder, generator=generator)
        return self.decoder.sample(z.to(self.device), mean=True)

    @property
    def device(self):
        return next(self.parameters()).device

    def linear_layers(self) -> dict[str, nn.Module]:
        """Every weight layer by name, encoder first, in forward order (for Fisher)."""
        return {
            name: m
            for name, m in self.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not name.startswith("prior")
        }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
