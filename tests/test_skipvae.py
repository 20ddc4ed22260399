"""Skip-VAE (Dieng et al. 2019): z enters every hidden layer of the decoder through its own map.
Its structure, its parameter counts by hand, training steps of each zoo model, and its stages."""
from dataclasses import replace

import pytest
import torch

from scvae_core.config import ModelConfig, same_config
from scvae_core.models import VAE, X_DIM, count_parameters
from scvae_core.presets import get_preset, run_preset
from scvae_core.runs import display_name
from scvae_core.zoo import AUTHORS, DEEP, DISPLAY, SKIPVAE, build, get_config, twin_of

pytestmark = pytest.mark.unit

H, Z = 500, 50  # Table 1's sizes


def zskip_vae(**kw) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(enc_depth=1, dec_depth=4, dec_zskip=True, hidden=16, latent=3, **kw))


def test_every_decoder_layer_after_the_first_gets_its_own_map_of_z():
    m = zskip_vae()
    zmaps = m.decoder.mlp.zmaps
    assert len(zmaps) == 3 and all(zm.bias is None and zm.weight.shape == (16, 3) for zm in zmaps)
    assert not hasattr(m.encoder.mlp, "zmaps") and not hasattr(VAE(ModelConfig(dec_depth=4)).decoder.mlp, "zmaps")


def test_gradients_reach_every_z_map():
    m = zskip_vae()
    x = torch.bernoulli(torch.full((8, X_DIM), 0.3))
    m.elbo(x)["loss"].sum().backward()
    for i, zm in enumerate(m.decoder.mlp.zmaps):
        assert zm.weight.grad is not None and zm.weight.grad.abs().sum() > 0, i


@torch.no_grad()
def test_z_reaches_each_layer_directly_through_its_map():
    """h_l = act(W_l h_{l-1} + U_l z + b_l): with W_l = 0 for l >= 2, each h_l still moves with z,
    and by exactly act(U_l z + b_l); without z-skips it would be constant."""
    m = zskip_vae()
    mlp = m.decoder.mlp
    for layer in mlp.layers[1:]:
        layer.weight.zero_()
    z = torch.randn(5, 3)
    hs = mlp(z, keep=True)
    for i, (layer, zm) in enumerate(zip(mlp.layers[1:], mlp.zmaps)):
        torch.testing.assert_close(hs[i + 1], torch.tanh(zm(z) + layer.bias))
        assert hs[i + 1].std(0).min() > 0, i  # depends on z


@torch.no_grad()
def test_with_its_z_maps_zeroed_the_decoder_is_the_plain_one():
    m = zskip_vae(dec_skip="short")
    for zm in m.decoder.mlp.zmaps:
        zm.weight.zero_()
    plain = VAE(replace(m.cfg, dec_zskip=False))
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if "zmaps" not in k})
    z = torch.randn(4, 3)
    torch.testing.assert_close(m.decoder.mlp_logits(z), plain.decoder.mlp_logits(z), rtol=0, atol=0)


def mlp_params(n_in: int, depth: int) -> int:
    return (n_in * H + H) + (depth - 1) * (H * H + H)


@pytest.mark.parametrize("name, enc, dec", [("skipvae-11l", DEEP, DEEP), ("skipvae-p++", 1, DEEP),
                                            ("scvae+zskip", DEEP, DEEP), ("scvae", DEEP, DEEP)])
def test_parameter_counts_by_hand(name, enc, dec):
    heads = 2 * (H * Z + Z) + (H * X_DIM + X_DIM)  # mu, logvar; the decoder's output layer
    zmaps = (dec - 1) * Z * H if get_config(name).dec_zskip else 0  # bias-free: the layer has its bias
    assert count_parameters(build(name)) == mlp_params(X_DIM, enc) + mlp_params(Z, dec) + heads + zmaps


def seeded_loss(m: VAE, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same z draws before and after: the loss changes only with the weights
    return m.elbo(x)["loss"].mean()


@pytest.mark.parametrize("name", SKIPVAE)
def test_each_skipvae_model_trains(name):
    torch.manual_seed(0)
    m = build(name)
    x = torch.bernoulli(torch.full((16, X_DIM), 0.3))
    before, start = [zm.weight.clone() for zm in m.decoder.mlp.zmaps], seeded_loss(m, x).item()
    opt = torch.optim.Adam(m.parameters(), lr=get_preset("smoke").lr)
    for _ in range(3):
        opt.zero_grad()
        seeded_loss(m, x).backward()
        opt.step()
    end = seeded_loss(m, x).item()
    assert torch.isfinite(torch.tensor(end)) and end < start, (start, end)
    assert all(not torch.equal(b, zm.weight) for b, zm in zip(before, m.decoder.mlp.zmaps))


def test_the_zoo_models_are_table1_models_with_z_skips():
    assert replace(get_config("skipvae-11l"), dec_zskip=False) == get_config("vae-11l")
    assert replace(get_config("skipvae-p++"), dec_zskip=False) == get_config("vae-p++")
    assert replace(get_config("scvae+zskip"), dec_zskip=False) == get_config("scvae")


def test_a_one_layer_decoder_cannot_have_z_skips():
    with pytest.raises(ValueError, match="dec_zskip=True needs dec_depth >= 2"):
        ModelConfig(dec_zskip=True)


def test_stored_configs_without_the_field_read_as_no_z_skips():
    stored = {k: v for k, v in get_config("vae-11l").to_dict().items() if k != "dec_zskip"}
    assert same_config(stored, get_config("vae-11l")) and not same_config(stored, get_config("skipvae-11l"))


def test_the_authors_protocol_versions_train_as_the_authors_twins():
    for name in SKIPVAE:
        twin = name + AUTHORS.suffix
        assert twin_of(twin) is AUTHORS and run_preset("converged", twin).lr == 1e-3
        assert replace(get_config(twin), activation="tanh", init="default") == get_config(name)
        assert display_name(twin) == f"{DISPLAY[name]} [{AUTHORS.label}]"
    assert [display_name(name) for name in SKIPVAE] == ["Skip-VAE(11L)", "Skip-VAE(p++)", "SCVAE+z-skips"]
    assert run_preset("long", "skipvae-11l").lr == get_preset("long").lr


def test_the_skipvae_stage_of_each_preset():
    assert get_preset("smoke").stages["skipvae"] == SKIPVAE and get_preset("smoke").seeds["skipvae"] == (0,)
    assert get_preset("long").stages["skipvae"] == SKIPVAE and get_preset("long").seeds["skipvae"] == (0, 1, 2)
    converged = get_preset("converged")
    assert converged.stages["skipvae"] == AUTHORS.models(SKIPVAE) and converged.seeds["skipvae"] == (0,)
    assert get_preset("paper").stages["skipvae"] == SKIPVAE
