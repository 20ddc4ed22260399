"""Posterior-collapse diagnostics the literature since the paper uses: the ``diagnostics`` block
of eval.json.

The paper judges degeneration by its own Fisher measure; later work judges posterior collapse by
the mutual information I(x; z) under the aggregate posterior (Hoffman & Johnson 2016; Dieng et
al. 2019; He et al. 2019), the active units (Burda et al. 2016), the KL per latent unit, the
rate-distortion pair (Alemi et al. 2018) and, for decoders with skip paths, whether the decoder
uses z at all. Every quantity is of the evaluated test images: q(z) is the mixture of their
posteriors, q(z) = 1/N sum_n q(z | x_n).
"""
from __future__ import annotations

import math

import torch

from .models import VAE, log_mean_normal_diag, log_normal_diag

BURDA_AU_THRESHOLD = 0.01  # Burda et al. (2016): unit u is active if Cov_x(E_q[z_u]) > 0.01
MI_DRAWS = 10  # z ~ q(z|x) per test image for the MI; 10,000 images: ~10^9 mixture terms, a minute on one core
# A decoder whose Bernoulli means move by less than this (mean over images and pixels) when each
# image's z is replaced by a prior draw is taken to ignore z: 1% of a pixel's range.
BYPASS_TOLERANCE = 0.01
MIXTURE_TERMS = 2**23  # (rows x components) per pass of the mixture density: 64 MiB in float64

MI_ESTIMATOR = ("I(x;z) = E_x KL(q(z|x) || p(z)) - KL(q(z) || p(z)) = E_{x, z~q(z|x)}[log q(z|x) - log q(z)], "
                "q(z) the mixture of the N test images' posteriors, evaluated exactly (float64, every "
                "component, the image's own among them); Monte Carlo over the draws z (Hoffman and Johnson "
                "2016; Dieng et al. 2019). se: the standard error of the mean over the N x draws values, which "
                "counts the spread between images too. Under that q(z) the MI cannot exceed log N "
                "(log_n_bound): a larger true MI reads as at most log N")
BYPASS_SOURCE = ("each test image's z replaced by one draw from the prior: mean_abs_change is the mean over images "
                 "and pixels of |Bernoulli mean at z = posterior mean - at z = prior draw| (for a PixelCNN the "
                 "teacher-forced means p(x_i = 1 | the earlier pixels of the image, z), one pass); "
                 "delta_log_likelihood the mean of log p(x|posterior mean) - log p(x|prior draw), nats per image. "
                 "A decoder that ignores z changes nothing")
KL_VAMP_REASON = ("the VampPrior is a mixture over all units jointly, so KL(q(z|x) || p(z)) does not "
                  "split into per-unit terms")


