"""Evaluation of a trained model -> ``eval.json`` and ``figures.npz``.

Test NLL by importance sampling (the encoder as proposal), ELBO terms, active latent units,
SVM accuracy and a linear probe on the latent means (``probes.py``), collapse diagnostics
(``diagnostics.py``), layer-wise Fisher (``fisher.py``) and the figure data
(t-SNE embeddings, reconstructions, prior samples). Every subset of the test split is a
prefix of one fixed permutation: the split's rows are sorted by digit, and every model and
seed must see the same points.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import has_training_labels, labelled_training_images, load_dataset, load_dataset_labels
from .diagnostics import diagnostics_report
from .fisher import AUTHORS_BATCHES, authors_report, derivations_report, fisher_report
from .lock import run_lock
from .models import IMAGE_SIDE, VAE, X_DIM, ModelConfig, log_normal_diag
from .presets import DEFAULT_DATASET, Preset, run_preset
from .probes import SPLIT_SEED, heldout_accuracy, linear_probe_accuracy, permuted_test_indices, svm_accuracy
from .results import (DEFAULT_RESULTS_DIR, NLL_ARRAYS, ResultError, RunPaths, check_writable, open_regular,
                      provenance, read_json, write_json, write_npz)
from .runs import TRAIN_KEYS, load_eval, load_figures_npz
from .train import epoch_order, kl_weight, load_split, load_trained, resolve_device
from .zoo import get_config

AU_THRESHOLD = 0.01  # Burda et al. (2016)
ELBO_DRAWS = 10  # the ELBO is averaged over this many z ~ q(z|x) per test point
# The NLL is also recorded from the first k of its S importance samples, for each k here
# below S: if it still falls between the last two counts, S is too small.
NLL_CONVERGENCE = (1, 10, 100, 200, 1000)  # 200: the cpu preset's S, so longer runs compare with it
TSNE_PERPLEXITY = 30.0
# One thread: 2000 points take ~5 CPU-s, and on a shared 2-core machine openTSNE's thread
# pool was measured 5x slower with n_jobs=2 than with 1 (60 s against 12 s).
TSNE_JOBS = 1
TSNE_EVERY = 50  # t-SNE iterations per progress-bar tick
# Where a finished evaluation goes when its own folder cannot take it (a full disk, a lost
# mount): the next evaluate_run of that run installs it from there instead of recomputing,
# if it is that run's (see _install_rescued).
RESCUE_DIRS = (Path(tempfile.gettempdir()) / "scvae-rescued", Path.home() / ".cache" / "scvae-rescued")
RESULT_BYTES = 16 * 2**20  # eval.json and figures.npz of the largest preset, with a margin


# ------------------------------------------------------------------------- NLL

def importance_log_px(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    propose: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    n_samples: int,
    chunk: int,
    at: tuple[int, ...] = (),
) -> torch.Tensor:
    """log (1/S sum_s p(x, z_s) / q(z_s|x)) for a batch of B points, z_s ~ q(z|x).

    ``propose(n)`` gives z (n, B, D) and log q(z|x) (n, B); ``log_joint(z)`` gives
    log p(x, z) (n, B). Samples are drawn ``chunk`` at a time, so memory does not grow
    with S; the per-chunk logsumexps combine exactly. With ``at`` (sample counts k <= S),
    the estimates from the first k of the same samples are returned instead, shape
    (len(at), B): how the estimate converges in S costs nothing extra.
    """
    if any(not 1 <= k <= n_samples for k in at):
        raise ValueError(f"at={at}: every sample count must lie in 1..{n_samples}")
    parts, prefix = [], {}
    for start in range(0, n_samples, chunk):
        z, log_q = propose(min(chunk, n_samples - start))
        log_w = log_joint(z) - log_q
        if at:
            # running log-sum of the weights up to each sample of this chunk
            running = torch.logcumsumexp(log_w, dim=0)
            if parts:
                running = torch.logaddexp(running, torch.logsumexp(torch.stack(parts), dim=0))
            prefix |= {k: running[k - 1 - start] for k in at if start < k <= start + len(log_w)}
        parts.append(torch.logsumexp(log_w, dim=0))
    if at:
        return torch.stack([prefix[k] - math.log(k) for k in at])
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(n_samples)


def rows_per_pass(model: VAE, device: torch.device) -> int:
    """How many (sample, data point) rows to push through the model at once.

    About a thousand keeps a CPU's caches warm (measured: throughput falls beyond), and 64 for
    the PixelCNN, whose 32-channel maps of 1024 rows (100 MB each) ran its NLL 2.7x slower
    (`scvae bench`, 1 thread, 2026-12-01); a GPU wants as many as a 2 GiB activation budget
    allows, which the VampPrior's (rows, K, D) densities and the PixelCNN's feature maps shrink.
    """
    if device.type != "cuda":
        return 64 if model.cfg.decoder == "pixelcnn" else 1024
    cfg = model.cfg
    floats = 4 * X_DIM + 4 * cfg.hidden
    if cfg.prior == "vamp":
        floats += 2 * cfg.pseudo_inputs * cfg.latent
    if cfg.decoder == "pixelcnn":
        floats += 3 * cfg.pixel_channels * X_DIM
    return int(min(65536, max(256, 2**31 // (4 * floats))))


# Compiling log p(x|z) fuses the decoder's elementwise work and the Bernoulli log-density:
# SCVAE's NLL went from 0.77 to 0.87 of the CPU's GEMM ceiling (`scvae bench`, 2 cores, 2026-11-25).
# Compiling costs ~6 s, which pays from about this many (sample, image) rows on.
COMPILE_ROWS = 300_000


def compiles_nll(model: VAE, rows: int) -> bool:
    """Whether :func:`importance_nll` compiles the likelihood for a workload of ``rows``
    (sample, image) pairs: large enough, and an MLP decoder (the PixelCNN's is not compiled)."""
    return rows >= COMPILE_ROWS and model.cfg.decoder == "bernoulli"


def _compiled_or_eager(fn: Callable) -> Callable:
    """``torch.compile(fn)``, falling back to ``fn`` with a warning if compiling fails (no C++
    compiler, an unsupported platform): both compute the same density."""
    compiled, chosen = torch.compile(fn), []

    def call(*args):
        if not chosen:
            try:
                out = compiled(*args)
                chosen.append(compiled)
                return out
            except Exception as e:  # noqa: BLE001  (inductor raises many kinds)
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); the NLL is "
                              "computed without it, only slower", stacklevel=2)
                chosen.append(fn)
        return chosen[0](*args)

    return call


