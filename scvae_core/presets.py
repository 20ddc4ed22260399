"""Run budgets, defined once. A preset changes how long and how precisely we
measure, never the architecture: the same named model is trained in every preset."""
from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from .zoo import AUTHORS, SKIPVAE, TABLE1, TABLE2, TWINS, check_name, training_changes

# The data a run reads: data.py verifies every file against data.SUMS_FILE before use, so that
# list's digest stands for the data in a result's fingerprint. Found by path, not imported:
# data imports results, which imports presets (the test ties the two paths).
_SUMS_FILE = Path(__file__).resolve().parent.parent / "data" / "SHA256SUMS"
DATA_SUMS = hashlib.sha256(_SUMS_FILE.read_bytes()).hexdigest()[:16]
# Every result written before the digest was recorded read this list (unchanged since 4c4a145).
DATA_SUMS_BEFORE_RECORDED = "818d54e8981aed26"

# The data sets a run can train and be evaluated on (`--dataset`); data.load_dataset reads each.
# Fashion-MNIST's files and its fixed binarization have their own checksum list, so that adding
# it left SHA256SUMS, and with it every MNIST result's fingerprint, as it was.
DATASETS = {
    "mnist-static": "statically binarized MNIST (Larochelle & Murray's fixed draw; the paper's data)",
    "fashion-static": "Fashion-MNIST binarized once by a fixed-seed Bernoulli draw of each grayscale image",
    "fashion-dynamic": "Fashion-MNIST with the training images drawn anew every epoch (seeded by run seed "
                       "and epoch), validation and test binarized once as for fashion-static",
}
DEFAULT_DATASET = "mnist-static"
FASHION_SUMS_FILE = _SUMS_FILE.parent / "SHA256SUMS.fashion-mnist"
DATASET_SUMS = {"mnist-static": DATA_SUMS,
                **dict.fromkeys(("fashion-static", "fashion-dynamic"),
                                hashlib.sha256(FASHION_SUMS_FILE.read_bytes()).hexdigest()[:16])}

TWIN_STAGES = {t.stage: t.models() for t in TWINS}
TWIN_SEEDS = {t.stage: (0,) for t in TWINS}  # a preset lists more where it wants them


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
    # "adam", or "adam-normgrad": each parameter tensor's gradient divided by its L2 norm (+1e-7)
    # before Adam's moments see it, as the authors' code does (AdamNormGrad of jmtomczak/vae_vampprior)
    optimizer: str = "adam"
    warmup_epochs: int = 0  # KL weight rises linearly 0 -> 1 over these epochs
    # "step": beta grows with every step; "epoch": beta = epoch / warmup_epochs for a whole
    # epoch (1-based), as in the authors' code
    warmup_by: str = "step"
    patience: int = 0  # epochs without a better validation ELBO before stopping (0: never)
    train_size: int | None = None  # None: all 50,000
    valid_size: int | None = None
    checkpoint_minutes: float = 5.0
    dataset: str = DEFAULT_DATASET  # not a budget: a run's data set (run_preset), recorded with every result
    data_sums: str = DATA_SUMS  # the digest of that data set's checksum list (DATASET_SUMS)
    # evaluation
    test_size: int | None = None  # NLL / ELBO / active units on the first N of a fixed shuffle
    nll_samples: int = 5000
    svm_size: int | None = None  # labelled test points for the SVM
    svm_folds: int = 5
    fisher_points: int = 1000
    tsne_points: int = 2000
    grid_images: int = 10  # reconstruction grid: this many pairs of columns
    figure_seeds: tuple = (0,)  # t-SNE is costly: only these seeds get embeddings
    # budgets within one run: the best-so-far weights are kept at these epochs and evaluated
    # each (eval-e010.json, ...); empty: one evaluation of the final best weights (eval.json)
    eval_epochs: tuple = ()
    final_nll_samples: int | None = None  # S at the last of eval_epochs (None: nll_samples)
    check_nll_samples: dict = field(default_factory=dict)  # seed -> S at the last epoch instead (estimator check)
    stage_epochs: dict = field(default_factory=dict)  # stage -> epochs, where a stage trains shorter
    # which models each stage trains, and with how many seeds by default
    stages: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model of every stage, once, in stage order."""
        return tuple(dict.fromkeys(m for models in self.stages.values() for m in models))

    def stage_models(self, stage: str) -> tuple[str, ...]:
        check_name("stage", stage, self.stages)
        return self.stages[stage]

    def _final(self, epoch: int | None) -> bool:
        return epoch is None or not self.eval_epochs or epoch == self.eval_epochs[-1]

    def common_nll_samples(self, epoch: int | None) -> int:
        """S of every seed's evaluation at ``epoch`` (None: the final one): the S seeds compare at."""
        return (self.final_nll_samples or self.nll_samples) if self._final(epoch) else self.nll_samples

    def nll_samples_at(self, epoch: int | None, seed: int) -> int:
        """S for ``seed``'s evaluation at ``epoch``: the common S, or more for the estimator check."""
        common = self.common_nll_samples(epoch)
        return self.check_nll_samples.get(seed, common) if self._final(epoch) else common


