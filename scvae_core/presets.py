"""Run budgets, defined once. A preset changes how long and how precisely we
measure, never the architecture: the same named model is trained in every preset."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .zoo import RELU, TABLE1, TABLE2, XAVIER, check_name

ACTIVATION = tuple(m + RELU for m in TABLE1)
INIT = tuple(m + XAVIER for m in TABLE1)


def depth_models(depths) -> tuple[str, ...]:
    return tuple(f"{side}{d:02d}-{kind}" for side in ("enc", "dec") for kind in ("plain", "skip") for d in depths)


@dataclass(frozen=True)
class Preset:
    name: str
    budget: str  # what it costs, in words, measured where stated
    # training
    epochs: int  # upper bound; early stopping may end sooner
    batch_size: int = 100
    lr: float = 5e-4
    warmup_epochs: int = 0  # KL weight rises linearly 0 -> 1 over these epochs
    patience: int = 0  # epochs without a better validation ELBO before stopping (0: never)
    train_size: int | None = None  # None: all 50,000
    valid_size: int | None = None
    checkpoint_minutes: float = 5.0
    # evaluation
    test_size: int | None = None  # NLL / ELBO / active units on the first N of a fixed shuffle
    nll_samples: int = 5000
    svm_size: int | None = None  # labelled test points for the SVM
    svm_folds: int = 5
    fisher_points: int = 1000
    tsne_points: int = 2000
    grid_images: int = 10  # reconstruction grid: this many pairs of columns
    figure_seeds: tuple = (0,)  # t-SNE is costly: only these seeds get embeddings
    # which models each stage trains, and with how many seeds by default
    stages: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def stage_models(self, stage: str) -> tuple[str, ...]:
        check_name("stage", stage, self.stages)
        return self.stages[stage]


_STAGES = {"table1": TABLE1, "depth": depth_models(range(1, 12)), "table2": TABLE2, "activation": ACTIVATION,
           "init": INIT}

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        budget="the whole pipeline on data subsets in seconds per model; for tests, numbers mean nothing",
        epochs=2, warmup_epochs=1, patience=0, train_size=300, valid_size=100, checkpoint_minutes=0.5,
        test_size=64, nll_samples=8, svm_size=200, svm_folds=2, fisher_points=16, tsne_points=150, grid_images=4,
        stages={"table1": TABLE1, "depth": depth_models((1, 3)), "table2": TABLE2,
                "activation": ("vae-1l-relu", "vae-q++-relu"), "init": ("vae-1l-xavier", "vae-q++-xavier")},
        seeds={"table1": (0,), "depth": (0,), "table2": (0,), "activation": (0,), "init": (0,)},
    ),
    "cpu": Preset(
        name="cpu",
        budget="reduced replication for a 2-core CPU: 10 epochs; on one core a Table 1 model takes 1-10 min, "
               "a PixelCNN model about an hour (stage times: `scvae status all --preset cpu`)",
        epochs=10, warmup_epochs=3, patience=0, checkpoint_minutes=5.0,
        test_size=2000, nll_samples=200, svm_size=None, svm_folds=5, fisher_points=200, tsne_points=2000,
        stages={"table1": TABLE1, "depth": depth_models((1, 3, 5, 7, 9, 11)), "table2": TABLE2,
                "activation": ACTIVATION, "init": INIT},
        seeds={"table1": (0, 1, 2), "depth": (0,), "table2": (0,), "activation": (0, 1, 2), "init": (0,)},
    ),
    "paper": Preset(
        name="paper",
        budget="the paper's setting where stated, else the published VampPrior one; needs a GPU (days on a CPU)",
        epochs=2000, warmup_epochs=100, patience=50, checkpoint_minutes=10.0,
        test_size=None, nll_samples=5000, svm_size=None, svm_folds=5, fisher_points=1000, tsne_points=5000,
        stages=_STAGES, seeds={"table1": (0, 1, 2), "depth": (0,), "table2": (0, 1, 2), "activation": (0,),
                                  "init": (0,)},
    ),
}
# How much of the gap to the paper's numbers is training budget: the cpu preset, ten times
# longer, for VAE(1L) (the NLL gap) and VAE(q++) (whose latent space collapses under cpu).
PRESETS["cpu-long"] = replace(
    PRESETS["cpu"], name="cpu-long", epochs=100,
    budget="the cpu preset trained 10x longer (100 epochs), for VAE(1L) and VAE(q++): what the budget explains",
    stages={"budget": ("vae-1l", "vae-q++")}, seeds={"budget": (0,)})


def get_preset(name: str, **overrides) -> Preset:
    check_name("preset", name, PRESETS)
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
