"""The model zoo: shapes, densities, the skip structure of eqs. 11-12, VampPrior, PixelCNN masks."""
import functools
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from scvae_core.config import same_config
from scvae_core.models import (VAE, X_DIM, ModelConfig, count_parameters, log_bernoulli_logits, log_mean_normal_diag,
                               log_normal_diag, resample)
from scvae_core.presets import PRESETS, get_preset
from scvae_core.zoo import DEEP, MODELS, UnknownName, get_config

pytestmark = pytest.mark.unit


@functools.cache
def model(name: str) -> VAE:
    """Each registered model built once (seeded), shared by the tests that only read it."""
    torch.manual_seed(0)
    return VAE(get_config(name))


def binary(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.bernoulli(torch.full(shape, 0.3, dtype=dtype))


@pytest.mark.parametrize("name", list(MODELS))
@torch.no_grad()
def test_shapes(name):
    m, cfg = model(name), get_config(name)
    torch.manual_seed(1)
    x, b = binary(3, X_DIM), 3
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (b, cfg.latent)
    hidden = m.encoder_hidden(x)
    assert [h.shape for h in hidden] == [(b, cfg.hidden)] * cfg.enc_depth
    assert m.log_prior(mu).shape == m.log_likelihood(x, mu).shape == (b,)
    terms = m.elbo(x, beta=0.5)
    assert set(terms) == {"elbo", "rec", "kl", "loss"}
    for value in terms.values():
        assert value.shape == (b,) and value.isfinite().all()
    torch.testing.assert_close(terms["loss"], -(terms["rec"] - 0.5 * terms["kl"]))
    if cfg.decoder == "bernoulli":  # PixelCNN pictures take 784 passes: see test_pixelcnn_pictures
        recon = m.reconstruct(x)
        assert recon.shape == (b, X_DIM) and 0 <= recon.min() and recon.max() <= 1
        assert m.sample(2).shape == (2, X_DIM)
    names = list(m.linear_layers())
    assert names and all(n.startswith(("encoder.", "decoder.")) for n in names)
    assert names == sorted(names, key=lambda n: not n.startswith("encoder."))  # encoder first


def test_log_normal_diag_matches_torch_distributions():
    torch.manual_seed(0)
    z, mu, logvar = torch.randn(3, 5, 7, dtype=torch.float64).unbind(0)
    expected = D.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal_diag(z, mu, logvar), expected)


def test_bernoulli_log_likelihood_by_hand():
    torch.manual_seed(0)
    logits = 3 * torch.randn(4, X_DIM, dtype=torch.float64)
    x = binary(4, X_DIM, dtype=torch.float64)
    p = 1 / (1 + torch.exp(-logits))
    by_hand = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    torch.testing.assert_close(log_bernoulli_logits(x, logits), by_hand)
    # Stable where the naive formula would give log(0): only the wrong-side pixel costs 100 nats.
    big = torch.tensor([[100.0, -100.0, 100.0]], dtype=torch.float64)
    torch.testing.assert_close(log_bernoulli_logits(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), big),
                               torch.tensor([-100.0], dtype=torch.float64))


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=16, latent=4)).double()
    with torch.no_grad():
        m.encoder.logvar.bias.fill_(-1.0)  # a posterior unlike the prior, so KL is far from 0
        x = binary(3, X_DIM, dtype=torch.float64)
        kl = m.elbo(x)["kl"]
        mu, logvar = m.encode(x)
        q = D.Normal(mu, torch.exp(0.5 * logvar))
        torch.testing.assert_close(kl, D.kl_divergence(q, D.Normal(0.0, 1.0)).sum(-1))
        z = q.sample((200_000,))
        samples = log_normal_diag(z, mu, logvar) - m.log_prior(z)
    se = samples.std(0) / math.sqrt(len(samples))
    assert ((samples.mean(0) - kl).abs() < 5 * se).all(), (samples.mean(0), kl, se)


@pytest.mark.parametrize("skip, plain", [("scvae", "vae-11l"), ("scvae-l", "vae-11l")] + [
    (f"{side}{d:02d}-skip", f"{side}{d:02d}-plain") for side in ("enc", "dec") for d in range(1, DEEP + 1)])
