"""The named models of the paper, in one registry: ``scvae models`` prints it."""
from __future__ import annotations

from dataclasses import replace

from .models import VAE, ModelConfig, count_parameters

DEEP = 11  # the paper's "deepened part": 11 hidden layers
PLAIN_DEEP = ModelConfig(enc_depth=DEEP, dec_depth=DEEP)
SCVAE = ModelConfig(enc_depth=DEEP, dec_depth=DEEP, enc_skip="short", dec_skip="short")

MODELS: dict[str, ModelConfig] = {
    # Table 1
    "vae-1l": ModelConfig(),
    "vae-11l": PLAIN_DEEP,
    "vae-q++": ModelConfig(enc_depth=DEEP, dec_depth=1),
    "vae-p++": ModelConfig(enc_depth=1, dec_depth=DEEP),
    "scvae": SCVAE,
    # "only one long-skipping-distance connection in encoder"; the decoder keeps
    # SCVAE's short skips (the paper: "it keeps the same architecture as SCVAE").
    "scvae-l": ModelConfig(enc_depth=DEEP, dec_depth=DEEP, enc_skip="long", dec_skip="short"),
    # Table 2
    "pixelvae": ModelConfig(decoder="pixelcnn"),
    "vae-1l+vamp": ModelConfig(prior="vamp"),
    "scvae+vamp": ModelConfig(**{**SCVAE.to_dict(), "prior": "vamp"}),
    "scvae+pixel": ModelConfig(**{**SCVAE.to_dict(), "decoder": "pixelcnn"}),
    "scvae+pixel+vamp": ModelConfig(**{**SCVAE.to_dict(), "decoder": "pixelcnn", "prior": "vamp"}),
}

TABLE1 = ("vae-1l", "vae-11l", "vae-q++", "vae-p++", "scvae", "scvae-l")
TABLE2 = ("pixelvae", "vae-1l+vamp", "scvae+vamp", "scvae+pixel", "scvae+pixel+vamp")
# The paper names neither its activation nor its initialisation: every Table 1 model again
# with ReLU, and again with Xavier initialisation, to test whether the degeneration it
# reports depends on our choice of tanh or on PyTorch's default initialisation.
RELU, XAVIER = "-relu", "-xavier"
for _name in TABLE1:
    MODELS[_name + RELU] = replace(MODELS[_name], activation="relu")
    MODELS[_name + XAVIER] = replace(MODELS[_name], init="xavier")

# Figure 2's depth sweep: one side deepened (1..11 hidden layers), the other kept at 1.
for _d in range(1, DEEP + 1):
    for _side in ("enc", "dec"):
        for _kind, _skip in (("plain", "none"), ("skip", "short")):
            MODELS[f"{_side}{_d:02d}-{_kind}"] = ModelConfig(
                enc_depth=_d if _side == "enc" else 1,
                dec_depth=_d if _side == "dec" else 1,
                **{f"{_side}_skip": _skip},
            )


class UnknownName(ValueError):
    """A model, preset or stage name that does not exist; lists the valid ones."""


def check_name(kind: str, name: str, valid) -> None:
    if name not in valid:
        raise UnknownName(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


def get_config(name: str) -> ModelConfig:
    check_name("model", name, MODELS)
    return MODELS[name]


def build(name: str) -> VAE:
    return VAE(get_config(name))


def describe(name: str) -> str:
    """One line: name, depths, skips, prior, decoder, parameter count."""
    c = get_config(name)
    return (
        f"{name:18s} enc {c.enc_depth:2d}x{c.hidden} ({c.enc_skip:5s}) "
        f"dec {c.dec_depth:2d}x{c.hidden} ({c.dec_skip:5s}) z={c.latent} "
        f"{c.activation} init={c.init} prior={c.prior} decoder={c.decoder} "
        f"params={count_parameters(VAE(c)):,}"
    )
