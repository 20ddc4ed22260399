"""``scvae bench``: this machine's float32 matrix-multiply ceiling for the models' layer shapes,
and how close training, importance-sampled NLL and per-example Fisher come to it. Writes
``results/bench/<machine>.json`` (kind ``bench``); the book's performance appendix shows every
machine's file side by side. It needs no data: images are random binary (timing does not
depend on pixel values) and models are freshly initialised.

FLOP model. Only matrix multiplies count; biases, activations, skip additions, losses,
sampling and the optimizer are elementwise work it ignores, so every fraction of the ceiling
books them as overhead. A linear layer in -> out costs per row (image or importance sample):
forward 2*in*out; backward 2*in*out for the weight gradient plus 2*in*out for the input
gradient, except for the layer fed by the data, whose input gradient autograd skips (x needs
none). Training counts forward + backward of every layer per image; the NLL counts the
decoder's forward per importance sample and the encoder's forward once per image.

Ceiling. Every multiply a workload does (shape and operand layout as nn.Linear and autograd
issue it) is timed alone; its rate is the best, over several windows of back-to-back calls,
of the window's mean ("best sustained": noise only slows). A workload's ceiling is the rate
it would reach doing nothing but these multiplies, each at its own rate:
    ceiling = sum_i flops_i / sum_i (flops_i / rate_i)   (a FLOP-weighted harmonic mean).
A model's training ceiling is the best of these over the batch sizes tried, the NLL's over
its variants' pass sizes. ``fraction`` is against that ceiling; ``fraction_same_batch`` /
``fraction_same_rows`` against the ceiling at the run's own size, which separates the
multiplies' small-size inefficiency from overhead.

train.py trains with fused Adam; evaluate.py compiles log p(x|z) for NLL workloads large
enough to repay the compile. The other variants (plain Adam, no update at all, a compiled
training step, inference_mode, other NLL pass sizes) measure what a change to train.py /
evaluate.py would buy, or what stands in the way of the targets; they change nothing there.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .evaluate import compiles_nll, importance_nll, rows_per_pass
from .fisher import draw_targets, layer_fisher
from .models import VAE, ModelConfig
from .presets import get_preset
from .results import DEFAULT_RESULTS, REPO_ROOT, ResultError, describe_device, provenance, read_json, write_json
from .train import STAT_NAMES, resolve_device
from .zoo import build, get_config

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODELS = ("vae-1l", "scvae")
MAIN_MODEL = "scvae"  # the targets, the NLL, the Fisher comparison and the profile are on it
TARGET = 0.8  # fraction of the ceiling aimed at: scvae training at batch 100, and the NLL
TEST_SET, PAPER_SAMPLES = 10000, 5000  # the projected NLL run: the whole test set at S = 5000
FED_BY_DATA = "encoder.mlp.layers.0"
TIMINGS = REPO_ROOT / "_build" / "timings"  # `make` records its targets' wall times here
MAKE_TARGETS = ("book", "test")
# train.py's Adam as it is, and the fused kernel (one pass over weights, grads and moments).
OPTIMIZERS = {"adam": {}, "adam-fused": {"fused": True}}
# Forward and backward with no parameter update: not a way to train, but the measure of what
# the update costs, which the fraction of the ceiling at batch 100 cannot hide.
NO_UPDATE = "no-update"
# train.py's step with the ELBO through torch.compile, which fuses its elementwise work (tanh,
# skip additions, the Bernoulli and Gaussian densities): does that close the gap to the ceiling?
COMPILED = "adam-fused+compiled"
TRAINED_BY = "adam-fused"  # what train.py uses
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")
VERDICTS = {True: "met", False: "NOT met", None: "unknown: see the warnings"}


@dataclass(frozen=True)
class Settings:
    batches: tuple[int, ...] = (100, 250, 500, 1000)  # the first is the target's batch
    # A time is the best mean over windows of back-to-back calls lasting >= window_s: up to
    # ``windows`` of them, fewer once a measurement has taken budget_s (at least two). Short
    # windows and many of them: on a shared machine some window is likely to run undisturbed.
    window_s: float = 0.05
    windows: int = 10
    budget_s: float = 2.0
    nll_samples: int = PAPER_SAMPLES  # S of the timed NLL runs
    nll_points: int = 4  # test images per timed NLL call (at least one full pass)
    fisher_points: int = 32
    compile: bool = True  # also time training and the NLL through torch.compile (seconds of compiling)
    # Time by the thread's CPU time instead of the wall clock: with one thread, a shared
    # machine's other work then barely shows (it measures a core's efficiency, not latency).
    cpu_clock: bool = False


FULL = Settings()
QUICK = Settings(batches=(8, 16), window_s=0.005, windows=2, budget_s=0.05, nll_samples=16, nll_points=2,
                 fisher_points=4, compile=False)


# ------------------------------------------------------------------------- FLOP model

@dataclass(frozen=True)
class Gemm:
    """One (m x k) @ (k x n) multiply in the role a linear layer issues it."""

    role: str  # "forward" (F.linear) | "input_grad" (dy @ W) | "weight_grad" (dy^T @ x)
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def linear_shapes(cfg: ModelConfig) -> list[tuple[str, int, int]]:
    """(name, in, out) of every weight layer, encoder first."""
    if cfg.decoder != "bernoulli" or cfg.prior != "normal":  # convolutions, pseudo-input passes: not modelled
        raise ValueError("the FLOP model covers MLP decoders with a standard-normal prior only")
    return [(name, m.in_features, m.out_features) for name, m in VAE(cfg).linear_layers().items()]


def training_gemms(cfg: ModelConfig, batch: int) -> list[Gemm]:
    gemms = []
    for name, n_in, n_out in linear_shapes(cfg):
        gemms += [Gemm("forward", batch, n_in, n_out), Gemm("weight_grad", n_out, batch, n_in)]
        if name != FED_BY_DATA:
            gemms.append(Gemm("input_grad", batch, n_out, n_in))
    return gemms


def nll_gemms(cfg: ModelConfig, points: int, rows: int) -> list[Gemm]:
    """One NLL pass: the encoder on ``points`` images, the decoder on ``rows`` samples."""
    return [Gemm("forward", points if name.startswith("encoder") else rows, n_in, n_out)
            for name, n_in, n_out in linear_shapes(cfg)]


def flops(gemms: list[Gemm]) -> int:
    return sum(g.flops for g in gemms)


def flop_model(cfg: ModelConfig) -> dict[str, int]:
    """FLOPs per training image, per importance sample (decoder) and per NLL image (encoder)."""
    def forward(part: str) -> int:
        return sum(2 * n_in * n_out for name, n_in, n_out in linear_shapes(cfg) if name.startswith(part))

    return {"train_per_image": flops(training_gemms(cfg, 1)), "nll_per_sample": forward("decoder"),
            "nll_per_image": forward("encoder")}


def ceiling(gemms: list[Gemm], rates: dict[Gemm, float]) -> float:
    """FLOP/s if the workload did nothing but its multiplies, each at its measured rate."""
    return flops(gemms) / sum(g.flops / rates[g] for g in gemms)


# ------------------------------------------------------------------------- timing

def best_time(fn: Callable[[], object], device: torch.device, s: Settings, warm: int = 1) -> float:
    """Seconds per call, the best window's mean (see ``Settings``); ``warm`` calls come first."""
    clock = time.thread_time if s.cpu_clock else time.perf_counter

    def timed(calls: int) -> float:
        start = clock()
        for _ in range(calls):
            fn()
        if device.type == "cuda":  # once per window: per-call syncs would time launch latency
            torch.cuda.synchronize(device)
        return (clock() - start) / calls

    once = min(timed(1) for _ in range(warm))  # the first calls warm caches and allocators
    calls = max(1, math.ceil(s.window_s / max(once, 1e-7)))
    deadline = time.perf_counter() + s.budget_s
    times: list[float] = []
    while len(times) < 2 or (len(times) < s.windows and time.perf_counter() < deadline):
        times.append(timed(calls))
    return min(times)