def test_skip_model_has_the_parameters_of_its_plain_counterpart(skip, plain):
    assert count_parameters(model(skip)) == count_parameters(model(plain))


@pytest.mark.parametrize("name", ["vae-1l", "vae-11l", "vae-q++", "vae-p++", "scvae", "scvae-l"])
def test_relu_twin_differs_only_in_its_activation(name):
    twin = get_config(name + "-relu")
    assert twin.activation == "relu" and get_config(name).activation == "tanh"
    assert replace(twin, activation="tanh") == get_config(name)
    assert any(isinstance(m, torch.nn.ReLU) for m in model(name + "-relu").modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model(name).modules())


@pytest.mark.parametrize("name", ["vae-1l", "vae-11l", "vae-q++", "vae-p++", "scvae", "scvae-l"])
def test_xavier_twin_differs_only_in_its_initialisation(name):
    twin = get_config(name + "-xavier")
    assert twin.init == "xavier" and get_config(name).init == "default"
    assert replace(twin, init="default") == get_config(name)


@torch.no_grad()
def test_xavier_init_keeps_the_input_signal_through_eleven_tanh_layers():
    """Why the init stage exists: with PyTorch's default init the posterior mean of VAE(q++)
    hardly depends on the input at initialisation; with Xavier's tanh gain it does."""
    x = binary(256, X_DIM)
    spread = {}
    for name in ("vae-q++", "vae-q++-xavier"):
        mu, _ = model(name).encode(x)
        spread[name] = mu.std(0).mean().item()
    assert spread["vae-q++"] < 0.01 < 0.3 < spread["vae-q++-xavier"], spread


def test_xavier_init_sets_glorot_weights_and_zero_biases():
    m = model("vae-q++-xavier")
    w = m.encoder.mlp.layers[3].weight
    bound = 5 / 3 * math.sqrt(6 / (w.shape[0] + w.shape[1]))  # tanh gain x Glorot-uniform bound
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    head = m.encoder.mu.weight
    assert head.abs().max() <= math.sqrt(6 / (head.shape[0] + head.shape[1]))
    assert all((lin.bias == 0).all() for lin in (m.encoder.mlp.layers[0], m.encoder.mu, m.decoder.out))
    assert not (model("vae-q++").encoder.mu.bias == 0).all()


def test_a_stored_config_without_a_later_field_reads_as_its_default():
    cfg = get_config("vae-q++")
    old = {k: v for k, v in cfg.to_dict().items() if k != "init"}  # written before `init` existed
    assert same_config(old, cfg)
    assert not same_config(old, get_config("vae-q++-xavier"))
    assert not same_config({**cfg.to_dict(), "retired_field": 1}, cfg)
    assert not same_config({**cfg.to_dict(), "init": "lecun"}, cfg)
    assert not same_config(None, cfg) and not same_config({}, cfg)


def test_an_unknown_init_names_the_choices():
    with pytest.raises(ValueError, match="init='lecun'.*default.*xavier"):
        ModelConfig(init="lecun")


