"""The named models of the paper, in one registry: ``scvae models`` prints it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import ModelConfig

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

# Not the paper's: the rival design against collapse, Skip-VAE (Dieng, Kim, Rush & Blei 2019),
# whose decoder takes z into every hidden layer, at Table 1's sizes (500 units, z = 50).
MODELS["skipvae-11l"] = replace(PLAIN_DEEP, dec_zskip=True)  # vae-11l with z-skips
MODELS["skipvae-p++"] = ModelConfig(enc_depth=1, dec_depth=DEEP, dec_zskip=True)  # vae-p++ with z-skips
MODELS["scvae+zskip"] = replace(SCVAE, dec_zskip=True)  # SCVAE's skips and z-skips
SKIPVAE = ("skipvae-11l", "skipvae-p++", "scvae+zskip")
# Their names in the book (the paper's models take theirs from the paper's tables).
DISPLAY = {"skipvae-11l": "Skip-VAE(11L)", "skipvae-p++": "Skip-VAE(p++)", "scvae+zskip": "SCVAE+z-skips"}

TABLE1 = ("vae-1l", "vae-11l", "vae-q++", "vae-p++", "scvae", "scvae-l")
TABLE2 = ("pixelvae", "vae-1l+vamp", "scvae+vamp", "scvae+pixel", "scvae+pixel+vamp")


@dataclass(frozen=True, eq=False)  # each set is one object: compared and hashed by identity
class Twin:
    """A set of twins: every Table 1 model again with one thing the paper leaves open changed.

    The one place a twin set is declared: the zoo names its models ``<model><suffix>``, its
    stage trains them, and tables, plots and notebooks iterate :data:`TWINS`.
    """

    suffix: str  # appended to a Table 1 model's name
    stage: str  # the stage that trains the set
    label: str  # how the book names the set
    config: dict = field(default_factory=dict)  # ModelConfig fields changed
    training: dict = field(default_factory=dict)  # Preset training fields changed (e.g. lr)

    def models(self, base=TABLE1) -> tuple[str, ...]:
        return tuple(m + self.suffix for m in base)


# Our models: tanh (the paper's VAE(1L) is Kingma & Welling's) and PyTorch's default init.
OURS = Twin("", "table1", "tanh, default init")
# The paper names neither its activation nor its initialisation nor its learning rate: every
# Table 1 model again with ReLU, with Xavier initialisation, and with the protocol of the first
# author's follow-up code (JegZheng/Fisher-AutoEncoder, built on jmtomczak/vae_vampprior):
# ReLU, He initialisation, Adam at lr 1e-3.
TWINS: tuple[Twin, ...] = (
    Twin("-relu", "activation", "ReLU", {"activation": "relu"}),
    Twin("-xavier", "init", "Xavier init", {"init": "xavier"}),
    Twin("-authors", "authors", "authors' protocol (ReLU, He init, lr 1e-3)",
         {"activation": "relu", "init": "he"}, {"lr": 1e-3}),
)
for _twin in TWINS:
    for _name in TABLE1:
        MODELS[_name + _twin.suffix] = replace(MODELS[_name], **_twin.config)
# The Skip-VAE models under the authors' protocol too, so that the converged preset (which trains
# the `-authors` twins) compares them with SCVAE as it trains SCVAE.
AUTHORS = next(t for t in TWINS if t.stage == "authors")
for _name in SKIPVAE:
    MODELS[_name + AUTHORS.suffix] = replace(MODELS[_name], **AUTHORS.config)


_TWIN_OF = {**{m: t for t in TWINS for m in t.models()}, **{m: AUTHORS for m in AUTHORS.models(SKIPVAE)}}


def twin_of(name: str) -> Twin:
    """The twin set a model belongs to (:data:`OURS` for every model that is no twin)."""
    return _TWIN_OF.get(name, OURS)


def training_changes(name: str) -> dict:
    """The Preset training fields this model's twin set changes (empty for most models)."""
    return dict(twin_of(name).training)


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


def build(name: str):
    """A freshly initialised :class:`~scvae_core.models.VAE` of the named model."""
    from .models import VAE  # torch only where a model is built

    return VAE(get_config(name))


def parameter_count(name: str) -> int:
    """The named model's number of trainable parameters (builds it: needs torch)."""
    from .models import count_parameters

    return count_parameters(build(name))


def describe(name: str) -> str:
    """One line: name, depths, skips (+zskip: Skip-VAE's z into every decoder layer), prior, decoder,
    parameter count."""
    c = get_config(name)
    return (
        f"{name:18s} enc {c.enc_depth:2d}x{c.hidden} ({c.enc_skip:5s}) "
        f"dec {c.dec_depth:2d}x{c.hidden} ({c.dec_skip:5s}{'+zskip' if c.dec_zskip else ''}) z={c.latent} "
        f"{c.activation} init={c.init} prior={c.prior} decoder={c.decoder} "
        f"params={parameter_count(name):,}"
    )
