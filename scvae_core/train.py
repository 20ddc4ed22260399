"""Training: Adam on the ELBO with KL warm-up, early stopping on the validation ELBO, and
checkpoints from which a killed run resumes to exactly the weights (on CPU) of an
uninterrupted one.

Exact resumption rests on three things kept in ``last.pt``: the model and optimizer state,
the torch RNG state (the reparameterisation noise), and the position (epoch, step) in a data
order that is a function of (seed, epoch) alone, so the batches already done are skipped.
"""
from __future__ import annotations

import errno
import hashlib
import io
import math
import pickle
import random
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import data
from .config import same_config
from .models import VAE, ModelConfig
from .lock import run_lock
from .presets import DEFAULT_DATASET, Preset, changed_settings, run_preset, settings
from .results import (DEFAULT_RESULTS_DIR, ResultError, RunPaths, _atomic_write, check_writable, processor_name,
                      provenance, write_json)
from .runs import COIN_FLIP_ELBO, load_train
from .zoo import get_config

CHECKPOINT_FORMAT = 1
VALID_SEED = 20240101  # the validation ELBO's noise: the same every epoch, so epochs compare
EVAL_BATCH = 1000
STAT_NAMES = ("loss", "elbo", "rec", "kl")
# A validation ELBO below this is divergence, not a result: ten times worse than a model that
# predicts every pixel as a fair coin (784 log 2 = 543 nats), which even an untrained one beats.
DIVERGED_ELBO = 10 * COIN_FLIP_ELBO
CHECKPOINT_KEYS = ("format", "config", "training", "progress", "model", "optimizer", "best_model", "rng_cpu",
                   "rng_cuda")


class TrainingDiverged(ValueError):
    """The loss, the validation ELBO or the weights became NaN or infinite (or the ELBO absurd)."""


def runtime_settings(dev: torch.device) -> dict:
    """What a bitwise resume also depends on: the same numbers come out of the same kernels
    only with the same thread count, torch version, device type and processor (an Intel Xeon's
    AVX-512 kernels round otherwise than an AMD EPYC's, and differ between 1 and 2 threads)."""
    return {"threads": torch.get_num_threads(), "torch": str(torch.__version__), "device": dev.type,
            "processor": processor_name(str(dev))}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    choices = "auto, cpu, cuda, cuda:N"
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; choose one of {choices}") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"unsupported device {name!r}; choose one of {choices}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA GPU here; use --device cpu or auto")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"device {name!r} requested but there are only cuda:0..cuda:{count - 1}")
    return dev


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU). CPU runs are then deterministic;
    on CUDA, cuDNN is pinned to deterministic kernels but atomics may still differ."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def split_images(split: str, preset: Preset, data_dir: str | Path | None = None,
                 seed: int = 0) -> np.ndarray | data.DynamicBinarizer:
    """A split of the preset's data set as uint8 0/1 rows (N, 784). Train and valid keep the
    preset's first ``train_size`` / ``valid_size`` rows: the rows are in random order (binarized
    MNIST's own, Fashion-MNIST's fixed permutation). A dynamically binarized training split is its
    binarizer, seeded by the run's ``seed``: each epoch draws its own images (:func:`epoch_images`)."""
    size = {"train": preset.train_size, "valid": preset.valid_size}.get(split)
    images = data.load_dataset(preset.dataset, split, data_dir, seed)
    if isinstance(images, data.DynamicBinarizer):
        return data.DynamicBinarizer(images.images[:size], images.seed)
    return images[:size]


def epoch_images(images: np.ndarray | data.DynamicBinarizer, epoch: int) -> torch.Tensor:
    """The images of a split as float32 0/1 (N, 784), for the 0-based ``epoch``: a function of
    (seed, epoch) alone also where they are drawn anew, so a resumed run draws the same ones."""
    x = images.epoch(epoch) if isinstance(images, data.DynamicBinarizer) else images
    return torch.from_numpy(x.astype(np.float32))