def _zero(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def test_resample_is_linear_interpolation():
    torch.manual_seed(0)
    h = torch.randn(2, 784, dtype=torch.float64)
    assert resample(h, 784) is h
    torch.testing.assert_close(resample(torch.full((1, 50), 0.7), 500), torch.full((1, 500), 0.7))
    # align_corners=False: output i sits at input position (i + 0.5) * n_in / n_out - 0.5 (clamped at 0)
    pos = ((torch.arange(500, dtype=torch.float64) + 0.5) * 784 / 500 - 0.5).clamp(min=0)
    lo = pos.floor().long()
    frac = pos - lo
    expected = h[:, lo] * (1 - frac) + h[:, (lo + 1).clamp(max=783)] * frac
    torch.testing.assert_close(resample(h, 500), expected)


@torch.no_grad()
def test_short_skips_of_eq11_carry_the_input_through_zeroed_layers():
    torch.manual_seed(0)
    x, z = binary(2, X_DIM), torch.randn(2, 50)
    for name, side, inp in (("scvae", "encoder", x), ("scvae", "decoder", z), ("vae-11l", "encoder", x)):
        mlp = getattr(VAE(get_config(name)), side).mlp
        _zero(mlp)
        hs = mlp(inp, keep=True)
        expected = resample(inp, 500) if name == "scvae" else torch.zeros(2, 500)  # tanh(0) = 0 without skips
        assert len(hs) == DEEP
        for h in hs:
            torch.testing.assert_close(h, expected, rtol=0, atol=0)
        assert name == "vae-11l" or expected.abs().sum() > 0


@torch.no_grad()
def test_scvae_l_has_one_long_skip_from_first_to_last_hidden_layer():
    torch.manual_seed(0)
    m = VAE(get_config("scvae-l"))
    layers = m.encoder.mlp.layers
    _zero(m.encoder.mlp)
    b, c = torch.randn(2, 500)
    layers[0].bias.copy_(b)
    layers[1].bias.copy_(c)
    hs = m.encoder_hidden(binary(3, X_DIM))
    h1, h2 = torch.tanh(b).expand(3, -1), torch.tanh(c).expand(3, -1)
    torch.testing.assert_close(hs[0], h1)
    torch.testing.assert_close(hs[1], h2)  # no short skip: h_2 does not contain h_1
    for h in hs[2:-1]:
        assert h.abs().max() == 0  # nothing reaches the middle layers
    torch.testing.assert_close(hs[-1], h1)  # the single long skip, from h_1 (not h_2)
    # The decoder keeps SCVAE's short skips.
    _zero(m.decoder.mlp)
    z = torch.randn(3, 50)
    torch.testing.assert_close(m.decoder.mlp(z), resample(z, 500))


@torch.no_grad()
def test_vampprior_is_the_mixture_of_encoded_pseudo_inputs():
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=8, latent=2, prior="vamp", pseudo_inputs=3)).double()
    mu, logvar = m.encoder(F.hardtanh(m.prior.pseudo, 0.0, 1.0))
    z = torch.randn(4, 2, dtype=torch.float64)
    for zi, lp in zip(z.tolist(), m.log_prior(z).tolist()):
        density = 0.0
        for k in range(3):
            comp = 1.0
            for d in range(2):
                var = math.exp(logvar[k, d])
                comp *= math.exp(-((zi[d] - mu[k, d].item()) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
            density += comp / 3
        assert lp == pytest.approx(math.log(density), rel=1e-10)


def _pixel_model(cfg: ModelConfig) -> VAE:
    torch.manual_seed(0)
    return VAE(cfg).double().eval()


@torch.no_grad()
def test_pixelcnn_is_causal():
    m = _pixel_model(get_config("pixelvae"))
    gen = torch.Generator().manual_seed(0)
    positions = [0, 1, 27, 28, 29, 405, 755, 782, 783] + torch.randint(784, (15,), generator=gen).tolist()
    x = torch.bernoulli(torch.full((1, X_DIM), 0.5, dtype=torch.float64), generator=gen)
    z = torch.randn(1, 50, dtype=torch.float64, generator=gen)
    base = m.decoder.logits(x, z)
    for i in positions:
        flipped = x.clone()
        flipped[0, i] = 1 - flipped[0, i]
        change = (m.decoder.logits(flipped, z) - base).abs()[0]
        assert change[: i + 1].max() < 1e-12, f"pixel {i} leaks into logits up to {change[: i + 1].argmax()}"
        if i < X_DIM - 1:
            assert change[i + 1:].max() > 1e-6, f"pixel {i} changes no later logit"


@torch.no_grad()
def test_pixelcnn_pictures():
    m = _pixel_model(ModelConfig(hidden=16, latent=4, decoder="pixelcnn", pixel_layers=2, pixel_channels=4))
    recon = m.reconstruct(binary(2, X_DIM, dtype=torch.float64))
    assert recon.shape == (2, X_DIM) and 0 <= recon.min() and recon.max() <= 1
    assert m.sample(2).shape == (2, X_DIM)
    draws = m.decoder.sample(torch.randn(2, 4, dtype=torch.float64))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}


@torch.no_grad()
def test_pixelcnn_log_likelihood_is_the_sum_of_per_pixel_conditionals():
    """log p(x|z) = sum_i log p(x_i | x_<i, z), each term computed with the pixels >= i replaced by noise."""
    m = _pixel_model(ModelConfig(hidden=16, latent=4, decoder="pixelcnn", pixel_layers=4, pixel_channels=4))
    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((2, X_DIM), 0.5, dtype=torch.float64), generator=gen)
    z = torch.randn(2, 4, dtype=torch.float64, generator=gen)
    later = torch.ones(X_DIM, X_DIM, dtype=torch.bool).triu()  # row i: True at pixels j >= i
    for b in range(2):
        noise = torch.bernoulli(torch.full((X_DIM, X_DIM), 0.5, dtype=torch.float64), generator=gen)
        inputs = torch.where(later, noise, x[b])  # row i: x_<i, then noise
        logits = m.decoder.logits(inputs, z[b].expand(X_DIM, -1)).diagonal()
        per_pixel = x[b] * F.logsigmoid(logits) + (1 - x[b]) * F.logsigmoid(-logits)
        assert m.log_likelihood(x[b:b + 1], z[b:b + 1]).item() == pytest.approx(per_pixel.sum().item(), rel=1e-10)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownName, match="unknown model 'vae-2l'.*vae-1l.*scvae-l"):
        get_config("vae-2l")
    with pytest.raises(UnknownName, match="unknown preset 'fast'.*smoke, cpu, paper"):
        get_preset("fast")
    with pytest.raises(UnknownName, match="unknown stage 'table3'.*table1, depth, table2"):
        PRESETS["smoke"].stage_models("table3")
    assert issubclass(UnknownName, ValueError)  # the CLI turns ValueError into a clean message