def _check_posteriors(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    if mu.ndim != 2 or mu.shape != logvar.shape or len(mu) < 2:
        raise ValueError(f"posterior means and log-variances must both be (N, D) with N >= 2, got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
        raise ValueError("posterior means or log-variances hold NaN or infinite values: the model diverged")


def log_aggregate_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z) = log 1/N sum_n N(z; mu_n, diag exp(logvar_n)) for every row of z (float64), a few
    thousand rows per pass so that memory stays at MIXTURE_TERMS whatever N is."""
    mu, logvar = mu.double(), logvar.double()
    rows = max(1, MIXTURE_TERMS // len(mu))
    return torch.cat([log_mean_normal_diag(zb, mu, logvar) for zb in z.double().split(rows)])


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else 0.0


def aggregate_mi(mu: torch.Tensor, logvar: torch.Tensor, log_prior=None, draws: int = MI_DRAWS,
                 generator: torch.Generator | None = None) -> dict:
    """The mutual information I(x; z) of N posteriors N(mu_n, exp(logvar_n)) (each (N, D)) under
    their mixture q(z), by Monte Carlo over ``draws`` z per posterior (see :data:`MI_ESTIMATOR`).

    With ``log_prior`` (z -> log p(z)), also its two terms from the same draws, E_x KL(q(z|x) || p)
    and KL(q(z) || p): they differ by the MI exactly, which says how much of the rate is
    information about x and how much the aggregate posterior's mismatch with the prior.
    """
    _check_posteriors(mu, logvar)
    if draws < 1:
        raise ValueError(f"draws={draws}: the MI needs at least one z per image")
    n = len(mu)
    std = torch.exp(0.5 * logvar)
    eps = torch.randn((draws, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z = (mu + std * eps).reshape(-1, mu.shape[1])  # draw-major: row d * N + n is image n's d-th draw
    mus, logvars = mu.repeat(draws, 1), logvar.repeat(draws, 1)
    log_q_x = log_normal_diag(z.double(), mus.double(), logvars.double())
    log_q = log_aggregate_posterior(z, mu, logvar)
    mi, mi_se = _mean_se(log_q_x - log_q)
    out = {"estimator": MI_ESTIMATOR, "value": mi, "se": mi_se, "points": n, "draws_per_point": draws,
           "samples": n * draws, "log_n_bound": math.log(n)}
    if log_prior is not None:
        log_p = torch.cat([log_prior(zb).double() for zb in z.split(max(1, MIXTURE_TERMS // n))])
        rate, rate_se = _mean_se(log_q_x - log_p)
        marginal, marginal_se = _mean_se(log_q - log_p)
        out |= {"mean_kl": rate, "mean_kl_se": rate_se, "marginal_kl": marginal, "marginal_kl_se": marginal_se}
    return out


def kl_per_unit(model: VAE, mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """The test-set mean of each latent unit's KL(q(z_u|x) || p(z_u)) (analytic; they add up to
    the ELBO's KL term), or why it is not defined for this model's prior."""
    if model.cfg.prior != "normal":
        return {"not_defined": KL_VAMP_REASON}
    mu, logvar = mu.double(), logvar.double()
    per_unit = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)
    return {"values": per_unit.mean(0).tolist()}


def active_unit_report(mu: torch.Tensor, metrics_threshold: float) -> dict:
    """Active units at Burda et al.'s threshold, each unit's Cov_x(E_q[z_u]) (the variance of its
    posterior mean over the images) and whether ``metrics.active_units`` used the same threshold."""
    variance = mu.double().var(dim=0)
    return {"count": int((variance > BURDA_AU_THRESHOLD).sum()), "threshold": BURDA_AU_THRESHOLD,
            "metrics_threshold": metrics_threshold, "same_threshold": metrics_threshold == BURDA_AU_THRESHOLD,
            "unit_variance": variance.tolist()}


@torch.no_grad()
def bypass_check(model: VAE, x: torch.Tensor, batch: int = 1024, generator: torch.Generator | None = None,
                 tolerance: float = BYPASS_TOLERANCE) -> dict:
    """How much each test image's reconstruction changes when its z is replaced by a prior draw
    (see :data:`BYPASS_SOURCE`). A skip path from input to output could let a decoder reconstruct
    without z; then this change is near 0 (``ignores_z``) whatever the NLL says."""
    x = x.to(model.device, torch.float32)
    abs_change, delta = [], []
    with model.prior.fixed(model.encoder):
        for xb in x.split(batch):
            mu, _ = model.encode(xb)
            z_prior = model.prior.sample(len(xb), model.encoder, generator=generator).to(mu)
            logits_q, logits_p = model.decoder.logits(xb, mu), model.decoder.logits(xb, z_prior)
            abs_change.append((torch.sigmoid(logits_q) - torch.sigmoid(logits_p)).abs().double().mean(1).cpu())
            delta.append((model.log_likelihood(xb, mu) - model.log_likelihood(xb, z_prior)).double().cpu())
    change, change_se = _mean_se(torch.cat(abs_change))
    gain, gain_se = _mean_se(torch.cat(delta))
    return {"source": BYPASS_SOURCE, "mean_abs_change": change, "mean_abs_change_se": change_se,
            "delta_log_likelihood": gain, "delta_log_likelihood_se": gain_se, "points": len(x),
            "tolerance": tolerance, "ignores_z": change < tolerance}


@torch.no_grad()
def posterior_params(model: VAE, x: torch.Tensor, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of q(z|x) for every row of x, on the model's device."""
    x = x.to(model.device, torch.float32)
    parts = [model.encode(xb) for xb in x.split(batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def diagnostics_report(model: VAE, x: torch.Tensor, elbo: dict[str, float], au_threshold: float,
                       generator: torch.Generator | None = None, draws: int = MI_DRAWS, batch: int = 1024) -> dict:
    """The ``diagnostics`` block of eval.json for the test images ``x``. ``elbo`` is the evaluation's
    ``elbo_terms`` (its KL term is the rate R, minus its reconstruction term the distortion D);
    ``au_threshold`` the one ``metrics.active_units`` used."""
    mu, logvar = posterior_params(model, x, batch)
    with model.prior.fixed(model.encoder):
        mi = aggregate_mi(mu, logvar, model.log_prior, draws, generator)
    return {
        "mutual_information": mi,
        "active_units": active_unit_report(mu, au_threshold),
        "kl_per_unit": kl_per_unit(model, mu, logvar),
        "rate_distortion": {"rate": elbo["kl"], "distortion": -elbo["rec"],
                            "source": "Alemi et al. 2018: R = the ELBO's KL term, D = minus its reconstruction "
                                      "term, test-set means in nats (metrics.kl and -metrics.rec)"},
        "bypass": bypass_check(model, x, batch, generator),
    }