# The Skip-VAE models (not the paper's) form the stage skipvae where a preset trains them.
_STAGES = {"table1": TABLE1, "depth": depth_models(range(1, 12)), "table2": TABLE2, **TWIN_STAGES, "skipvae": SKIPVAE}

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        budget="the whole pipeline on data subsets in seconds per model; for tests, numbers mean nothing",
        epochs=2, warmup_epochs=1, patience=0, train_size=300, valid_size=100, checkpoint_minutes=0.5,
        test_size=64, nll_samples=8, svm_size=200, svm_folds=2, fisher_points=16, tsne_points=150, grid_images=4,
        stages={"table1": TABLE1, "depth": depth_models((1, 3)), "table2": TABLE2,
                **{t.stage: t.models(("vae-1l", "vae-q++")) for t in TWINS}, "skipvae": SKIPVAE},
        seeds={"table1": (0,), "depth": (0,), "table2": (0,), **TWIN_SEEDS, "skipvae": (0,)},
    ),
    "cpu": Preset(
        name="cpu",
        budget="reduced replication for a 2-core CPU: 10 epochs; on one core a Table 1 model takes 1-10 min, "
               "a PixelCNN model about an hour (stage times: `scvae status all --preset cpu`)",
        epochs=10, warmup_epochs=3, patience=0, checkpoint_minutes=5.0,
        test_size=2000, nll_samples=200, svm_size=None, svm_folds=5, fisher_points=200, tsne_points=2000,
        stages={"table1": TABLE1, "depth": depth_models((1, 3, 5, 7, 9, 11)), "table2": TABLE2, **TWIN_STAGES},
        seeds={"table1": (0, 1, 2), "depth": (0,), "table2": (0,), **TWIN_SEEDS, "activation": (0, 1, 2)},
    ),
    "paper": Preset(
        name="paper",
        budget="the paper's setting where stated, else the published VampPrior one; needs a GPU (days on a CPU)",
        epochs=2000, warmup_epochs=100, patience=50, checkpoint_minutes=10.0,
        test_size=None, nll_samples=5000, svm_size=None, svm_folds=5, fisher_points=1000, tsne_points=5000,
        stages=_STAGES, seeds={"table1": (0, 1, 2), "depth": (0,), "table2": (0, 1, 2), **TWIN_SEEDS,
                               "authors": (0, 1, 2), "skipvae": (0,)},
    ),
}
# How much of the gap to the paper's numbers is training budget: the cpu preset, ten times
# longer, for VAE(1L) (the NLL gap) and VAE(q++) (whose latent space collapses under cpu).
PRESETS["cpu-long"] = replace(
    PRESETS["cpu"], name="cpu-long", epochs=100,
    budget="the cpu preset trained 10x longer (100 epochs), for VAE(1L) and VAE(q++): what the budget explains",
    stages={"budget": ("vae-1l", "vae-q++")}, seeds={"budget": (0,)})


# Ten times the cpu budget, evaluated at 10, 30 and 100 epochs from the same run: how the
# verdicts move with training. Its first 10 epochs are exactly a cpu run (same settings, same
# data order, same warm-up), so its epoch-10 weights are the cpu run's (tested).
PRESETS["long"] = replace(
    PRESETS["cpu"], name="long", epochs=100, eval_epochs=(10, 30, 100), final_nll_samples=1000,
    check_nll_samples={0: 5000},
    budget="the cpu preset trained for 100 epochs, evaluated at epochs 10, 30 and 100 (S = 200, 200, 1000; "
           "seed 0 also S = 5000 at 100); the depth sweep and the VampPrior pair for 30 epochs",
    stages={"table1": TABLE1, "authors": TWIN_STAGES["authors"], "depth": depth_models((1, 3, 5, 7, 9, 11)),
            "table2": ("vae-1l+vamp", "scvae+vamp"),  # of Table 2, the VampPrior pair
            "skipvae": SKIPVAE},
    seeds={"table1": (0, 1, 2), "authors": (0,), "depth": (0,), "table2": (0,), "skipvae": (0, 1, 2)},
    stage_epochs={"depth": 30, "table2": 30})
# The same shape at smoke size, for the tests of within-run budgets.
PRESETS["smoke-long"] = replace(
    PRESETS["smoke"], name="smoke-long", epochs=4, eval_epochs=(2, 4), final_nll_samples=12,
    check_nll_samples={0: 16}, budget="smoke, trained 4 epochs and evaluated at 2 and 4; numbers mean nothing",
    stages={"table1": ("vae-1l", "scvae"), "authors": ("vae-1l-authors",), "depth": depth_models((1, 3))},
    seeds={"table1": (0,), "authors": (0,), "depth": (0,)}, stage_epochs={"depth": 2})