@torch.no_grad()
def importance_nll(
    model: VAE,
    x: torch.Tensor,
    n_samples: int,
    chunk: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    at: tuple[int, ...] = (),
    compile: bool | None = None,
) -> torch.Tensor:
    """Per-example -log p(x), importance-sampled with q(z|x) as proposal (CPU tensor).

    ``chunk`` samples per pass (default: fill ``rows_per_pass``), as many data points
    beside them as the same budget allows. With ``at``, shape (len(at), N): the estimates
    from the first k samples, for each k of ``at`` (see :func:`importance_log_px`).
    ``compile`` None: as :func:`compiles_nll` decides for this workload.
    """
    x = x.to(model.device, torch.float32)
    compile = compiles_nll(model, len(x) * n_samples) if compile is None else compile
    log_likelihood = _compiled_or_eager(model.log_likelihood) if compile else model.log_likelihood
    rows = rows_per_pass(model, x.device)
    chunk = min(n_samples, chunk or rows)
    batch = max(1, rows // chunk)
    nll = []
    with model.prior.fixed(model.encoder), tqdm(total=len(x) * n_samples, desc=f"NLL (S={n_samples})",
                                                unit="sample", unit_scale=True, disable=not progress,
                                                leave=False) as bar:
        for xb in x.split(batch):
            mu, logvar = model.encode(xb)
            std = torch.exp(0.5 * logvar)

            def propose(n: int) -> tuple[torch.Tensor, torch.Tensor]:
                eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
                z = mu + std * eps
                return z, log_normal_diag(z, mu, logvar)

            def log_joint(z: torch.Tensor) -> torch.Tensor:
                flat = z.reshape(-1, z.shape[-1])
                xs = xb.expand(z.shape[0], *xb.shape).reshape(-1, X_DIM)
                return (log_likelihood(xs, flat) + model.log_prior(flat)).view(z.shape[:2])

            nll.append(-importance_log_px(log_joint, propose, n_samples, chunk, at).cpu())
            bar.update(len(xb) * n_samples)
    return torch.cat(nll, dim=-1)


@torch.no_grad()
def elbo_terms(model: VAE, x: torch.Tensor, draws: int = ELBO_DRAWS) -> dict[str, float]:
    """Test-set means of the ELBO and its reconstruction and KL terms (``VAE.elbo``, the
    training objective), each point's averaged over ``draws`` z ~ q(z|x)."""
    x = x.to(model.device, torch.float32)
    sums = {"elbo": 0.0, "rec": 0.0, "kl": 0.0}
    with model.prior.fixed(model.encoder):
        for xb in x.split(rows_per_pass(model, x.device)):
            for _ in range(draws):
                terms = model.elbo(xb)
                for key in sums:
                    sums[key] += terms[key].double().sum().item()
    return {key: total / (len(x) * draws) for key, total in sums.items()}


@torch.no_grad()
def posterior_means(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """E_q(z|x)[z] for every row of x (CPU tensor)."""
    x = x.to(model.device, torch.float32)
    return torch.cat([model.encode(xb)[0].cpu() for xb in x.split(rows_per_pass(model, x.device))])


def active_units(means: torch.Tensor, threshold: float = AU_THRESHOLD) -> int:
    """Latent units whose posterior mean varies across data: Cov_x(E_q[z_u]) > threshold."""
    return int((means.double().var(dim=0) > threshold).sum())


# ------------------------------------------------------------------------- figure data

def tsne_embed(features: np.ndarray, seed: int, progress: bool = False, desc: str = "t-SNE") -> np.ndarray:
    """2-D openTSNE embedding (perplexity 30, otherwise openTSNE's defaults: PCA
    initialisation, 250 early-exaggeration + 500 iterations), float32 (n, 2)."""
    from openTSNE import TSNE

    # Barnes-Hut below 10,000 points: openTSNE's FFT method has a fixed cost per iteration
    # that made 150 points take 18 s against 1 s (measured here).
    method = "bh" if len(features) < 10_000 else "fft"
    tsne = TSNE(perplexity=TSNE_PERPLEXITY, n_jobs=TSNE_JOBS, random_state=seed, callbacks_every_iters=TSNE_EVERY,
                negative_gradient_method=method)
    with tqdm(total=tsne.early_exaggeration_iter + tsne.n_iter, desc=desc, unit="it",
              disable=not progress, leave=False) as bar:

        def tick(iteration: int, error: float, embedding: np.ndarray) -> bool:
            bar.update(TSNE_EVERY)
            return False  # do not stop the optimisation

        tsne.callbacks = tick if progress else None
        return np.asarray(tsne.fit(np.asarray(features, dtype=np.float32)), dtype=np.float32)


def tsne_missing() -> str | None:
    """Why t-SNE cannot run here, or None. The GPU sprint's interpreter has no openTSNE
    (sprint.py): its figure seeds then get every figure but the embeddings."""
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return "openTSNE is not installed"
    return None


def grid_indices(labels: np.ndarray, k: int) -> np.ndarray:
    """k positions into ``labels``: the first of each digit in order (so every digit shows,
    if k >= 10), then the earliest others."""
    firsts = [int(np.flatnonzero(labels == d)[0]) for d in np.unique(labels)]
    rest = np.setdiff1d(np.arange(len(labels)), firsts)
    return np.concatenate([firsts, rest])[:k]


@torch.no_grad()
def image_grids(model: VAE, x: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """recon_truth, recon_model (posterior-mean reconstructions) and prior samples, k x 28 x 28.
    For the PixelCNN both are autoregressive (784 passes each): keep k small."""
    shape = (-1, IMAGE_SIDE, IMAGE_SIDE)
    x = x[:k].to(model.device, torch.float32)
    return {
        "recon_truth": x.cpu().numpy().reshape(shape),
        "recon_model": model.reconstruct(x).cpu().numpy().reshape(shape),
        "samples": model.sample(k).cpu().numpy().reshape(shape),
    }


def figure_data(model: VAE, x: torch.Tensor, labels: np.ndarray, seed: int, progress: bool) -> dict[str, np.ndarray]:
    """t-SNE of the raw images, the encoder's first, middle and last hidden layers and the
    latent means of x; a layer shared by two of them (shallow encoders) is embedded once."""
    x = x.to(model.device, torch.float32)
    with torch.no_grad():
        hidden = [torch.cat(hs).cpu().numpy() for hs in zip(*(model.encoder_hidden(xb) for xb in x.split(1024)))]
    depth = len(hidden)
    by_layer: dict[int, np.ndarray] = {}
    out = {"labels": labels, "tsne_raw": tsne_embed(x.cpu().numpy(), seed, progress, "t-SNE raw")}
    for name, layer in (("first", 0), ("middle", depth // 2), ("last", depth - 1)):
        if layer not in by_layer:
            by_layer[layer] = tsne_embed(hidden[layer], seed, progress, f"t-SNE h{layer + 1}")
        out[f"tsne_{name}"] = by_layer[layer]
    out["tsne_latent"] = tsne_embed(posterior_means(model, x).numpy(), seed, progress, "t-SNE z")
    return out


# ------------------------------------------------------------------------- one run

@contextmanager
def _seeded(seed: int, part: str, device: torch.device) -> Iterator[torch.Generator]:
    """A generator, and the global RNG (which ``VAE.elbo``/``sample`` use), seeded from
    (seed, part): each part is reproducible whatever other parts ran before it."""
    part_seed = int(np.random.SeedSequence([seed, zlib.crc32(part.encode())]).generate_state(1)[0])
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(part_seed)
        yield torch.Generator(device=device).manual_seed(part_seed)


def _prefix(n: int | None) -> np.ndarray:
    return permuted_test_indices()[:n]


def _stale_reason(paths: RunPaths, epoch: int | None = None) -> str | None:
    """Why an existing evaluation (already checked by ``load_eval`` against the preset's
    settings and the model's config) cannot be reused, or None."""
    try:
        load_figures_npz(paths, epoch)  # its content, not only its existence: a truncated file is not done
    except ResultError as e:
        return str(e)
    ckpt = paths.best_ckpt_at(epoch)
    if ckpt.exists() and ckpt.stat().st_mtime > paths.eval_json_at(epoch).stat().st_mtime:
        return "the checkpoint is newer (the model was trained further)"
    return None


def _rescue_paths(top: Path, paths: RunPaths) -> RunPaths:
    """Where a result of ``paths`` is kept under the rescue folder ``top``: one subfolder per
    results folder (a digest of its resolved path), so that a run finds only its own folder's."""
    key = hashlib.sha256(str(Path(paths.results_dir).resolve()).encode()).hexdigest()[:16]
    return RunPaths(top / key, paths.preset, paths.model, paths.seed, paths.dataset)


def _rescue_record(rescue: RunPaths, epoch: int | None) -> Path:
    """The file that binds a kept result to its run: results folder and checkpoint checksum."""
    return rescue.dir / ("rescued.json" if epoch is None else f"rescued-e{epoch:03d}.json")


def _sha256(path: Path) -> str | None:
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _untrusted(top: Path, folder: Path, create: bool = False) -> str | None:
    """Why the rescue folder ``folder`` (under ``top``) cannot be trusted, or None: every folder
    from ``top`` down must be a real folder (no link) of this user's that no one else can write,
    or another user could plant a result in it. ``create``: make the missing ones, private."""
    here = top
    for part in ("", *folder.relative_to(top).parts):
        here = here / part
        if create:
            try:
                here.mkdir(mode=0o700)
            except FileExistsError:
                pass
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return f"{here} does not exist"
        if not stat.S_ISDIR(st.st_mode):
            return f"{here} is {'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'not a folder'}"
        if st.st_uid != os.getuid():
            return f"{here} belongs to another user (uid {st.st_uid})"
        if st.st_mode & 0o022:
            return f"{here} can be written by other users (mode {stat.filemode(st.st_mode)})"
    return None


def _write_result(paths: RunPaths, figures: dict[str, np.ndarray], doc: dict, epoch: int | None = None) -> None:
    """figures.npz, then eval.json (an eval.json on disk means the evaluation is complete). If
    they cannot be written, the result is not lost: it goes under a rescue folder of this user's,
    bound to this run's results folder and the checksum of the checkpoint it evaluated, and the
    error says where and how the next run picks it up."""
    try:
        write_npz(paths.figures_npz_at(epoch), **figures)
        write_json(paths.eval_json_at(epoch), "eval", doc)
        return
    except OSError as e:
        error = e
    failures = [f"{paths.dir}: {error.strerror or error}"]
    ckpt = paths.best_ckpt_at(epoch)
    binding = {"results_dir": str(Path(paths.results_dir).resolve()), "run": str(paths.dir),
               "checkpoint": str(ckpt), "checkpoint_sha256": _sha256(ckpt), "provenance": doc.get("provenance", {})}
    for top in RESCUE_DIRS:
        rescue = _rescue_paths(top, paths)
        try:
            problem = _untrusted(top, rescue.dir, create=True)
            if problem:
                failures.append(f"{rescue.dir}: not used, {problem}")
                continue
            write_json(_rescue_record(rescue, epoch), "rescue", binding)
            write_npz(rescue.figures_npz_at(epoch), **figures)
            write_json(rescue.eval_json_at(epoch), "eval", doc)
        except OSError as e:
            failures.append(f"{rescue.dir}: {e.strerror or e}")
            continue
        raise ResultError(f"{paths.eval_json_at(epoch)}: could not be written ({failures[0]}); the finished "
                          f"evaluation is kept in {rescue.dir}. To fix: make room in {paths.dir}, then run "
                          f"`{paths.command('evaluate')}` again: it installs the kept result without recomputing")
    # The last place left: the numbers on stderr, so that not even they are lost.
    print(json.dumps(doc, default=str), file=sys.stderr)
    raise ResultError(f"{paths.eval_json_at(epoch)}: could not be written anywhere ({'; '.join(failures)}); its "
                      "content is printed above (stderr), the figure data are lost. To fix: make room, then run "
                      f"`{paths.command('evaluate')}` again")


def _binding_problem(record: dict, paths: RunPaths, epoch: int | None) -> str | None:
    """Why a kept result is not this run's evaluation of its current checkpoint, or None."""
    here = str(Path(paths.results_dir).resolve())
    if record.get("results_dir") != here or record.get("run") != str(paths.dir):
        return f"it was computed for {record.get('run')!r} in the results folder {record.get('results_dir')!r}"
    ckpt = paths.best_ckpt_at(epoch)
    digest = _sha256(ckpt)
    if digest is None:
        return f"the checkpoint it evaluated, {ckpt}, is not there to compare with"
    if record.get("checkpoint_sha256") != digest:
        return f"it evaluated other weights than {ckpt} holds now (the model was trained again since)"
    return None


def _install_rescued(paths: RunPaths, preset: Preset, config: ModelConfig, epoch: int | None = None) -> bool:
    """Move a result that :func:`_write_result` had to put aside into the run's folder; called
    only when the run has no valid evaluation of its own. Installed only if it is this run's:
    kept for this results folder, computed from the checkpoint the run has now (its SHA-256),
    valid, and in a folder no other user can write. Anything else is refused with a warning."""
    for top in RESCUE_DIRS:
        rescue = _rescue_paths(top, paths)
        kept = rescue.eval_json_at(epoch)
        if not os.path.lexists(kept):
            continue
        problem = _untrusted(top, rescue.dir)
        if problem is None:
            try:
                record = read_json(_rescue_record(rescue, epoch), "rescue", ("results_dir", "checkpoint_sha256"))
                doc = load_eval(rescue.results_dir, paths.preset, paths.model, paths.seed, epoch, preset, config,
                                paths.dataset)
                figures = load_figures_npz(rescue, epoch)
                problem = _binding_problem(record, paths, epoch)
            except ResultError as e:
                problem = str(e)
        if problem:
            warnings.warn(f"{kept}: a kept evaluation of {paths.dir}, not installed: {problem}. To fix: nothing "
                          f"needed (the run is evaluated anew); delete {rescue.dir} to silence this", stacklevel=3)
            continue
        _write_result(paths, figures, {k: v for k, v in doc.items() if k not in ("schema_version", "kind")}, epoch)
        for kept_file in (kept, rescue.figures_npz_at(epoch), _rescue_record(rescue, epoch)):
            kept_file.unlink(missing_ok=True)
        if not any(rescue.dir.iterdir()):
            rescue.dir.rmdir()
        print(f"{paths.eval_json_at(epoch)}: installed the evaluation kept in {rescue.dir}")
        return True
    return False


def _reusable(paths: RunPaths, preset: Preset, config: ModelConfig, epoch: int | None = None) -> dict | None:
    if not paths.eval_json_at(epoch).exists():
        return None
    try:
        doc = load_eval(paths.results_dir, paths.preset, paths.model, paths.seed, epoch, preset, config, paths.dataset)
        reason = _stale_reason(paths, epoch)
    except ResultError as e:
        reason = str(e)
    if reason is None:
        return doc
    warnings.warn(f"{paths.eval_json_at(epoch)}: {reason}; recomputing it", stacklevel=3)
    return None


def _snapshot_epoch(paths: RunPaths, epoch: int | None) -> tuple[int, int]:
    """(the epoch whose weights are evaluated, the epochs trained when they were kept)."""
    doc = read_json(paths.train_json, "train", TRAIN_KEYS, fix=paths.command("train"))
    history = doc["history"] if epoch is None else doc["history"][:epoch]
    best = max(history, key=lambda h: h["valid_elbo"])  # the first of equals, as training keeps it
    return best["epoch"], len(history)


def authors_batches(seed: int, epoch: int, preset: Preset, data_dir) -> list[torch.Tensor]:
    """The last AUTHORS_BATCHES training minibatches of ``epoch`` (1-based) in training's own order."""
    train_x = load_split("train", preset, data_dir, seed, epoch - 1)  # a dynamic data set: that epoch's draw
    order = epoch_order(seed, epoch - 1, len(train_x))
    bs = preset.batch_size
    n_batches = math.ceil(len(train_x) / bs)
    return [train_x[order[b * bs:(b + 1) * bs]] for b in range(max(0, n_batches - AUTHORS_BATCHES), n_batches)]


def evaluate_run(
    model_name: str,
    preset_name: str,
    seed: int,
    device: str = "auto",
    results_dir: str | Path = DEFAULT_RESULTS_DIR,
    data_dir: str | Path | None = None,
    progress: bool = True,
    epoch: int | None = None,
    dataset: str = DEFAULT_DATASET,
) -> dict:
    """Evaluate the best checkpoint of one run into eval.json and figures.npz; an up-to-date
    eval.json is returned as it is. A preset with ``eval_epochs`` evaluates the best weights
    kept at each of them (eval-eNNN.json, figures-eNNN.npz; all of them unless ``epoch``)
    and returns the last."""
    preset, config = run_preset(preset_name, model_name, dataset), get_config(model_name)
    if preset.eval_epochs and epoch is None:
        docs = [evaluate_run(model_name, preset_name, seed, device, results_dir, data_dir, progress, e, dataset)
                for e in preset.eval_epochs]
        return docs[-1]
    if epoch is not None and epoch not in preset.eval_epochs:
        raise ValueError(f"epoch {epoch}: preset {preset_name!r} keeps weights for evaluation only at epochs "
                         f"{list(preset.eval_epochs) or 'none (it evaluates the final weights)'}")
    paths = RunPaths(Path(results_dir), preset_name, model_name, seed, dataset)
    with run_lock(paths.dir):  # one writer per run (lock.py)
        return _evaluate_locked(paths, preset, config, device, data_dir, progress, epoch)


def _evaluate_locked(paths: RunPaths, preset: Preset, config: ModelConfig, device, data_dir, progress: bool,
                     epoch: int | None) -> dict:
    model_name, preset_name, seed, results_dir = paths.model, paths.preset, paths.seed, paths.results_dir
    doc = _reusable(paths, preset, config, epoch)
    if doc is None and _install_rescued(paths, preset, config, epoch):
        doc = _reusable(paths, preset, config, epoch)
    if doc is not None:
        print(f"{paths.eval_json_at(epoch)}: up to date, not recomputed (delete it to force)")
        return doc
    check_writable(paths.dir, RESULT_BYTES)  # before the work, not after it
    for target in (paths.eval_json_at(epoch), paths.figures_npz_at(epoch)):
        if target.is_dir() and not target.is_symlink():  # a file would be replaced; a folder cannot be
            raise ResultError(f"{target}: is a folder, where this evaluation writes its result. To fix: remove it "
                              f"(`rm -r {target}`), then run `{paths.command('evaluate')}` again")

    start = time.perf_counter()
    dev = resolve_device(device)
    model = load_trained(model_name, preset_name, seed, results_dir, dev, epoch, paths.dataset)
    best_epoch, trained = _snapshot_epoch(paths, epoch)
    final = epoch is None or epoch == preset.eval_epochs[-1]
    x_test = torch.from_numpy(load_dataset(paths.dataset, "test", data_dir)).to(dev, torch.float32)
    labels = load_dataset_labels(paths.dataset, "test", data_dir)
    timings: dict[str, float] = {}

    def timed(part: str, fn: Callable[[torch.Generator], object]):
        t = time.perf_counter()
        with _seeded(seed, part, dev) as generator:
            result = fn(generator)
        timings[part] = round(time.perf_counter() - t, 3)
        return result

    x = x_test[_prefix(preset.test_size)]
    samples = preset.nll_samples_at(epoch, seed)
    counts = (*(k for k in NLL_CONVERGENCE if k < samples), samples)
    nll_at = timed("nll", lambda g: importance_nll(model, x, samples, generator=g, progress=progress,
                                                   at=counts)).double()
    nll = nll_at[-1]
    elbo = timed("elbo", lambda g: elbo_terms(model, x))
    units = timed("active_units", lambda g: active_units(posterior_means(model, x)))
    svm_idx = _prefix(preset.svm_size)
    svm_means = posterior_means(model, x_test[svm_idx]).numpy()
    svm = timed("svm", lambda g: svm_accuracy(svm_means, labels[svm_idx], preset.svm_folds, SPLIT_SEED))
    probe = timed("linear_probe", lambda g: linear_probe_accuracy(svm_means, labels[svm_idx], preset.svm_folds,
                                                                  SPLIT_SEED))
    heldout = None
    if has_training_labels(paths.dataset):  # fit on as many training images as the SVM scores test images
        x_fit, y_fit = labelled_training_images(paths.dataset, len(svm_idx), data_dir)
        fit_means = posterior_means(model, torch.from_numpy(x_fit).to(dev, torch.float32)).numpy()
        heldout = timed("svm_heldout", lambda g: heldout_accuracy(fit_means, y_fit, svm_means, labels[svm_idx]))
    diagnostics = timed("diagnostics", lambda g: diagnostics_report(model, x, elbo, AU_THRESHOLD, generator=g))
    x_fisher = x_test[_prefix(preset.fisher_points)]
    fisher = timed("fisher", lambda g: fisher_report(model, x_fisher, generator=g))
    fisher_empirical = timed("fisher_empirical", lambda g: fisher_report(model, x_fisher, "empirical", generator=g))
    beta = kl_weight(best_epoch, preset.warmup_epochs)  # at the end of that epoch (warm-up counts epochs)
    batches = authors_batches(seed, best_epoch, preset, data_dir)
    fisher_authors = timed("fisher_authors", lambda g: {
        **authors_report(model, batches, beta),
        "source": f"the last {len(batches)} training minibatches of epoch {best_epoch}, the epoch of these weights"})
    derivations = timed("derivations", lambda g: derivations_report(model, x_fisher, generator=g))

    tsne_idx = _prefix(preset.tsne_points)
    tsne_skipped = tsne_missing() if seed in preset.figure_seeds and final else None
    if seed in preset.figure_seeds and final and tsne_skipped is None:
        figures = timed("tsne", lambda g: figure_data(model, x_test[tsne_idx], labels[tsne_idx], seed, progress))
    else:
        if tsne_skipped:
            warnings.warn(f"{paths.figures_npz_at(epoch)}: no t-SNE embeddings, {tsne_skipped}", stacklevel=2)
        figures = {"labels": labels[tsne_idx]}
    order = permuted_test_indices()
    grid = order[grid_indices(labels[order], preset.grid_images)]
    figures |= timed("images", lambda g: image_grids(model, x_test[grid], preset.grid_images))
    # Every image's estimate, so that two models' NLLs are compared image by image (paired).
    figures |= dict(zip(NLL_ARRAYS, (nll.numpy(), _prefix(preset.test_size))))

    metrics = {
        "nll": nll.mean().item(), "nll_se": (nll.std() / math.sqrt(len(nll))).item() if len(nll) > 1 else 0.0,
        "nll_samples": samples, **elbo,
        "nll_by_samples": {str(k): v.mean().item() for k, v in zip(counts, nll_at)}, "test_size": len(x),
        "active_units": units, "au_threshold": AU_THRESHOLD,
        "svm_acc": svm["mean"], "svm_acc_std": svm["std"], "svm_fold_accs": svm["folds"], "svm_size": len(svm_idx),
        "linear_probe_acc": probe["mean"], "linear_probe_acc_std": probe["std"],
        "linear_probe_fold_accs": probe["folds"],
    }
    if heldout is not None:  # the SVM fitted on training labels, scored on the same test images
        metrics |= {"svm_heldout_acc": heldout["acc"], "svm_heldout_acc_se": heldout["se"],
                    "svm_heldout_train_size": heldout["train_size"]}
    doc = {
        "model": model_name, "preset": preset_name, "seed": seed, "dataset": paths.dataset, "config": config.to_dict(),
        "preset_config": preset.to_dict(), "provenance": provenance(seed, str(dev)),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "epoch": best_epoch, "epochs_trained": trained,
        "metrics": metrics, "fisher": fisher, "fisher_empirical": fisher_empirical, "fisher_authors": fisher_authors,
        "derivations": derivations, "diagnostics": diagnostics, "timings": timings,
    }
    if tsne_skipped:
        doc["tsne_skipped"] = tsne_skipped  # a figure seed without embeddings, and why
    _write_result(paths, figures, doc, epoch)
    return load_eval(results_dir, preset_name, model_name, seed, epoch, preset, config, paths.dataset)