def _gemm_call(g: Gemm, device: torch.device) -> Callable[[], torch.Tensor]:
    """The multiply with the operand layout nn.Linear's forward and autograd's backward use."""
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device)

    if g.role == "forward":
        x, w, b = r(g.m, g.k), r(g.n, g.k), r(g.n)
        return lambda: F.linear(x, w, b)
    if g.role == "input_grad":
        dy, w = r(g.m, g.k), r(g.k, g.n)
        return lambda: dy @ w
    dy, x = r(g.k, g.m), r(g.k, g.n)
    return lambda: dy.t() @ x


def random_images(n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 784, generator=g) < 0.13).float().to(device)  # MNIST's share of ink


def op_shares(fn: Callable[[], object], device: torch.device, calls: int = 3, top: int = 6) -> dict:
    """Where the time of ``fn`` goes, by torch.profiler self time (the profiler adds overhead
    to small ops, so their shares are upper bounds)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no "gpuGetDeviceCount failed" noise on CPU-only hosts
    cuda = device.type == "cuda"
    fn()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(calls):
            fn()
        if cuda:
            torch.cuda.synchronize(device)
    # On a GPU, an operator's device time is that of the kernels it launched; kernels are left out
    # as entries of their own so that nothing counts twice.
    own = {e.key: e.self_device_time_total if cuda else e.self_cpu_time_total for e in prof.key_averages()
           if e.device_type == DeviceType.CPU}
    total = sum(v for v in own.values() if v > 0)
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {"matmul_share": sum(v for k, v in own.items() if k in MATMUL_OPS) / total,
            "top_ops": [{"op": k, "share": v / total} for k, v in ranked], "ms_per_call": total / calls / 1e3}


# ------------------------------------------------------------------------- workloads

def train_step(model: VAE, opt: torch.optim.Optimizer | None, x: torch.Tensor) -> None:
    """One step as train.py takes it (full KL weight), with its one stats sync; ``opt`` None
    leaves out the update (gradients are still computed)."""
    terms = model.elbo(x, 1.0)
    loss = terms["loss"].mean()
    torch.stack([terms[k].detach().mean() for k in STAT_NAMES]).tolist()
    model.zero_grad(set_to_none=True)
    loss.backward()
    if opt is not None:
        opt.step()


def trainer(name: str, batch: int, optimizer: str, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build(name).to(device).train()
    if optimizer == COMPILED:
        model.elbo = torch.compile(model.elbo)
    opt = (None if optimizer == NO_UPDATE else
           torch.optim.Adam(model.parameters(), lr=get_preset("paper").lr,
                            **OPTIMIZERS[TRAINED_BY if optimizer == COMPILED else optimizer]))
    x = random_images(batch, device)
    return lambda: train_step(model, opt, x)


@dataclass(frozen=True)
class NllVariant:
    label: str
    chunk: int | None = None  # samples per pass; None: evaluate.py's choice
    inference: bool = False  # inference_mode around evaluate.py's no_grad
    compiled: bool | None = None  # None: as evaluate.py decides for the whole test set at S=5000


def nll_variants(s: Settings) -> list[NllVariant]:
    variants = [NllVariant("evaluate.py"), NllVariant("eager", compiled=False),
                NllVariant("chunk=S", chunk=s.nll_samples), NllVariant("inference_mode", inference=True)]
    return variants if s.compile else [replace(v, compiled=False) for v in variants]


def nll_pass(v: NllVariant, s: Settings, per_pass: int) -> tuple[int, int]:
    """(images, rows) of one importance_nll pass, split as it splits the work."""
    chunk = min(s.nll_samples, v.chunk or per_pass)
    return max(1, per_pass // chunk), chunk * max(1, per_pass // chunk)


def nll_runner(v: NllVariant, s: Settings, points: int, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build(MAIN_MODEL).to(device).eval()
    # The benchmark times a few images; evaluate.py's choice is the one for the projected test set.
    compiled = compiles_nll(model, TEST_SET * PAPER_SAMPLES) if v.compiled is None else v.compiled
    x = random_images(points, device)
    gen = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        with torch.inference_mode() if v.inference else nullcontext():
            importance_nll(model, x, s.nll_samples, chunk=v.chunk, generator=gen, compile=compiled)

    return run


def _max_rel_diff(a: list[dict], b: list[dict]) -> float:
    return max(abs(x["exact"] - y["exact"]) / abs(y["exact"]) for x, y in zip(a, b) if y["exact"] != 0)


def fisher_comparison(s: Settings, device: torch.device) -> dict:
    """Exact layer Fisher from per-example gradients, vectorised two ways (the hooks route that
    eval.json uses, and torch.func's vmap), against a loop over examples, on the same targets.
    Timed in float32. The routes agree to float32 rounding, which 11 layers amplify to
    1e-4..1e-3; ``max_rel_diff`` (the larger of the two vectorised routes' against the loop) is
    therefore taken in float64, where only a real discrepancy would show."""
    torch.manual_seed(0)
    model = build(MAIN_MODEL).to(device).eval()
    d = draw_targets(model, random_images(s.fisher_points, device), generator=torch.Generator(device).manual_seed(0))
    seconds, layers = {}, {}
    clock = time.thread_time if s.cpu_clock else time.perf_counter
    for path in ("func", "loop", "hooks"):
        for _ in range(2):  # the second run is timed: the first pays for fresh pages of the per-example grads
            start = clock()
            layers[path] = layer_fisher(model, d, path=path)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[path] = clock() - start
    model.double()
    d64 = replace(d, x=d.x.double(), z=d.z.double(), xt=d.xt.double(), ctx=d.ctx.double())
    loop64 = layer_fisher(model, d64, path="loop")
    return {"model": MAIN_MODEL, "points": s.fisher_points, "layers": len(layers["loop"]),
            "vectorised_s": seconds["func"], "loop_s": seconds["loop"], "hooks_s": seconds["hooks"],
            "speedup": seconds["loop"] / seconds["hooks"], "func_speedup": seconds["loop"] / seconds["func"],
            "max_rel_diff": max(_max_rel_diff(layer_fisher(model, d64, path=p), loop64) for p in ("hooks", "func")),
            "max_rel_diff_float32": max(_max_rel_diff(layers[p], layers["loop"]) for p in ("hooks", "func"))}


# ------------------------------------------------------------------------- make timings

def record_timing(target: str, seconds: float, root: Path = TIMINGS) -> Path:
    """Store the wall time of ``make TARGET`` (the Makefile calls this after a target)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", target):
        raise ValueError(f"target {target!r}: use a make target name (lower case, digits, '-')")
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    path = Path(root) / f"{target}.json"
    write_json(path, "timing", {"target": target, "seconds": round(float(seconds), 1), "provenance": provenance()})
    return path


def recorded_timings(root: Path = TIMINGS) -> dict[str, dict | None]:
    """The latest recorded time of each make target with its date, or None (not measured yet)."""
    found = {}
    for target in MAKE_TARGETS:
        try:
            doc = read_json(Path(root) / f"{target}.json", "timing", ("seconds",))
            found[target] = {"seconds": doc["seconds"], "recorded_at": doc["provenance"]["written_at"]}
        except ResultError:
            found[target] = None
    return found


def time_make_book(timings: Path = TIMINGS) -> float:
    """Run ``make book`` from the repository root, record and return its wall time."""
    start = time.perf_counter()
    subprocess.run(["make", "book"], cwd=REPO_ROOT, check=True)  # its output shows as it runs
    seconds = time.perf_counter() - start
    record_timing("book", seconds, timings)
    return seconds


# ------------------------------------------------------------------------- the machine

def machine_description(device: torch.device) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    desc = {"cpu": describe_device("cpu").split(" (")[0], "logical_cores": cores,
            "torch_threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(), "gpu": None}
    try:
        desc["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        desc["memory_gib"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        desc |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "tf32": torch.backends.cuda.matmul.allow_tf32}
    return desc


def machine_slug(desc: dict) -> str:
    """A file name from the hardware alone (no host name): GPU name, else CPU model + cores."""
    name = desc["gpu"] or f"{desc['cpu']} {desc['logical_cores']}cpu"
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)", "", name.lower())).strip("-")


def _load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


# ------------------------------------------------------------------------- the benchmark

def run_bench(device: str = "auto", quick: bool = False, out: str | Path = DEFAULT_RESULTS,
              threads: int | None = None, cpu_clock: bool = False, progress: bool = True,
              timings: Path = TIMINGS) -> tuple[Path, dict]:
    """Measure everything and write ``<out>/bench/<machine>.json`` (``-quick.json`` for
    ``quick``, so a test run never replaces a real one); returns its path and content."""
    start = time.perf_counter()
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if cpu_clock and (dev.type != "cpu" or torch.get_num_threads() != 1):
        raise ValueError("--cpu-clock times one thread's CPU time: use it with --threads 1 on the CPU")
    s = replace(QUICK if quick else FULL, cpu_clock=cpu_clock)
    load_start = _load_average()
    cfgs = {name: get_config(name) for name in MODELS}
    variants = nll_variants(s)
    per_pass = rows_per_pass(build(MAIN_MODEL), dev)
    passes = {v: nll_pass(v, s, per_pass) for v in variants}
    train_work = {(name, b): training_gemms(cfg, b) for name, cfg in cfgs.items() for b in s.batches}
    nll_work = {v: nll_gemms(cfgs[MAIN_MODEL], *passes[v]) for v in variants}
    shapes = sorted({g for w in [*train_work.values(), *nll_work.values()] for g in w},
                    key=lambda g: (g.role, g.m, g.k, g.n))
    n_train = len(MODELS) * (len(s.batches) * len(OPTIMIZERS) + 1) + s.compile
    bar = tqdm(total=len(shapes) + n_train + 1 + len(variants) + 1, desc="bench", unit="task", disable=not progress)

    # 1. the multiplies alone
    rates = {}
    for g in shapes:
        bar.set_description(f"GEMM {g.role} {g.m}x{g.k}x{g.n}")
        rates[g] = g.flops / best_time(_gemm_call(g, dev), dev, s)
        bar.update()
    ceilings = {key: ceiling(w, rates) for key, w in train_work.items()}
    best_ceiling = {name: max((ceilings[name, b], b) for b in s.batches) for name in MODELS}

    # 2. training
    def train_row(name: str, b: int, opt: str) -> dict:
        bar.set_description(f"train {name} b{b} {opt}")
        sec = best_time(trainer(name, b, opt, dev), dev, s, warm=2)  # the first step allocates Adam's state
        rate = flops(training_gemms(cfgs[name], 1)) * b / sec
        bar.update()
        return {"model": name, "batch": b, "optimizer": opt, "step_ms": sec * 1e3, "images_per_s": b / sec,
                "gflops": rate / 1e9, "fraction": rate / best_ceiling[name][0],
                "fraction_same_batch": rate / ceilings[name, b]}

    runs = [train_row(name, b, opt) for name in MODELS for b in s.batches for opt in OPTIMIZERS]
    runs += [train_row(name, s.batches[0], NO_UPDATE) for name in MODELS]
    if s.compile:
        runs.append(train_row(MAIN_MODEL, s.batches[0], COMPILED))
    models = {}
    for name in MODELS:
        mine = [r for r in runs if r["model"] == name]
        models[name] = {"ceiling_gflops": best_ceiling[name][0] / 1e9, "ceiling_batch": best_ceiling[name][1],
                        "first_batch": [r for r in mine if r["batch"] == s.batches[0]],
                        "best": max((r for r in mine if r["optimizer"] != NO_UPDATE), key=lambda r: r["images_per_s"])}
    bar.set_description("profile of a training step")
    profile = {"model": MAIN_MODEL, "batch": s.batches[0], "optimizer": TRAINED_BY,
               **op_shares(trainer(MAIN_MODEL, s.batches[0], TRAINED_BY, dev), dev)}
    bar.update()

    # 3. importance-sampled NLL
    fm = flop_model(cfgs[MAIN_MODEL])
    nll_ceiling = max(ceiling(w, rates) for w in nll_work.values())
    nll_rows = []
    for v in variants:
        bar.set_description(f"NLL {v.label}")
        points = max(s.nll_points, passes[v][0])
        run = nll_runner(v, s, points, dev)
        first = time.perf_counter()
        run()  # compiles, when compiled
        first = time.perf_counter() - first  # wall clock always: compiling uses worker processes
        sec = best_time(run, dev, s, warm=1)
        rate = points * (s.nll_samples * fm["nll_per_sample"] + fm["nll_per_image"]) / sec
        nll_rows.append({"variant": v.label, "images_per_pass": passes[v][0], "rows_per_pass": passes[v][1],
                         "samples_per_s": points * s.nll_samples / sec, "gflops": rate / 1e9,
                         "fraction": rate / nll_ceiling, "fraction_same_rows": rate / ceiling(nll_work[v], rates),
                         "first_call_s": first})
        bar.update()
    best_nll = max(nll_rows, key=lambda r: r["samples_per_s"])
    nll = {"model": MAIN_MODEL, "samples": s.nll_samples, "ceiling_gflops": nll_ceiling / 1e9, "runs": nll_rows,
           "best": best_nll, "projected": {"images": TEST_SET, "samples": PAPER_SAMPLES,
                                          "evaluate_py_s": TEST_SET * PAPER_SAMPLES / nll_rows[0]["samples_per_s"],
                                          "best_s": TEST_SET * PAPER_SAMPLES / best_nll["samples_per_s"]}}

    # 4. per-example Fisher
    bar.set_description("Fisher: vectorised, loop, hooks")
    fisher = fisher_comparison(s, dev)
    bar.update()
    bar.close()

    first = {r["optimizer"]: r for r in models[MAIN_MODEL]["first_batch"]}
    as_trained, no_update = first[TRAINED_BY], first[NO_UPDATE]
    best_first = max((r for r in first.values() if r is not no_update), key=lambda r: r["fraction"])
    desc = machine_description(dev)
    doc = {
        "machine": machine_slug(desc), "machine_description": desc, "device": str(dev), "quick": quick,
        "settings": asdict(s), "provenance": provenance(device=str(dev)),
        "load_average": {"start": load_start, "end": _load_average()},
        "flop_model": {name: flop_model(cfg) for name, cfg in cfgs.items()},
        "gemm": {"peak_gflops": max(rates.values()) / 1e9,
                 "shapes": [{**asdict(g), "gflops": rates[g] / 1e9} for g in shapes],
                 "ceilings": [{"model": n, "batch": b, "gflops": c / 1e9} for (n, b), c in ceilings.items()]},
        "training": {"runs": runs, "models": models, "profile": profile},
        "nll": nll,
        "fisher": fisher,
        "make": recorded_timings(timings),
        "targets": {
            "training": {"what": f"{MAIN_MODEL} training at batch {s.batches[0]}", "target": TARGET,
                         "as_trained": as_trained["fraction"], "best_variant": best_first["optimizer"],
                         "best": best_first["fraction"],
                         # What stands in the way: the fraction with the update left out, and the
                         # update's share of a step as train.py takes it.
                         "without_update": no_update["fraction"],
                         "update_share": 1 - no_update["step_ms"] / as_trained["step_ms"]},
            "nll": {"what": f"{MAIN_MODEL} importance-sampled NLL", "target": TARGET,
                    "as_trained": nll_rows[0]["fraction"], "best_variant": best_nll["variant"],
                    "best": best_nll["fraction"]},
        },
    }
    doc["warnings"], trusted = noise_warnings(doc)
    for tg in doc["targets"].values():
        tg["met"] = tg["best"] >= TARGET if trusted else None  # None: too noisy to say
    doc["total_s"] = time.perf_counter() - start
    path = Path(out) / "bench" / f"{doc['machine']}{'-quick' * quick}.json"
    write_json(path, "bench", doc)
    return path, doc


def noise_warnings(doc: dict) -> tuple[list[str], bool]:
    """Signs that other work competed for the machine while it was measured, and whether the
    fractions can still be trusted (the CPU-time clock discounts a busy machine)."""
    found = []
    cores = doc["machine_description"]["logical_cores"]
    busiest = max((load[0] for load in doc["load_average"].values() if load), default=0.0)
    if doc["device"] == "cpu" and busiest > cores:
        effect = ("the CPU-time clock discounts it, but caches and memory bandwidth were shared"
                  if doc["settings"]["cpu_clock"] else
                  "rates are lower bounds and fractions unreliable: re-run on a quiet machine (or with --threads 1 "
                  "--cpu-clock)")
        found.append(f"busy machine: load average up to {busiest:.1f} on {cores} cores, other work competed; {effect}")
    fractions = [r["fraction"] for r in [*doc["training"]["runs"], *doc["nll"]["runs"]]]
    if over := sum(f > 1.05 for f in fractions):
        found.append(f"{over} of {len(fractions)} fractions exceed 1: the multiplies alone ran slower than inside "
                     "the workloads, i.e. the machine was busier while the ceiling was measured")
    return found, not over and (not found or doc["settings"]["cpu_clock"])


# ------------------------------------------------------------------------- reading and showing

REQUIRED = ("machine", "machine_description", "device", "quick", "flop_model", "gemm", "training", "nll", "fisher",
            "make", "targets", "warnings", "total_s")


def read_bench(path: Path) -> dict:
    return read_json(path, "bench", REQUIRED, fix="run `scvae bench` on that machine")


def load_benches(results_dir: str | Path) -> list[dict]:
    """Every machine's full benchmark under ``results_dir/bench`` (quick test runs left out)."""
    docs = [read_bench(p) for p in sorted(Path(results_dir, "bench").glob("*.json"))]
    return [d for d in docs if not d["quick"]]


def headline(doc: dict) -> dict[str, float]:
    """The fractions of the ceiling the book's chart compares across machines."""
    t, first = doc["training"]["models"], doc["settings"]["batches"][0]
    bars = {}
    for name, m in t.items():
        trained = next(r for r in m["first_batch"] if r["optimizer"] == TRAINED_BY)
        bars[f"train {name} b{first} (train.py)"] = trained["fraction"]
        bars[f"train {name}, fastest"] = m["best"]["fraction"]
    bars["NLL (evaluate.py)"] = doc["nll"]["runs"][0]["fraction"]
    bars["NLL, fastest variant"] = doc["nll"]["best"]["fraction"]
    return bars


def _rate(r: dict, unit: str) -> str:
    return f"{r[unit + '_per_s']:,.0f} {unit}/s ({r['fraction']:.2f})"


def comparison_rows(docs: list[dict]) -> list[tuple[str, list[str]]]:
    """(measure, one cell per machine) for the book's side-by-side table; fractions of the
    ceiling in parentheses."""
    def cell(doc: dict, get: Callable[[dict], str]) -> str:
        try:
            return get(doc)
        except (KeyError, StopIteration):  # a measure this machine's file lacks
            return "—"

    def train(name: str, optimizer: str | None) -> Callable[[dict], str]:
        def get(doc: dict) -> str:
            m = doc["training"]["models"][name]
            if optimizer is None:
                return f"{_rate(m['best'], 'images')} at b{m['best']['batch']}, {m['best']['optimizer']}"
            return _rate(next(r for r in m["first_batch"] if r["optimizer"] == optimizer), "images")
        return get

    def make(target: str) -> Callable[[dict], str]:
        def get(doc: dict) -> str:
            rec = doc["make"][target]
            return f"{rec['seconds']:.0f} s ({rec['recorded_at'][:10]})" if rec else "not measured yet"
        return get

    b = FULL.batches[0]
    measures: list[tuple[str, Callable[[dict], str]]] = [
        ("device", lambda d: f"{d['provenance']['device_name']} [{d['device']}"
                             + (", one thread's CPU time]" if d["settings"]["cpu_clock"] else "]")),
        ("measured", lambda d: f"{d['provenance']['written_at'][:10]}, {d['provenance']['git_revision'][:10]}"),
        ("load average at start (1 min)", lambda d: f"{d['load_average']['start'][0]:.1f}"),
        ("GEMM: fastest single shape", lambda d: f"{d['gemm']['peak_gflops']:.1f} GFLOP/s"),
        *((f"{name} training ceiling", lambda d, n=name: f"{d['training']['models'][n]['ceiling_gflops']:.1f} "
           f"GFLOP/s (b{d['training']['models'][n]['ceiling_batch']})") for name in MODELS),
        *((f"train {name} b{b}, {opt}", train(name, opt)) for name in MODELS for opt in (*OPTIMIZERS, NO_UPDATE, COMPILED)),
        *((f"train {name}, fastest", train(name, None)) for name in MODELS),
        ("NLL, evaluate.py", lambda d: _rate(d["nll"]["runs"][0], "samples")),
        ("NLL, fastest variant", lambda d: f"{_rate(d['nll']['best'], 'samples')}, {d['nll']['best']['variant']}"),
        ("NLL of the test set at S=5000 (projected)",
         lambda d: f"{d['nll']['projected']['evaluate_py_s'] / 60:.0f} min "
                   f"({d['nll']['projected']['best_s'] / 60:.0f} min fastest)"),
        ("Fisher: vectorised (hooks) vs loop", lambda d: f"speed-up {d['fisher']['speedup']:.1f}x, max rel. "
                                                       f"diff {d['fisher']['max_rel_diff']:.0e} (float64)"),
        *((f"make {t}", make(t)) for t in MAKE_TARGETS),
        ("scvae bench itself", lambda d: f"{d['total_s']:.0f} s"),
        ("warnings (below)", lambda d: str(len(d["warnings"]))),
    ]
    return [(label, [cell(d, get) for d in docs]) for label, get in measures]


def comparison_text(docs: list[dict]) -> str:
    """The side-by-side table as aligned text (the book check admits only its own HTML
    tables on notebook pages), then each machine's warnings."""
    rows = [("measure", [d["machine"] for d in docs]), *comparison_rows(docs)]
    widths = [max(len(r[0]) for r in rows)] + [max(len(r[1][i]) for r in rows) for i in range(len(docs))]
    lines = ["  ".join(c.ljust(w) for c, w in zip([label, *cells], widths)).rstrip() for label, cells in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{d['machine']}: WARNING: {w}" for d in docs for w in d["warnings"]]
    return "\n".join(lines)


def fraction_figure(docs: list[dict]) -> Figure:
    """Grouped bars: each headline fraction of the ceiling, one bar per machine, target line."""
    from matplotlib.figure import Figure

    from . import plots  # noqa: F401  (on import it teaches IPython to show Figures as PNG)

    labels = list(dict.fromkeys(k for d in docs for k in headline(d)))
    fig = Figure(figsize=(9, 0.5 * len(labels) * max(1, len(docs) / 2) + 1.5), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(docs)
    for i, d in enumerate(docs):
        values = headline(d)
        ax.barh([j + i * height for j in range(len(labels))], [values.get(k, 0.0) for k in labels],
                height=height, label=d["machine"])
    ax.set_yticks([j + height * (len(docs) - 1) / 2 for j in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.axvline(TARGET, color="k", linestyle="--", linewidth=1, label=f"target {TARGET}")
    ax.set_xlabel("fraction of the float32 GEMM ceiling")
    ax.legend(loc="lower right")
    fig.suptitle("Throughput as a fraction of each machine's matrix-multiply ceiling")
    return fig


def format_table(doc: dict) -> str:
    """The short table ``scvae bench`` prints."""
    n, f, prof = doc["nll"], doc["fisher"], doc["training"]["profile"]
    lines = [f"{doc['machine']}: {doc['provenance']['device_name']} on {doc['device']}"
             + (", timed by one thread's CPU time" if doc["settings"]["cpu_clock"] else "")
             + (" (QUICK: test sizes, the numbers mean nothing)" if doc["quick"] else ""),
             f"load average (1, 5, 15 min) at start {doc['load_average']['start']}, end {doc['load_average']['end']}",
             f"GEMM: fastest single shape {doc['gemm']['peak_gflops']:.1f} GFLOP/s",
             f"{'workload':40s} {'rate':>19s} {'GFLOP/s':>8s} {'ceiling':>8s} {'fraction':>8s}"]
    for name, m in doc["training"]["models"].items():
        for r in m["first_batch"] + [m["best"]]:
            label = f"train {name} b{r['batch']} {r['optimizer']}" + (" (best)" if r is m["best"] else "")
            lines.append(f"{label:40s} {r['images_per_s']:>13,.0f} img/s {r['gflops']:8.1f} "
                         f"{m['ceiling_gflops']:8.1f} {r['fraction']:8.2f}")
    for r in n["runs"]:
        lines.append(f"{'NLL ' + n['model'] + ' S=' + str(n['samples']) + ' ' + r['variant']:40s} "
                     f"{r['samples_per_s']:>9,.0f} samples/s {r['gflops']:8.1f} {n['ceiling_gflops']:8.1f} "
                     f"{r['fraction']:8.2f}")
    p = n["projected"]
    lines += [f"NLL of all {p['images']:,} test images at S={p['samples']}: {p['evaluate_py_s'] / 60:.0f} min with "
              f"evaluate.py, {p['best_s'] / 60:.0f} min with the best variant",
              f"Fisher {f['model']}, {f['points']} points: loop over examples {f['loop_s']:.2f} s, vectorised "
              f"hooks {f['hooks_s']:.2f} s (speed-up {f['speedup']:.1f}x), torch.func vmap {f['vectorised_s']:.2f} s "
              f"({f['func_speedup']:.1f}x); max relative difference to the loop {f['max_rel_diff']:.1e} in float64, "
              f"{f['max_rel_diff_float32']:.1e} in float32",
              f"profile of train {prof['model']} b{prof['batch']} {prof['optimizer']}: matmul "
              f"{prof['matmul_share']:.0%}; " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in prof["top_ops"][:5])]
    for target, rec in doc["make"].items():
        lines.append(f"make {target}: " + (f"{rec['seconds']:.0f} s (recorded {rec['recorded_at']})" if rec
                                           else "not measured yet"))
    for tg in doc["targets"].values():
        lines.append(f"target: {tg['what']} >= {tg['target']} of the ceiling: {tg['as_trained']:.2f} as the code runs "
                     f"it, {tg['best']:.2f} with {tg['best_variant']} "
                     f"({VERDICTS[tg['met']]})")
        if "without_update" in tg:
            lines.append(f"  in the way: the parameter update takes {tg['update_share']:.0%} of a step; without it "
                         f"the step reaches {tg['without_update']:.2f} of the ceiling")
    lines += [f"WARNING: {w}" for w in doc["warnings"]]
    lines.append(f"total {doc['total_s']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m scvae_core.bench ...` is `scvae bench ...` (the Makefile uses it)
    from .cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
