"""Collapse diagnostics (diagnostics.py): the mutual information against cases whose value is
known, the KL per unit, the bypass check on decoders built to ignore z, and the block's schema."""
import math

import pytest
import torch

from scvae_core import diagnostics as dg
from scvae_core import results
from scvae_core.models import VAE, X_DIM, ModelConfig

pytestmark = pytest.mark.unit


def small_vae(**kw) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(hidden=32, latent=4, **kw))


def binary_images(n: int) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, X_DIM), 0.3, dtype=torch.float32), generator=torch.Generator().manual_seed(1))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------- mutual information

def test_mi_of_an_encoder_that_ignores_x_is_zero():
    model = small_vae()
    with torch.no_grad():
        for head in (model.encoder.mu, model.encoder.logvar):
            head.weight.zero_()  # every image gets the same posterior
    report = dg.diagnostics_report(model, binary_images(100), {"kl": 0.0, "rec": 0.0}, 0.01, gen())
    mi = report["mutual_information"]
    assert abs(mi["value"]) < 1e-9 and mi["se"] < 1e-9
    # the rate is then all mismatch between q(z) and p(z): KL(q(z|x) || p) = KL(q(z) || p)
    assert mi["mean_kl"] == pytest.approx(mi["marginal_kl"], abs=1e-9)


def test_mi_recovers_the_analytic_value_of_gaussian_posteriors():
    """x ~ N(0, diag(s^2)), q(z|x) = N(x, diag(sigma^2)): I(x; z) = sum_d 1/2 log(1 + s_d^2 / sigma_d^2).
    Its N posteriors' mixture stands for the population; the estimate lands within 3 of its se."""
    s, sigma, n = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.0]), 4000
    exact = (0.5 * torch.log1p(s**2 / sigma**2)).sum().item()  # 0.805 + 0.805 nats
    mu = torch.randn(n, 2, generator=gen(3), dtype=torch.float64) * s
    logvar = (2 * sigma.log()).double().expand(n, 2)
    mi = dg.aggregate_mi(mu, logvar, draws=1, generator=gen(4))
    assert 0 < mi["se"] < 0.05 and abs(mi["value"] - exact) < 3 * mi["se"], (mi["value"], exact, mi["se"])
    assert (mi["points"], mi["draws_per_point"], mi["samples"]) == (n, 1, n)


def test_mi_of_separated_posteriors_reaches_its_log_n_bound():
    """Posteriors too far apart to overlap: z names its image, I = log N, the bound of the estimator."""
    n = 50
    mu = torch.arange(n, dtype=torch.float64)[:, None] * 100.0
    mi = dg.aggregate_mi(mu, torch.zeros(n, 1, dtype=torch.float64), draws=5, generator=gen())
    assert mi["value"] == pytest.approx(math.log(n), abs=1e-9) and mi["log_n_bound"] == math.log(n)


def test_mi_and_marginal_kl_split_the_rate():
    model = small_vae(prior="vamp", pseudo_inputs=5)
    mi = dg.diagnostics_report(model, binary_images(60), {"kl": 0.0, "rec": 0.0}, 0.01, gen())["mutual_information"]
    assert mi["value"] == pytest.approx(mi["mean_kl"] - mi["marginal_kl"], abs=1e-9)
    assert mi["mean_kl_se"] > 0 and mi["marginal_kl_se"] > 0


def test_bad_posteriors_are_refused():
    with pytest.raises(ValueError, match=r"\(N, D\) with N >= 2"):
        dg.aggregate_mi(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="diverged"):
        dg.aggregate_mi(torch.tensor([[0.0], [math.nan]]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="at least one z"):
        dg.aggregate_mi(torch.zeros(2, 1), torch.zeros(2, 1), draws=0)


# --------------------------------------------------------------- KL per unit, active units

def test_kl_per_unit_adds_up_to_the_analytic_kl():
    model, x = small_vae(), binary_images(40)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)).double().mean().item()
    per_unit = dg.kl_per_unit(model, mu, logvar)["values"]
    assert len(per_unit) == 4 and sum(per_unit) == pytest.approx(kl, rel=1e-6)


def test_kl_per_unit_is_not_defined_for_the_vampprior():
    model = small_vae(prior="vamp", pseudo_inputs=5)
    assert dg.kl_per_unit(model, torch.zeros(3, 4), torch.zeros(3, 4)) == {"not_defined": dg.KL_VAMP_REASON}


def test_active_units_at_burdas_threshold():
    mu = torch.stack([torch.linspace(-1, 1, 100), torch.full((100,), 0.3), torch.linspace(0, 0.1, 100)], 1)
    au = dg.active_unit_report(mu, 0.01)
    assert au["count"] == 1 and au["threshold"] == 0.01 and au["same_threshold"]
    assert not dg.active_unit_report(mu, 0.02)["same_threshold"] and len(au["unit_variance"]) == 3


# --------------------------------------------------------------- bypass

def ignore_z(model: VAE) -> VAE:
    """A decoder built to ignore z: its MLP gets zeros in place of z. (Zeroing the first layer's
    weights would not do for SCVAE's decoder: its first short skip adds z itself to h_1.)"""
    model.decoder.mlp.register_forward_pre_hook(lambda module, args: (torch.zeros_like(args[0]), *args[1:]))
    return model


@pytest.mark.parametrize("kw", [{}, {"dec_depth": 3, "dec_skip": "short", "dec_zskip": True},
                                {"prior": "vamp", "pseudo_inputs": 5},
                                {"decoder": "pixelcnn", "pixel_layers": 2, "pixel_channels": 4}],
                         ids=["bernoulli", "skips+zskips", "vamp", "pixelcnn"])
def test_bypass_check_fires_on_a_decoder_that_ignores_z(kw):
    x = binary_images(30)
    deaf = dg.bypass_check(ignore_z(small_vae(**kw)), x, generator=gen())
    assert deaf["ignores_z"] and deaf["mean_abs_change"] == 0 and deaf["delta_log_likelihood"] == 0
    model = small_vae(**kw)
    with torch.no_grad():
        model.decoder.mlp.layers[0].weight.mul_(10.0)  # a decoder that uses z
    hearing = dg.bypass_check(model, x, generator=gen())
    assert not hearing["ignores_z"] and hearing["mean_abs_change"] > dg.BYPASS_TOLERANCE


# --------------------------------------------------------------- the eval.json block

@pytest.mark.parametrize("kw", [{}, {"prior": "vamp", "pseudo_inputs": 5}], ids=["normal", "vamp"])
def test_the_block_is_valid_in_a_result_file(kw):
    report = dg.diagnostics_report(small_vae(**kw), binary_images(20), {"kl": 2.0, "rec": -90.0}, 0.01, gen())
    assert set(report) == {"mutual_information", "active_units", "kl_per_unit", "rate_distortion", "bypass"}
    assert (report["rate_distortion"]["rate"], report["rate_distortion"]["distortion"]) == (2.0, 90.0)
    problems = []
    results._walk({"diagnostics": report}, (), problems)  # finite numbers, prose only under prose keys
    assert not problems, problems
