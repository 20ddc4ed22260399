"""Layer-wise Fisher (scvae_core.fisher): closed forms, the two exact routes, KFAC, the reports."""
import json
import math
from dataclasses import replace

import pytest
import torch

from scvae_core import fisher as fi
from scvae_core.models import VAE, ModelConfig

pytestmark = pytest.mark.unit

TINY = ModelConfig(hidden=16, latent=3, enc_depth=2, dec_depth=2)
SKIP = replace(TINY, enc_skip="short", dec_skip="short")
PIXEL = replace(TINY, decoder="pixelcnn", pixel_layers=3, pixel_channels=4)


def model(cfg: ModelConfig, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(cfg)


def binary(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.fixture(scope="module")
def trained_ish() -> tuple[VAE, torch.Tensor]:
    """TINY fitted for a few steps to noisy copies of 4 binary prototypes."""
    m = model(TINY)
    protos = binary(4, seed=1)
    x = protos[torch.arange(64) % 4]
    x = torch.where(torch.rand(x.shape, generator=gen(2)) < 0.05, 1 - x, x)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        m.elbo(x)["loss"].mean().backward()
        opt.step()
    return m, x


def test_encoder_gaussian_closed_form():
    # q(z|x) = N(W h, s^2 I) with a fixed variance: diag Fisher of W_ij is E[h_j^2] / s^2, and
    # of the log-variance layer's weights E[h_j^2] / 2 (score 0.5 (eps^2 - 1) h_j).
    m = model(replace(TINY, latent=50, enc_depth=1, dec_depth=1))  # 50 latents average the MC noise
    s2 = 0.25
    with torch.no_grad():
        m.encoder.logvar.weight.zero_()
        m.encoder.logvar.bias.fill_(math.log(s2))
    x = binary(2000)
    rows = {r["name"]: r["exact"] for r in fi.layer_fisher(m, x, generator=gen(), chunk=2000)}
    h2 = m.encoder.mlp(x).pow(2).mean().item()
    assert rel(rows["encoder.mu"], h2 / s2) < 0.03
    assert rel(rows["encoder.logvar"], h2 / 2) < 0.03


def test_decoder_bernoulli_closed_form():
    # p(x|z) = Bernoulli(sigmoid(W h + b)): diag Fisher of W_ij is E[p_i (1 - p_i) h_j^2].
    m = model(TINY)
    d = fi.draw_targets(m, binary(2000), generator=gen())
    rows = {r["name"]: r["exact"] for r in fi.layer_fisher(m, d, chunk=2000)}
    with torch.no_grad():
        h = m.decoder.mlp(d.z)
        p = torch.sigmoid(m.decoder.out(h))
    expected = ((p * (1 - p)).mean(1) * h.pow(2).mean(1)).mean().item()
    assert rel(rows["decoder.out"], expected) < 0.02


@pytest.mark.parametrize("cfg", [SKIP, PIXEL], ids=["skip-mlp", "pixelcnn"])
def test_vmap_grads_equal_loop(cfg):
    m = model(cfg)
    d = fi.draw_targets(m, binary(5), generator=gen(), pixel_sampling="teacher_forced")
    vec = list(fi.per_example_grads(m, d, chunk=2))
    loop = list(fi.per_example_grads_loop(m, d))
    assert [c[next(iter(c))].shape[0] for c in vec] == [2, 2, 1]
    for name in m.linear_layers():
        a = torch.cat([c[name] for c in vec])
        b = torch.cat([c[name] for c in loop])
        assert a.shape == (5, *m.linear_layers()[name].weight.shape)
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5, name


@pytest.mark.parametrize("cfg", [SKIP, PIXEL], ids=["skip-mlp", "pixelcnn"])
def test_hooks_exact_equals_torch_func(cfg):
    m = model(cfg)
    d = fi.draw_targets(m, binary(6), generator=gen(), pixel_sampling="teacher_forced")
    hooks = fi.layer_fisher(m, d, chunk=4)
    func = fi.layer_fisher(m, d, path="func", chunk=4)
    assert [r["name"] for r in hooks] == list(m.linear_layers())
    for a, b in zip(hooks, func):
        assert rel(a["exact"], b["exact"]) < 1e-5, a["name"]


def test_kfac_is_exact_for_one_point():
    m = model(SKIP)
    d = fi.draw_targets(m, binary(1), generator=gen())
    kfac = fi.layer_fisher(m, d, method="kfac")
    exact = fi.layer_fisher(m, d, path="func")
    for a, b in zip(kfac, exact):
        assert rel(a["kfac"], b["exact"]) < 1e-5, a["name"]


def test_kfac_is_exact_where_inputs_are_constant(trained_ish):
    # One x repeated: every encoder layer sees the same input a in each example, so
    # E[(g a)^2] = E[g^2] a^2; decoder inputs vary with the sampled z, so there it is an approximation.
    m, _ = trained_ish
    rows = fi.layer_fisher(m, binary(1).repeat(64, 1), method="both", generator=gen())
    enc = [rel(r["kfac"], r["exact"]) for r in rows if r["part"] == "encoder"]
    dec = [rel(r["kfac"], r["exact"]) for r in rows if r["part"] == "decoder"]
    assert max(enc) < 1e-6
    assert max(dec) > 1e-3


def test_fisher_non_negative_and_finite_including_pixelcnn():
    for cfg, sampling, n in ((SKIP, "autoregressive", 4), (PIXEL, "autoregressive", 1), (PIXEL, "teacher_forced", 4)):
        m = model(cfg)
        rows = fi.layer_fisher(m, binary(n), method="both", generator=gen(), pixel_sampling=sampling)
        assert len(rows) == len(m.linear_layers())
        for r in rows:
            assert math.isfinite(r["exact"]) and r["exact"] > 0, (cfg.decoder, r)
            assert math.isfinite(r["kfac"]) and r["kfac"] > 0, (cfg.decoder, r)


def test_empirical_targets_change_the_decoder_only(trained_ish):
    m, x = trained_ish
    model_t = fi.layer_fisher(m, x, targets="model", generator=gen())
    empirical = fi.layer_fisher(m, x, targets="empirical", generator=gen())
    for a, b in zip(model_t, empirical):
        if a["part"] == "encoder":  # same z draw: no observed z to use instead
            assert a["exact"] == b["exact"], a["name"]
    assert max(rel(a["exact"], b["exact"]) for a, b in zip(model_t, empirical) if a["part"] == "decoder") > 0.05


def test_fisher_report_block():
    m = model(SKIP)
    rep = fi.fisher_report(m, binary(7), generator=gen())
    assert set(rep) == {"targets", "points", "layers", "encoder_mean", "decoder_mean", "model_mean", "sides"}
    assert rep["targets"] == "model" and rep["points"] == 7
    assert all(set(r) == {"name", "part", "exact", "kfac"} for r in rep["layers"])
    enc = [r["exact"] for r in rep["layers"] if r["part"] == "encoder"]
    assert len(enc) == 4 and rep["encoder_mean"] == pytest.approx(sum(enc) / 4)
    assert rep["model_mean"] == pytest.approx(sum(r["exact"] for r in rep["layers"]) / len(rep["layers"]))
    json.dumps(rep, allow_nan=False)


def test_bad_options_are_refused():
    m, x = model(TINY), binary(2)
    for kwargs in ({"method": "diag"}, {"path": "jax"}, {"targets": "data"}, {"pixel_sampling": "fast"}):
        with pytest.raises(ValueError):
            fi.layer_fisher(m, x, **kwargs)


def test_proposition1_pairs():
    m = model(replace(TINY, enc_depth=3, dec_depth=1))
    x = binary(8)
    rep = fi.check_proposition1(m, x, generator=gen())
    pairs = rep["pairs"]
    assert [(p["part"], p["lower"], p["upper"]) for p in pairs] == [
        ("encoder", "encoder.mlp.layers.0", "encoder.mlp.layers.1"),
        ("encoder", "encoder.mlp.layers.1", "encoder.mlp.layers.2"),
    ]
    assert rep["summary"]["encoder"]["pairs"] == 2 and rep["summary"]["decoder"]["pairs"] == 0
    exact = {r["name"]: r["exact"] for r in fi.layer_fisher(m, x, generator=gen())}
    # grad_rms is the rms of d log p / d pre-activation = the per-example bias gradient.
    d = fi.draw_targets(m, x, generator=gen())
    bias_grads = {f"encoder.mlp.layers.{i}": [] for i in range(3)}
    for i in range(len(d)):
        one = fi.Draw(d.targets, d.pixel_sampling, d.x[i:i + 1], d.z[i:i + 1], d.xt[i:i + 1], d.ctx[i:i + 1])
        logp = fi._log_probs(m, one).sum()
        for name, g in zip(bias_grads, torch.autograd.grad(logp, [m.encoder.mlp.layers[j].bias for j in range(3)])):
            bias_grads[name].append(g)
    for p in pairs:
        assert p["fisher_lower"] == pytest.approx(exact[p["lower"]], rel=1e-9)
        assert p["fisher_ratio"] == pytest.approx(exact[p["upper"]] / exact[p["lower"]], rel=1e-9)
        for side in ("lower", "upper"):
            rms = torch.stack(bias_grads[p[side]]).pow(2).mean().sqrt().item()
            assert p[f"grad_rms_{side}"] == pytest.approx(rms, rel=1e-5)
        assert p["eq6_ratio"] == pytest.approx((p["grad_rms_lower"] / p["grad_rms_upper"]) ** 2)
        assert p["eq6_ratio"] * p["inverse_ratio"] == pytest.approx(1.0)
        assert p["fisher_decreases"] == (exact[p["upper"]] <= exact[p["lower"]])
    json.dumps(rep, allow_nan=False)


def test_proposition3_skip_on_vs_off():
    cfg = replace(TINY, enc_depth=3, enc_skip="long", dec_skip="short")
    m, x = model(cfg), binary(6)
    rep = fi.check_proposition3(m, x, generator=gen())
    assert [r["name"] for r in rep["layers"]] == list(m.linear_layers())
    assert [r["name"] for r in rep["layers"] if r["receives_skip"]] == [
        "encoder.mlp.layers.2", "decoder.mlp.layers.0", "decoder.mlp.layers.1"]
    # "off" is the same weights without skips, each model drawing its own targets in turn.
    skipless = VAE(replace(cfg, enc_skip="none", dec_skip="none"))
    skipless.load_state_dict(m.state_dict())
    g = gen()
    on = fi.layer_fisher(m, x, generator=g)
    off = fi.layer_fisher(skipless, x, generator=g)
    for r, a, b in zip(rep["layers"], on, off):
        assert r["on"] == pytest.approx(a["exact"], rel=1e-9) and r["off"] == pytest.approx(b["exact"], rel=1e-9)
        assert r["on_greater"] == (a["exact"] > b["exact"])
    assert rep["layers"][0]["on"] != rep["layers"][0]["off"]  # the skips did change the Fisher
    json.dumps(rep, allow_nan=False)


def test_derivations_report_only_has_proposition3_with_skips():
    with pytest.raises(ValueError, match="no skip"):
        fi.check_proposition3(model(TINY), binary(3), generator=gen())
    assert set(fi.derivations_report(model(TINY), binary(3), generator=gen())) == {"proposition1"}
    assert set(fi.derivations_report(model(SKIP), binary(3), generator=gen())) == {"proposition1", "proposition3"}


class TestRobustSummary:
    """The per-point summary beside the layer mean (heavy tails: one point can dominate the mean)."""

    def test_side_mean_over_points_equals_the_layer_mean(self):
        rep = fi.fisher_report(model(SKIP), binary(9), generator=gen())
        for side in ("encoder", "decoder", "model"):
            assert rep["sides"][side]["mean"] == pytest.approx(rep[f"{side}_mean"], rel=1e-9)

    def test_one_extreme_point_moves_the_mean_not_the_robust_summary(self):
        values = torch.full((200,), 1e-3, dtype=torch.float64)
        values[7] = 1e1  # 10^4 times the rest
        s = fi.point_summary(values)
        assert s["mean"] > 40 * 1e-3  # the mean moved ~50-fold
        assert s["log10_mean_of_points"] == pytest.approx(-3 + 4 / 200)  # the robust one by 4/N in log10
        assert s["median_log10"] == pytest.approx(-3)
        assert s["log10_ci"][0] <= s["log10_mean_of_points"] <= s["log10_ci"][1]

    def test_bootstrap_interval_shrinks_with_more_points(self):
        g = torch.Generator().manual_seed(0)
        few = fi.point_summary(torch.rand(20, generator=g, dtype=torch.float64) + 0.1)
        many = fi.point_summary(torch.rand(2000, generator=g, dtype=torch.float64) + 0.1)
        assert many["log10_se"] < few["log10_se"] / 5

    def test_zero_points_are_floored_and_counted(self):
        s = fi.point_summary(torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64))
        assert s["zero_points"] == 1 and math.isfinite(s["log10_mean_of_points"])


class TestAuthorsMeasure:
    """The authors' Fisher information ratio (JegZheng/Fisher-AutoEncoder): sum |A A^T|, A = G W^T."""

    def test_layer_value_by_hand(self):
        w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        g = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
        # A = G W^T = [[1, 3], [-2, -4]]; A A^T = [[10, -14], [-14, 20]]; sum of |.| = 58
        assert fi.authors_layer_value(w, g) == pytest.approx(58.0)

    def test_conv_weights_are_flattened_per_output_channel(self):
        w = torch.arange(8.0).reshape(2, 1, 2, 2)
        g = torch.ones(2, 1, 2, 2)
        a = torch.ones(2, 4) @ w.reshape(2, 4).T  # rows: output channels
        assert fi.authors_layer_value(w, g) == pytest.approx((a @ a.T).abs().sum().item())

    def test_report_uses_the_training_loss_gradient_of_each_minibatch(self):
        m = model(TINY)
        batches = [binary(5, seed=s) for s in (3, 4)]
        torch.manual_seed(11)
        rep = fi.authors_report(m, batches, beta=0.5)
        torch.manual_seed(11)  # the same reparameterisation noise, by hand
        expected = []
        for x in batches:
            m.zero_grad()
            m.elbo(x, 0.5)["loss"].mean().backward()
            layer = m.encoder.mlp.layers[1]
            a = layer.weight.grad.double() @ layer.weight.detach().double().T
            expected.append((a @ a.T).abs().sum().item())
        assert rep["encoder"]["strict"]["values"] == pytest.approx(expected)  # 2 hidden layers: the second only
        assert rep["encoder"]["strict"]["value"] == pytest.approx(expected[-1])  # the last minibatch's
        assert rep["batches"] == 2 and rep["beta"] == 0.5

    def test_one_hidden_layer_is_not_defined_strictly_but_with_the_first(self):
        rep = fi.authors_report(model(replace(TINY, enc_depth=1)), [binary(4)], beta=1.0)
        assert rep["encoder"]["strict"] is None
        assert rep["encoder"]["with_first"]["value"] > 0
        assert rep["decoder"]["strict"]["value"] > 0 and rep["model"]["with_first"]["value"] > 0

    def test_pixelcnn_convolutions_are_a_part_of_their_own(self):
        rep = fi.authors_report(model(PIXEL), [binary(3)], beta=1.0)
        assert rep["pixelcnn"]["layers"] == 4  # first_x, first_cond, one middle, out
        json.dumps(rep, allow_nan=True)