# The authors' own protocol, trained as they trained it (their code: JegZheng/Fisher-AutoEncoder
# on jmtomczak/vae_vampprior): the `-authors` twins (ReLU, He init, lr 1e-3), AdamNormGrad, KL
# warm-up beta = epoch/100, up to 2,000 epochs, stopped once 50 epochs after the warm-up bring no
# better validation ELBO; the best weights evaluated once on all 10,000 test images.
AUTHORS_TABLE1 = ("vae-1l-authors", "scvae-authors", "vae-q++-authors", "vae-p++-authors", "vae-11l-authors",
                  "scvae-l-authors")  # the queue's order: the headline pair first
PRESETS["converged"] = replace(
    PRESETS["cpu"], name="converged", epochs=2000, warmup_epochs=100, warmup_by="epoch", patience=50,
    optimizer="adam-normgrad", checkpoint_minutes=5.0, test_size=None, nll_samples=1000, check_nll_samples={0: 5000},
    budget="the authors' protocol to convergence: AdamNormGrad, KL warm-up over 100 epochs, early stopping after "
           "50 epochs without a better validation ELBO (at most 2,000); all 10,000 test images at S = 1000 "
           "(seed 0 also S = 5000)",
    stages={"authors": AUTHORS_TABLE1, "skipvae": AUTHORS.models(SKIPVAE)},
    seeds={"authors": (0, 1, 2), "skipvae": (0,)})
# Its shape at smoke size, for CI.
PRESETS["smoke-converged"] = replace(
    PRESETS["smoke"], name="smoke-converged", epochs=6, warmup_epochs=2, warmup_by="epoch", patience=1,
    optimizer="adam-normgrad", nll_samples=8, check_nll_samples={0: 12},
    budget="the converged preset's protocol at smoke size; numbers mean nothing",
    stages={"authors": ("vae-1l-authors", "scvae-authors")}, seeds={"authors": (0,)})

OPTIMIZERS = ("adam", "adam-normgrad")
WARMUP_BY = ("step", "epoch")
for _p in PRESETS.values():  # a typo here would silently train the wrong protocol
    assert _p.optimizer in OPTIMIZERS and _p.warmup_by in WARMUP_BY, _p.name


def get_preset(name: str, **overrides) -> Preset:
    check_name("preset", name, PRESETS)
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


# What a result depends on: the settings training uses (the data among them) and those
# evaluation adds. A stored result is reused only by a preset that agrees on these (a stage
# added or a budget's wording changed keeps every result, including those whose checkpoints
# are not on this machine).
TRAINING_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "warmup_epochs", "warmup_by", "patience",
                   "train_size", "valid_size", "dataset", "data_sums")
EVAL_FIELDS = ("test_size", "nll_samples", "svm_size", "svm_folds", "fisher_points", "tsne_points", "grid_images",
               "figure_seeds", "eval_epochs", "final_nll_samples", "check_nll_samples")


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}: pass --dataset (dataset=) one of {', '.join(DATASETS)}")
    return dataset


def run_preset(preset_name: str, model: str, dataset: str = DEFAULT_DATASET) -> Preset:
    """The preset as one model's run on ``dataset`` sees it: its twin set's training changes (e.g.
    the authors' lr) and its stage's shorter budget applied; snapshots beyond the budget dropped."""
    preset = get_preset(preset_name)
    changes = training_changes(model)
    if check_dataset(dataset) != DEFAULT_DATASET:
        changes |= {"dataset": dataset, "data_sums": DATASET_SUMS[dataset]}
    stage_epochs = [preset.stage_epochs[s] for s, models in preset.stages.items()
                    if model in models and s in preset.stage_epochs]
    if stage_epochs and max(stage_epochs) < preset.epochs:
        epochs = max(stage_epochs)
        # The larger S of the last epoch (and the estimator check) belong to the full budget: a
        # shorter stage's last evaluation keeps the S of the same epoch of a full run.
        changes |= {"epochs": epochs, "eval_epochs": tuple(e for e in preset.eval_epochs if e <= epochs),
                    "final_nll_samples": None, "check_nll_samples": {}}
    return replace(preset, **changes) if changes else preset


def settings(preset: Preset, fields=TRAINING_FIELDS) -> dict:
    """The preset's values of ``fields``, as JSON stores them (tuples as lists, keys as strings)."""
    return json.loads(json.dumps({k: getattr(preset, k) for k in fields}))


def _defaults() -> dict:
    """What a file written before a field existed had: the field's default, the data list for data_sums."""
    stored = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
              for f in fields(Preset) if f.default is not MISSING or f.default_factory is not MISSING}
    return json.loads(json.dumps({**stored, "data_sums": DATA_SUMS_BEFORE_RECORDED}))


def changed_settings(stored: dict | None, preset: Preset, names=TRAINING_FIELDS) -> list[str]:
    """Which of ``names`` a stored preset_config (or checkpoint settings) has otherwise than
    ``preset``: the one staleness test of train.json, checkpoints and eval.json. A field the
    file lacks (written before the field existed) counts with its default."""
    stored, now, default = stored or {}, settings(preset, names), _defaults()
    return [k for k in names if stored.get(k, default.get(k)) != now[k]]
