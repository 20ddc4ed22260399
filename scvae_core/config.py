"""What defines a model, without torch: the tables, claims and book check read result files
through it, and must not import torch (tests/test_structure.py checks it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

ACTIVATION_NAMES = ("tanh", "relu", "elu", "sigmoid")
SKIPS = ("none", "short", "long")
INITS = ("default", "xavier", "he")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture; stored in every result file.

    A field added later must default to what the code did before it existed: result files
    written earlier lack it and are read with that default (:func:`same_config`).
    """

    enc_depth: int = 1  # hidden layers of the encoder
    dec_depth: int = 1  # hidden layers of the decoder
    hidden: int = 500
    latent: int = 50
    enc_skip: str = "none"  # "none" | "short" (eq. 11) | "long" (eq. 12: first -> last hidden)
    dec_skip: str = "none"
    # Not stated in the paper. tanh: the paper's VAE(1L) is Kingma & Welling (2013),
    # whose MNIST MLPs use tanh hidden units.
    activation: str = "tanh"
    prior: str = "normal"  # "normal" | "vamp"
    pseudo_inputs: int = 500  # VampPrior's K (Tomczak & Welling 2018)
    decoder: str = "bernoulli"  # "bernoulli" | "pixelcnn"
    pixel_layers: int = 8  # the paper's "8 pixel layers"
    pixel_channels: int = 32
    # Not stated in the paper either. "default": PyTorch's nn.Linear init, uniform with scale
    # 1/sqrt(fan_in); "xavier": Glorot & Bengio (2010), made for deep tanh networks; "he":
    # He et al. (2015), normal with std sqrt(2/fan_in), made for ReLU (the authors' protocol).
    init: str = "default"
    # Skip-VAE (Dieng, Kim, Rush & Blei 2019): z enters every hidden layer of the decoder, each
    # layer after the first adding its own linear map of z before the nonlinearity (the first
    # already takes z as its input). Not the paper's: its rival design against collapse.
    dec_zskip: bool = False

    def __post_init__(self):
        problems = []
        if self.enc_depth < 1 or self.dec_depth < 1:
            problems.append("enc_depth and dec_depth must be >= 1")
        for side in ("enc_skip", "dec_skip"):
            if getattr(self, side) not in SKIPS:
                problems.append(f"{side}={getattr(self, side)!r}; choose one of {SKIPS}")
        if self.activation not in ACTIVATION_NAMES:
            problems.append(f"activation={self.activation!r}; choose one of {ACTIVATION_NAMES}")
        if self.prior not in ("normal", "vamp"):
            problems.append(f"prior={self.prior!r}; choose 'normal' or 'vamp'")
        if self.init not in INITS:
            problems.append(f"init={self.init!r}; choose one of {INITS}")
        if self.decoder not in ("bernoulli", "pixelcnn"):
            problems.append(f"decoder={self.decoder!r}; choose 'bernoulli' or 'pixelcnn'")
        for side, depth in (("enc", self.enc_depth), ("dec", self.dec_depth)):
            if getattr(self, f"{side}_skip") == "long" and depth < 3:
                problems.append(f"{side}_skip='long' (eq. 12) needs {side}_depth >= 3, got {depth}")
        if self.dec_zskip and self.dec_depth < 2:
            problems.append("dec_zskip=True needs dec_depth >= 2: the first hidden layer already takes z as its "
                            "input, so a 1-layer decoder has no layer for a z-skip")
        for size in ("hidden", "latent", "pseudo_inputs", "pixel_channels"):
            if getattr(self, size) < 1:
                problems.append(f"{size} must be >= 1, got {getattr(self, size)}")
        if self.decoder == "pixelcnn" and self.pixel_layers < 2:
            problems.append("a PixelCNN decoder needs pixel_layers >= 2 (one type-A, one output layer)")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


def same_config(stored: dict | None, cfg: ModelConfig) -> bool:
    """Whether a config read from a result file or checkpoint describes ``cfg``; fields the
    file lacks take their defaults (see :class:`ModelConfig`)."""
    if not isinstance(stored, dict):
        return False
    try:
        return ModelConfig(**stored) == cfg
    except (TypeError, ValueError):  # a field we no longer have, or a value we no longer allow
        return False