@pytest.mark.parametrize("change, field", [
    ({"enc_depth": 0}, "enc_depth"), ({"dec_depth": -1}, "dec_depth"), ({"enc_skip": "medium"}, "enc_skip"),
    ({"dec_skip": "all"}, "dec_skip"), ({"activation": "swish"}, "activation"), ({"prior": "gmm"}, "prior"),
    ({"decoder": "gaussian"}, "decoder"), ({"decoder": "pixelcnn", "pixel_layers": 1}, "pixel_layers"),
    ({"enc_skip": "long", "enc_depth": 2}, "enc_depth >= 3"), ({"latent": 0}, "latent"), ({"hidden": 0}, "hidden"),
])
def test_invalid_model_config_is_refused(change, field):
    with pytest.raises(ValueError, match=f"invalid ModelConfig: .*{field}"):
        replace(ModelConfig(), **change)


class TestVampPriorAsMatrixProducts:
    """log p(z) of the VampPrior as one matrix product per call (the quadratic forms expanded)
    against the direct (rows, K, D) broadcast, and its pseudo-inputs encoded once per NLL."""

    @staticmethod
    def broadcast(z, mu, logvar):
        return torch.logsumexp(log_normal_diag(z.unsqueeze(-2), mu, logvar), -1) - math.log(mu.shape[0])

    @staticmethod
    def mixture(k: int, d: int, dtype=torch.float64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        mu = torch.randn(k, d, generator=g, dtype=dtype)
        logvar = torch.empty(k, d, dtype=dtype).uniform_(-3.0, 1.0, generator=g)
        z = torch.randn(7, 3, d, generator=g, dtype=dtype) * 1.5  # any leading shape
        return z, mu, logvar

    @pytest.mark.parametrize("k,d", [(1, 1), (3, 2), (5, 4), (17, 9)])
    def test_equals_the_broadcast_form_in_float64(self, k, d):
        z, mu, logvar = self.mixture(k, d)
        torch.testing.assert_close(log_mean_normal_diag(z, mu, logvar), self.broadcast(z, mu, logvar),
                                   rtol=0, atol=1e-10)

    @pytest.mark.parametrize("k,d", [(3, 2), (17, 9), (50, 20)])
    def test_float32_is_within_1e_4_nats_of_float64(self, k, d):
        z, mu, logvar = self.mixture(k, d)
        exact = self.broadcast(z, mu, logvar)
        got = log_mean_normal_diag(z.float(), mu.float(), logvar.float())
        assert got.dtype == torch.float32 and (got.double() - exact).abs().max() < 1e-4

    def test_float32_holds_for_trained_like_components(self):
        """500 components, 20 of 50 dimensions active with small variances, z near one of them:
        the plain expansion lost 2.5e-3 nats here in float32; the recomputed largest term keeps
        it at the broadcast form's own rounding."""
        g = torch.Generator().manual_seed(0)
        k, d, active = 500, 50, 20
        mu, logvar = 0.05 * torch.randn(k, d, generator=g, dtype=torch.float64), \
            0.1 * torch.randn(k, d, generator=g, dtype=torch.float64)
        mu[:, :active] = torch.randn(k, active, generator=g, dtype=torch.float64)
        logvar[:, :active] = torch.empty(k, active, dtype=torch.float64).uniform_(-6.0, -3.0, generator=g)
        near = torch.randint(k, (2000,), generator=g)
        z = mu[near] + 0.5 * torch.exp(0.5 * logvar[near]) * torch.randn(2000, d, generator=g, dtype=torch.float64)
        got = log_mean_normal_diag(z.float(), mu.float(), logvar.float())
        assert (got.double() - self.broadcast(z, mu, logvar)).abs().max() < 1e-4

    def test_far_components_are_finite_and_exact(self):
        """Terms hundreds of nats below the largest (clamped at 80 below it) change nothing."""
        mu = torch.tensor([[0.0, 0.0], [30.0, -30.0], [1.0, 0.5]], dtype=torch.float64)
        logvar = torch.tensor([[-4.0, -4.0], [-6.0, -6.0], [0.0, 0.0]], dtype=torch.float64)
        z = torch.tensor([[0.01, -0.02], [29.9, -30.1], [200.0, 200.0]], dtype=torch.float64)
        got = log_mean_normal_diag(z, mu, logvar)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, self.broadcast(z, mu, logvar), rtol=1e-12, atol=1e-9)

    def test_gradients_equal_the_broadcast_forms(self):
        z, mu, logvar = (t.requires_grad_() for t in self.mixture(6, 3))
        ours = torch.autograd.grad(log_mean_normal_diag(z, mu, logvar).sum(), (z, mu, logvar))
        direct = torch.autograd.grad(self.broadcast(z, mu, logvar).sum(), (z, mu, logvar))
        for a, b in zip(ours, direct):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)

    @staticmethod
    def counting_vamp(k: int = 5):
        """A small VampPrior model whose encoder counts its calls on the K pseudo-inputs."""
        torch.manual_seed(0)
        m = VAE(ModelConfig(hidden=8, latent=3, prior="vamp", pseudo_inputs=k)).double()
        calls = []
        m.encoder.register_forward_hook(lambda mod, args, out: calls.append(len(args[0])))
        return m, calls

    def test_fixed_encodes_the_pseudo_inputs_once_for_every_call(self):
        m, calls = self.counting_vamp()
        z = torch.randn(4, 3, dtype=torch.float64)
        free = [m.log_prior(z) for _ in range(3)]
        assert calls == [5, 5, 5]  # outside: once per call
        calls.clear()
        with m.prior.fixed(m.encoder):
            held = [m.log_prior(z) for _ in range(3)]
            with m.prior.fixed(m.encoder):  # nested: keeps the outer one's, and restores it on exit
                m.log_prior(z)
            m.log_prior(z)
        assert calls == [5]
        for a, b in zip(free, held):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert m.prior._fixed is None  # left as found

    def test_training_gradient_reaches_the_pseudo_inputs_only_outside_fixed(self):
        m, _ = self.counting_vamp()
        x = binary(6, X_DIM, dtype=torch.float64)
        m.elbo(x)["loss"].sum().backward()
        assert m.prior.pseudo.grad is not None and m.prior.pseudo.grad.abs().sum() > 0
        m.zero_grad(set_to_none=True)
        with m.prior.fixed(m.encoder):
            m.elbo(x)["loss"].sum().backward()
        assert m.prior.pseudo.grad is None  # evaluation only: its components are constants

    def test_importance_nll_encodes_the_pseudo_inputs_once_per_call(self):
        from scvae_core.evaluate import importance_nll

        m, calls = self.counting_vamp()
        importance_nll(m.float().eval(), binary(6, X_DIM), n_samples=8, chunk=2)  # 4 passes
        assert calls == [5, 6]  # the 5 pseudo-inputs once, then the 6 images