def load_split(split: str, preset: Preset, data_dir: str | Path | None = None, seed: int = 0,
               epoch: int = 0) -> torch.Tensor:
    """:func:`split_images` as float32 0/1 (N, 784): for a dynamically binarized training split,
    the images the run of ``seed`` draws in ``epoch`` (0-based)."""
    return epoch_images(split_images(split, preset, data_dir, seed), epoch)


def kl_weight(step: int, warmup_steps: int) -> float:
    """beta of the KL term at a global step: 0 -> 1 linearly over ``warmup_steps``, then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def preset_kl_weight(preset: Preset, epoch: int, global_step: int, n_batches: int) -> float:
    """beta at a step of the 0-based ``epoch`` as the preset's warm-up has it: rising every step, or
    (``warmup_by="epoch"``, the authors' code) (epoch + 1) / warmup_epochs for the whole epoch."""
    if preset.warmup_by == "epoch":
        return kl_weight(epoch + 1, preset.warmup_epochs)
    return kl_weight(global_step, preset.warmup_epochs * n_batches)


@torch.no_grad()
def normalize_gradients(params) -> None:
    """Divide each parameter tensor's gradient by its L2 norm + 1e-7, in place: the step that
    the authors' AdamNormGrad takes before Adam's moments see the gradient."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        norms = torch._foreach_norm(grads)
        torch._foreach_div_(grads, torch._foreach_add(norms, 1e-7))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch, a function of (seed, epoch) only (a stable hash, unlike
    Python's ``hash``), so a resumed run knows which batches it has already done."""
    digest = hashlib.sha256(f"scvae/{seed}/{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(n, generator=generator)


@torch.no_grad()
def validation_elbo(model: VAE, x: torch.Tensor) -> float:
    """Mean one-sample ELBO over ``x`` with fixed noise, leaving the training RNG untouched."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[x.device.index] if x.device.type == "cuda" else []):
        torch.manual_seed(VALID_SEED)
        total = sum(model.elbo(xb)["elbo"].sum().item() for xb in x.split(EVAL_BATCH))
    model.train(was_training)
    return total / len(x)


@dataclass
class _Progress:
    """Where a run stands; saved (as plain Python values) in every checkpoint."""

    epoch: int = 0  # 0-based epoch in progress
    step: int = 0  # batches of it already done
    global_step: int = 0
    sums: dict = field(default_factory=lambda: dict.fromkeys((*STAT_NAMES, "n"), 0.0))  # of this epoch
    beta: float = 0.0
    epoch_seconds: float = 0.0
    wall_time_s: float = 0.0
    history: list = field(default_factory=list)
    best_epoch: int | None = None
    best_valid_elbo: float | None = None
    bad_epochs: int = 0  # epochs since the best, for early stopping
    stopped: str | None = None  # "max_epochs" | "early_stopping" | "time_budget" once training is over
    # each resume under other runtime settings (threads, torch, device): not bitwise any more
    resumed_under_other_settings: list = field(default_factory=list)


def _load(path: Path, fix: str, keys: tuple[str, ...] = ("format", "config", "model")) -> dict:
    """A checkpoint, checked for its structure and finite weights (``model``, ``best_model``)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
        raise ResultError(f"{path}: unreadable checkpoint ({e}). To fix: {fix}") from None
    if not isinstance(ck, dict):
        raise ResultError(f"{path}: holds a {type(ck).__name__}, not a checkpoint. To fix: {fix}")
    missing = [k for k in keys if k not in ck]
    if missing:
        raise ResultError(f"{path}: not a complete checkpoint, missing {', '.join(missing)}. To fix: {fix}")
    for key in ("model", "best_model"):
        weights = ck.get(key)
        if key == "best_model" and weights is None:
            continue
        if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
            raise ResultError(f"{path}: its {key} is not a dict of tensors. To fix: {fix}")
        bad = [k for k, t in weights.items() if t.is_floating_point() and not t.isfinite().all()]
        if bad:
            raise ResultError(f"{path}: its {key} holds NaN or infinite weights ({', '.join(bad[:3])}). "
                              f"To fix: {fix}")
    return ck


def _load_weights(model: VAE, weights: dict, path: Path, fix: str) -> None:
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as e:  # missing keys, unexpected keys, wrong shapes
        raise ResultError(f"{path}: its weights do not fit {model.cfg} ({str(e).splitlines()[0][:300]}). "
                          f"To fix: {fix}") from None


class _Checkpoints:
    """How a run reaches ``last.pt`` and back: saving, resuming exactly (model, optimizer, RNG,
    progress), and saying so when a resume cannot be exact. A mixin of :class:`_Run`, whose
    ``paths``, ``cfg``, ``preset``, ``dev``, ``model``, ``opt``, ``p`` (the progress),
    ``best_state``, ``saved_at``, ``last_save`` and ``tick`` it uses; the steps and epochs are
    :class:`_Run`'s."""

    def resume(self) -> None:
        """Continue from ``last.pt`` if there is one: model, optimizer, RNG and progress."""
        path = self.paths.last_ckpt
        if not path.exists():
            return
        fix = f"delete {path.parent} to train from scratch"
        ck = _load(path, fix, CHECKPOINT_KEYS)
        matches = {"checkpoint format": ck.get("format") == CHECKPOINT_FORMAT,
                   "model config": same_config(ck.get("config"), self.cfg),
                   "training settings": not changed_settings(ck.get("training"), self.preset)}
        changed = [what for what, ok in matches.items() if not ok]
        if changed:
            raise ResultError(f"{path}: its {' and '.join(changed)} differ from what {self.paths.model!r} "
                              f"under preset {self.paths.preset!r} has now. To fix: {fix}")
        _load_weights(self.model, ck["model"], path, fix)
        if ck["best_model"] is not None:
            _load_weights(VAE(self.cfg), ck["best_model"], path, fix)  # the same shapes as the model's
        try:
            self.opt.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["rng_cpu"])
            for i, state in enumerate(ck["rng_cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state, i)
            self.p = _Progress(**ck["progress"])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise ResultError(f"{path}: its optimizer, RNG or progress state is malformed ({str(e)[:300]}). "
                              f"To fix: {fix}") from None
        self.best_state = ck["best_model"]
        self.saved_at = self._position()
        print(f"{self.paths.model}: resuming from {self.saved_at}")
        self._compare_runtime(ck.get("runtime"))

    def _compare_runtime(self, saved: dict | None) -> None:
        """Warn loudly, and record for the provenance, a resume under other runtime settings."""
        now = runtime_settings(self.dev)
        # None: written before checkpoints recorded them; a key it lacks was not recorded then
        differ = {k: v for k, v in now.items() if saved is not None and k in saved and saved[k] != v}
        if not differ:
            return
        changed = ", ".join(f"{k} {saved[k]} -> {v}" for k, v in differ.items())
        self.p.resumed_under_other_settings.append(
            {"epoch": self.p.epoch + 1, "step": self.p.step, "checkpoint": saved, "now": now})
        message = (f"{self.paths.last_ckpt} was written under other settings ({changed}): the resumed run will "
                   "NOT match an uninterrupted one bitwise; train.json's provenance records it. For an exact "
                   f"resume, use the checkpoint's settings (e.g. OMP_NUM_THREADS={saved.get('threads')}).")
        print(f"\n{'!' * 80}\nWARNING: {message}\n{'!' * 80}", file=sys.stderr)
        warnings.warn(message, stacklevel=3)

    def _position(self) -> str:
        return f"{self.paths.last_ckpt} (epoch {self.p.epoch + 1}, step {self.p.step})"

    def _kept(self) -> str:
        """What a run that stops now leaves behind, and what running it again does."""
        if self.saved_at is None:
            return "no checkpoint was written yet, so running again starts from scratch"
        return f"the last good checkpoint, {self.saved_at}, is kept and running again resumes there"

    def save(self) -> None:
        """Write ``last.pt`` atomically; weights that are no longer finite are refused, not saved."""
        self.tick()
        states = {"": self.model.state_dict(), "best ": self.best_state or {}}
        bad = [f"{part}{k}" for part, state in states.items() for k, t in state.items()
               if t.is_floating_point() and not t.isfinite().all()]
        if bad:
            raise TrainingDiverged(f"training diverged: non-finite weights ({', '.join(bad[:3])}) at epoch "
                                   f"{self.p.epoch + 1}, step {self.p.step}; {self._kept()}")
        ck = {
            "format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(), "training": settings(self.preset),
            "progress": asdict(self.p), "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "best_model": self.best_state, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.dev.type == "cuda" else [],
            "runtime": runtime_settings(self.dev),
        }
        self.write(self.paths.last_ckpt, lambda: _save_torch(self.paths.last_ckpt, ck))
        self.saved_at, self.last_save = self._position(), time.monotonic()

    def save_best(self, path: Path) -> None:
        """The best weights so far (by validation ELBO), as evaluation loads them."""
        p = self.p
        self.write(path, lambda: _save_torch(path, {
            "format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(), "epoch": p.best_epoch,
            "valid_elbo": p.best_valid_elbo, "model": self.best_state, "runtime": runtime_settings(self.dev)}))

    def write(self, path: Path, write) -> None:
        """Run ``write`` (of ``path``, atomic: a failed write leaves the previous file whole); a write
        that fails (a full disk) ends training with what happened, what is kept and how to resume."""
        try:
            write()
        except OSError as e:
            full = " (the disk is full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            need = checkpoint_bytes(self.cfg, self.preset) / 2**20
            raise ResultError(f"{path}: could not be written: {e.strerror or e}{full}; {self._kept()}. To fix: make "
                              f"room in {path.parent} (this run's checkpoints take about {need:.0f} MiB), then run "
                              f"`{_train_command(self.paths)}` again") from None

    def save_if_due(self) -> None:
        if time.monotonic() - self.last_save >= self.preset.checkpoint_minutes * 60:
            self.save()


class _Run(_Checkpoints):
    """One run being trained: model, optimizer, progress, its steps and epochs (the checkpoints:
    :class:`_Checkpoints`)."""

    def __init__(self, paths: RunPaths, cfg: ModelConfig, preset: Preset, dev: torch.device):
        self.paths, self.cfg, self.preset, self.dev = paths, cfg, preset, dev
        self.model = VAE(cfg).to(dev)
        # fused: one kernel for the whole update instead of a pass per tensor and operation;
        # at batch 100 the update's memory traffic is a large share of a step (`scvae bench`).
        self.opt = torch.optim.Adam(self.model.parameters(), lr=preset.lr, fused=True)
        self.p, self.best_state = _Progress(), None  # best_state: the best epoch's weights, on the CPU
        self.saved_at: str | None = None  # the last checkpoint written, for error messages
        self.clock = self.last_save = time.monotonic()

    def tick(self) -> None:
        """Add the time since the last tick to the epoch's and the run's seconds."""
        now = time.monotonic()
        self.p.epoch_seconds += now - self.clock
        self.p.wall_time_s += now - self.clock
        self.clock = now

    def step(self, x: torch.Tensor, n_batches: int) -> list[float]:
        """One Adam step on the warm-up-weighted ELBO; returns the batch means of STAT_NAMES."""
        p = self.p
        p.beta = preset_kl_weight(self.preset, p.epoch, p.global_step, n_batches)
        terms = self.model.elbo(x, p.beta)
        stats = torch.stack([terms[k].detach().mean() for k in STAT_NAMES]).tolist()  # one device sync
        if not math.isfinite(stats[0]):
            raise TrainingDiverged(
                f"training diverged: loss {stats[0]} at epoch {p.epoch + 1}, step {p.step + 1} of {n_batches} "
                f"(global step {p.global_step + 1}); {self._kept()}, and diverges the same way: lower the "
                f"preset's lr ({self.preset.lr}) or use another seed.")
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].mean().backward()
        if self.preset.optimizer == "adam-normgrad":
            normalize_gradients(self.model.parameters())
        self.opt.step()
        for k, v in zip(STAT_NAMES, stats):
            p.sums[k] += v * len(x)
        p.sums["n"] += len(x)
        p.step += 1
        p.global_step += 1
        return stats

    def end_epoch(self, valid_x: torch.Tensor) -> None:
        """Validate, record the epoch, keep the best weights, decide on stopping."""
        p, epoch = self.p, self.p.epoch + 1
        valid = validation_elbo(self.model, valid_x)
        # An absurd ELBO is divergence only once the objective is the ELBO (KL weight 1) and it has
        # stopped improving: a He-initialised skip stack (|mu| ~ 100 at init) starts with a KL of
        # ~10^4 nats and sheds it over many epochs (the book's notes, "authors' protocol").
        stalled = p.best_valid_elbo is not None and valid <= p.best_valid_elbo
        if not math.isfinite(valid) or (valid < DIVERGED_ELBO and p.beta >= 1.0 and stalled):
            raise TrainingDiverged(
                f"training diverged: validation ELBO {valid:.4g} after epoch {epoch} (a coin-flip model scores "
                f"{COIN_FLIP_ELBO:.0f}; below {DIVERGED_ELBO:.0f} after warm-up and no better than epoch "
                f"{p.best_epoch}'s is no result); {self._kept()}, and diverges the same way: lower the preset's "
                f"lr ({self.preset.lr}) or use another seed.")
        if p.best_valid_elbo is None or valid > p.best_valid_elbo:
            p.best_epoch, p.best_valid_elbo, p.bad_epochs = epoch, valid, 0
            self.best_state = {k: t.detach().to("cpu", copy=True) for k, t in self.model.state_dict().items()}
        elif epoch > self.preset.warmup_epochs:
            # Not counted during warm-up, whose objective still changes (as in the published
            # VampPrior code: jmtomczak/vae_vampprior, utils/perform_experiment.py).
            p.bad_epochs += 1
        self.tick()
        mean = {k: p.sums[k] / p.sums["n"] for k in STAT_NAMES}
        p.history.append({"epoch": epoch, "train_loss": mean["loss"], "train_elbo": mean["elbo"],
                          "valid_elbo": valid, "rec": mean["rec"], "kl": mean["kl"], "beta": p.beta,
                          "seconds": round(p.epoch_seconds, 3)})
        if epoch in self.preset.eval_epochs:
            self.save_best(self.paths.best_ckpt_at(epoch))
        if self.preset.patience > 0 and p.bad_epochs >= self.preset.patience:
            p.stopped = "early_stopping"
        elif epoch >= self.preset.epochs:
            p.stopped = "max_epochs"
        p.epoch, p.step, p.epoch_seconds = epoch, 0, 0.0
        p.sums = dict.fromkeys(p.sums, 0.0)

    def payload(self, stopped: str) -> dict:
        """train.json's content (CONTRIBUTING.md)."""
        p, paths = self.p, self.paths
        prov = provenance(paths.seed, str(self.dev))
        if p.resumed_under_other_settings:
            prov["resumed_under_other_settings"] = p.resumed_under_other_settings
        return {
            "model": paths.model, "preset": paths.preset, "seed": paths.seed, "dataset": paths.dataset,
            "config": self.cfg.to_dict(), "preset_config": self.preset.to_dict(),
            "provenance": prov,
            "history": p.history, "best_epoch": p.best_epoch, "best_valid_elbo": p.best_valid_elbo,
            "epochs_run": len(p.history), "stopped": stopped, "wall_time_s": round(p.wall_time_s, 3),
        }


def _completed(paths: RunPaths, cfg: ModelConfig, preset: Preset) -> dict | None:
    """An existing train.json of this very run and settings, else None (saying why)."""
    if not paths.train_json.exists():
        return None
    try:
        return load_train(paths, preset, cfg)
    except ResultError as e:
        print(f"{e} Training again.")
        return None


def train_run(model_name: str, preset_name: str, seed: int, device: str | torch.device = "auto",
              results_dir: str | Path = DEFAULT_RESULTS_DIR, data_dir: str | Path | None = None, progress: bool = True,
              max_steps: int | None = None, budget_s: float | None = None, dataset: str = DEFAULT_DATASET) -> dict:
    """Train one model under a preset on ``dataset`` and write its train.json, whose content is returned.

    A complete train.json of the same settings is returned without training; a run killed
    (or stopped by ``max_steps``) resumes from ``last.pt``. With ``max_steps`` the call stops
    after that many optimisation steps, as if killed after a checkpoint: nothing is written
    but ``last.pt``, and the returned dict has ``stopped: "max_steps"``. With ``budget_s``,
    training also ends after the first epoch that finishes past that many seconds of this
    call (``stopped: "time_budget"``), as the GPU sprint needs; its train.json is final.
    """
    cfg, preset = get_config(model_name), run_preset(preset_name, model_name, dataset)
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    paths = RunPaths(Path(results_dir), preset_name, model_name, seed, dataset)
    with run_lock(paths.dir):  # one writer per run (lock.py)
        return _train_locked(paths, cfg, preset, device, data_dir, progress, max_steps, budget_s)


def _train_locked(paths: RunPaths, cfg: ModelConfig, preset: Preset, device, data_dir, progress: bool,
                  max_steps: int | None, budget_s: float | None) -> dict:
    model_name, seed = paths.model, paths.seed
    done = _completed(paths, cfg, preset)
    if done is not None:
        note = "" if paths.best_ckpt.exists() else f" (its checkpoint {paths.best_ckpt} is not on this machine)"
        print(f"{paths.train_json}: already trained{note}; delete it to train again")
        return done

    dev = resolve_device(device)
    check_writable(paths.dir, checkpoint_bytes(cfg, preset))  # before an epoch's work, not after it
    seed_everything(seed)
    train_images = split_images("train", preset, data_dir, seed)
    valid_x = load_split("valid", preset, data_dir).to(dev)
    run = _Run(paths, cfg, preset, dev)
    run.resume()
    with _interrupt_between_steps() as interrupted:
        if _train_loop(run, train_images, valid_x, max_steps, progress, interrupted, budget_s):
            return run.payload("max_steps")
    p = run.p

    run.save_best(paths.best_ckpt)
    run.write(paths.train_json, lambda: write_json(paths.train_json, "train", run.payload(p.stopped)))
    print(f"{model_name}: {len(p.history)} epochs ({p.stopped}), best validation ELBO "
          f"{p.best_valid_elbo:.2f} at epoch {p.best_epoch}; wrote {paths.train_json}")
    return load_train(paths, preset, cfg)


def _save_torch(path: Path, obj) -> None:
    """torch.save through an atomic write, serialised in memory first: torch reports a write that
    fails (a full disk) as an unrelated RuntimeError ("unexpected pos"), a plain write as the OSError."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def _train_command(paths: RunPaths) -> str:
    """The command that trains this run, with its --results-dir unless the default."""
    command = paths.command("train")
    if Path(paths.results_dir).resolve() != DEFAULT_RESULTS_DIR.resolve():
        command += f" --results-dir {paths.results_dir}"
    return command


def checkpoint_bytes(cfg: ModelConfig, preset: Preset) -> int:
    """Room a run's checkpoints need: last.pt (weights, Adam's two moments and the best weights
    in float32, twice over while the new one is written beside the old) and a best-*.pt per
    evaluated epoch, plus a margin."""
    params = sum(t.numel() for t in VAE(cfg).parameters())
    return 4 * params * (2 * 4 + 1 + len(preset.eval_epochs)) + 2**20


@contextmanager
def _interrupt_between_steps():
    """Ctrl-C (SIGINT) during training sets a flag that the loop reads between steps, so that it
    checkpoints a consistent position before it stops; a second Ctrl-C stops at once."""
    asked: list[bool] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield asked
        return

    def ask(signum, frame):
        asked.append(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


def _train_loop(run: _Run, train_images: np.ndarray | data.DynamicBinarizer, valid_x: torch.Tensor,
                max_steps: int | None, progress: bool, interrupted: list, budget_s: float | None = None) -> bool:
    """Epochs until the run stops (False; also after the first epoch past ``budget_s`` seconds),
    ``max_steps`` steps are done (True) or Ctrl-C is pressed (KeyboardInterrupt); each ends with a
    checkpoint."""
    p, preset, bs, model_name = run.p, run.preset, run.preset.batch_size, run.paths.model
    n_batches = math.ceil(len(train_images) / bs)
    dynamic = isinstance(train_images, data.DynamicBinarizer)
    train_x = None if dynamic else epoch_images(train_images, 0).to(run.dev)  # the same every epoch
    steps_here = 0  # optimisation steps of this call, for max_steps
    started = time.monotonic()  # for budget_s
    run.model.train()
    while p.stopped is None:
        if dynamic:
            train_x = epoch_images(train_images, p.epoch).to(run.dev)
        order = epoch_order(run.paths.seed, p.epoch, len(train_x)).to(run.dev)
        with tqdm(total=n_batches, initial=p.step, desc=f"{model_name} epoch {p.epoch + 1}/{preset.epochs}",
                  unit="batch", disable=not progress, leave=False) as bar:
            while p.step < n_batches and steps_here != max_steps and not interrupted:
                loss, _, rec, kl = run.step(train_x[order[p.step * bs:(p.step + 1) * bs]], n_batches)
                steps_here += 1
                bar.update()
                bar.set_postfix({"loss": f"{loss:.2f}", "rec": f"{rec:.2f}", "kl": f"{kl:.2f}",
                                 "beta": f"{p.beta:.3f}"}, refresh=False)
                run.save_if_due()
        if p.step == n_batches:
            run.end_epoch(valid_x)
            if p.stopped is None and budget_s is not None and time.monotonic() - started >= budget_s:
                p.stopped = "time_budget"
            if progress:
                h = p.history[-1]
                tqdm.write(f"{model_name} epoch {h['epoch']}/{preset.epochs}: loss {h['train_loss']:.2f}, valid "
                           f"ELBO {h['valid_elbo']:.2f} (best {p.best_valid_elbo:.2f} at epoch {p.best_epoch}), "
                           f"{h['seconds']:.1f} s")
        run.save()
        if interrupted:
            print(f"{model_name}: interrupted; checkpoint written at {run.saved_at}", file=sys.stderr)
            raise KeyboardInterrupt
        if steps_here == max_steps:
            return True
    return False


def load_trained(model_name: str, preset_name: str, seed: int, results_dir: str | Path = DEFAULT_RESULTS_DIR,
                 device: str | torch.device = "auto", epoch: int | None = None, dataset: str = DEFAULT_DATASET) -> VAE:
    """The best checkpoint of a finished run on ``dataset`` (at ``epoch``: the best of its first
    epochs), in eval mode."""
    paths = RunPaths(Path(results_dir), preset_name, model_name, seed, dataset)
    best_ckpt = paths.best_ckpt_at(epoch)
    cfg = get_config(model_name)
    command = _train_command(paths)
    if not best_ckpt.exists():
        if paths.train_json.exists():  # e.g. results from git: checkpoints stay where they were trained
            raise ResultError(f"{best_ckpt}: missing, although {paths.train_json} exists (checkpoints are "
                              f"not in git). To fix: delete {paths.train_json} and run `{command}`")
        raise ResultError(f"{best_ckpt}: missing; the model is not trained yet. To fix: run `{command}`")
    fix = f"delete {paths.dir / 'checkpoints'} and {paths.train_json}, then run `{command}`"
    ck = _load(best_ckpt, fix)
    if not same_config(ck.get("config"), cfg):
        raise ResultError(f"{best_ckpt}: trained with another architecture than {model_name!r} has now. "
                          f"To fix: {fix}")
    model = VAE(cfg)
    _load_weights(model, ck["model"], best_ckpt, fix)
    return model.to(resolve_device(device)).eval()
