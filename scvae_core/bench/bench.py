"""``scvae bench``: how close training and importance-sampled NLL come to what this machine can
do. Writes ``results/bench/<machine>.json`` (kind ``bench``); the book's performance appendix
(``bench_tables.py``) shows every machine's file side by side. It needs no data: images are
random binary (timing does not depend on pixel values) and models are freshly initialised.
This module only measures.

FLOP model. Only matrix multiplies and convolutions count. A linear layer in -> out costs per
row (image, importance sample or pseudo-input) 2*in*out forward, and backward 2*in*out for the
weight gradient plus 2*in*out for the input gradient, except where the input is the data (x
needs no gradient; the VampPrior's pseudo-inputs do). A convolution costs 2*28*28*c_in*c_out*k*k
per row and role (masked weights are multiplied all the same). The VampPrior adds the encoder
on its K pseudo-inputs once per training step (with the backward) or once per NLL call, and log
p(z) as a (rows x 2D) @ (2D x K) product (``models.log_mean_normal_diag``).

Ceilings. Every multiply and convolution a workload does (shape and layout as nn.Linear,
autograd and the model issue them) is timed alone; its rate is the best, over several windows
of back-to-back calls, of the window's mean ("best sustained": noise only slows). A workload's
ceiling is the rate it would reach doing nothing but these, each at its own rate:
    ceiling = sum_i flops_i / sum_i (flops_i / rate_i)   (a FLOP-weighted harmonic mean).

Roofline. A training step also streams memory: the fused Adam update reads and writes 28 bytes
per parameter, and every activation is read and written forward and backward (``step_bytes``).
The machine's bandwidth is measured by a triad (a = b + 2c) at each workload's sizes, so the
roofline time of a step is
    sum_i flops_i / rate_i + update bytes / bandwidth(parameters) + activation bytes / bandwidth(activations).
Training targets are fractions of that time; where one is missed the output names the parts,
and the per-operator floor: the same step with every width cut to 8 and batch 1 (what the
framework costs per operator, whatever the sizes).

train.py trains with fused Adam; evaluate.py compiles log p(x|z) for NLL workloads large
enough to repay the compile. The other variants (plain Adam, no update at all, a compiled
training step, inference_mode, other NLL pass sizes, channels-last PixelCNN maps) measure what a
change would buy, or what stands in the way of a target; they change nothing elsewhere.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import timing
from .bench_tables import BUSY_CORES, INCONCLUSIVE
from ..evaluate import compiles_nll, importance_nll, rows_per_pass
from ..fisher import draw_targets, layer_fisher
from ..models import IMAGE_SIDE, VAE, X_DIM, ModelConfig, count_parameters, log_bernoulli_logits
from ..presets import get_preset
from ..results import DEFAULT_RESULTS_DIR, REPO_ROOT, describe_device, provenance, write_json
from ..train import STAT_NAMES, resolve_device
from ..zoo import build, get_config

MODELS = ("vae-1l", "scvae")  # the MLP workloads: batch sweep, optimizer variants, roofline
MAIN_MODEL = "scvae"  # the NLL variants, the Fisher comparison and the profile are on it
VAMP, VAMP_BASE = "vae-1l+vamp", "vae-1l"  # the VampPrior against the standard prior, same network
PIXEL = "pixelvae"
EPOCH = 50_000  # training images per epoch (binarized MNIST's training split)
TEST_SET, PAPER_SAMPLES = 10000, 5000  # the projected NLL run: the whole test set at S = 5000
NO_INPUT_GRAD = ("encoder.mlp.layers.0", "decoder.pixelcnn.first_x")  # fed by the data
# What is aimed at (issue 18): (what, value, "at least" | "at most").
TARGETS = {
    "training": ("{m} training at batch {b}: fraction of its roofline", 0.8, "at least"),
    "nll": (f"{MAIN_MODEL} importance-sampled NLL: fraction of its GEMM ceiling", 0.85, "at least"),
    "vamp_nll": (f"{VAMP} NLL time per image / {VAMP_BASE}'s", 1.3, "at most"),
    # half the 18 s per epoch of the published VampPrior code, measured on a 2-core Xeon (issue 18)
    "vamp_epoch": (f"{VAMP} training at batch {{b}}: seconds per {EPOCH:,}-image epoch", 9.0, "at most"),
    "pixel_training": (f"{PIXEL} training at batch {{b}}: fraction of its convolution ceiling", 0.7, "at least"),
}
TIMINGS = timing.TIMINGS  # `make` records its targets' wall times here
# train.py's Adam as it is, and the fused kernel (one pass over weights, grads and moments).
OPTIMIZERS = {"adam": {}, "adam-fused": {"fused": True}}
TRAINED_BY = "adam-fused"  # what train.py uses
# Forward and backward with no parameter update: not a way to train, but the measure of what
# the update costs.
NO_UPDATE = "no-update"
# train.py's step with the ELBO through torch.compile, which fuses its elementwise work (tanh,
# skip additions, the Bernoulli and Gaussian densities).
COMPILED = "adam-fused+compiled"
CHANNELS_LAST = "adam-fused+channels-last"  # the PixelCNN's maps channels-last (NHWC) instead of NCHW
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
              "aten::convolution_backward")
# Bytes a training step streams beside its multiplies (float32; forward and backward together):
ADAM_BYTES = 28  # per parameter, fused Adam: reads weight, gradient and two moments, writes three
ACT_BYTES = 20  # per activation element: forward reads and writes (8), backward reads two, writes one (12)
SKIP_BYTES = 24  # per element of a skip or residual addition: forward 12, gradient accumulation 12
BIAS_BYTES = 4  # per output element of a layer: its bias gradient reads it once
LOSS_BYTES = 28  # per pixel: the Bernoulli log-likelihood reads logits and x, writes (12), backward 16
LATENT_BYTES = 120  # per latent unit: sampling, the Gaussian densities or KL, forward and backward
MIXTURE_BYTES = 72  # per (row, component) of the VampPrior's log p(z): six passes of 12 bytes
FLOOR_WIDTH = 8  # the per-operator floor: the same layers at this width, batch 1


@dataclass(frozen=True)
class Settings:
    batches: tuple[int, ...] = (100, 250, 500, 1000)  # the first is the targets' batch
    # A time is the best mean over windows of back-to-back calls lasting >= window_s: up to
    # ``windows`` of them, fewer once a measurement has taken budget_s (at least two). Short
    # windows and many of them: on a shared machine some window is likely to run undisturbed.
    window_s: float = 0.05
    windows: int = 10
    budget_s: float = 2.0
    nll_samples: int = PAPER_SAMPLES  # S of the timed NLL runs
    nll_points: int = 4  # test images per timed NLL call (at least one full pass)
    pixel_samples: int = 1024  # S of the PixelCNN's timed NLL (one image)
    pixel_chunk: int = 1024  # the larger pass tried against evaluate.py's
    fisher_points: int = 32
    compile: bool = True  # also time training and the NLL through torch.compile (seconds of compiling)
    # Time by the thread's CPU time instead of the wall clock: with one thread, a shared
    # machine's other work then barely shows (it measures a core's efficiency, not latency).
    cpu_clock: bool = False


FULL = Settings()
QUICK = Settings(batches=(8, 16), window_s=0.005, windows=2, budget_s=0.05, nll_samples=16, nll_points=2,
                 pixel_samples=8, pixel_chunk=4, fisher_points=4, compile=False)


# ------------------------------------------------------------------------- FLOP and byte model

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


@dataclass(frozen=True)
class Conv:
    """One k x k convolution of ``rows`` 28 x 28 maps, c_in -> c_out channels, in one role."""

    role: str  # "forward" | "input_grad" | "weight_grad"
    rows: int
    c_in: int
    c_out: int
    k: int

    @property
    def flops(self) -> int:
        return 2 * self.rows * X_DIM * self.c_in * self.c_out * self.k * self.k


Op = Gemm | Conv


def linear_shapes(cfg: ModelConfig) -> list[tuple[str, int, int]]:
    """(name, in, out) of every linear layer, encoder first."""
    return [(name, m.in_features, m.out_features) for name, m in VAE(cfg).linear_layers().items()
            if isinstance(m, nn.Linear)]


def conv_shapes(cfg: ModelConfig) -> list[tuple[str, int, int, int]]:
    """(name, c_in, c_out, k) of every PixelCNN convolution (none for an MLP decoder)."""
    return [(name, m.in_channels, m.out_channels, m.kernel_size[0]) for name, m in VAE(cfg).linear_layers().items()
            if isinstance(m, nn.Conv2d)]


def _linear(rows: int, n_in: int, n_out: int, input_grad: bool, backward: bool = True) -> list[Gemm]:
    ops = [Gemm("forward", rows, n_in, n_out)]
    if backward:
        ops.append(Gemm("weight_grad", n_out, rows, n_in))
        if input_grad:
            ops.append(Gemm("input_grad", rows, n_out, n_in))
    return ops


def training_ops(cfg: ModelConfig, batch: int) -> list[Op]:
    """Every multiply and convolution of one training step at ``batch``."""
    ops: list[Op] = []
    for name, n_in, n_out in linear_shapes(cfg):
        ops += _linear(batch, n_in, n_out, name not in NO_INPUT_GRAD)
    for name, c_in, c_out, k in conv_shapes(cfg):
        ops += [Conv(role, batch, c_in, c_out, k) for role in ("forward", "weight_grad", "input_grad")
                if role != "input_grad" or name not in NO_INPUT_GRAD]
    if cfg.prior == "vamp":
        for name, n_in, n_out in linear_shapes(cfg):
            if name.startswith("encoder"):  # on the pseudo-inputs, which learn: every input gradient
                ops += _linear(cfg.pseudo_inputs, n_in, n_out, True)
        ops += _linear(batch, 2 * cfg.latent, cfg.pseudo_inputs, True)  # log p(z): [z^2, z] @ weights^T
    return ops


def nll_ops(cfg: ModelConfig, points: int, rows: int, passes: int = 1) -> list[Op]:
    """``passes`` NLL passes (the encoder on ``points`` images, the decoder and log p(z) on
    ``rows`` samples), and the VampPrior's pseudo-inputs encoded once for the call."""
    one: list[Op] = []
    for name, n_in, n_out in linear_shapes(cfg):
        one += _linear(points if name.startswith("encoder") else rows, n_in, n_out, False, backward=False)
    one += [Conv("forward", rows, c_in, c_out, k) for _, c_in, c_out, k in conv_shapes(cfg)]
    if cfg.prior == "vamp":
        one.append(Gemm("forward", rows, 2 * cfg.latent, cfg.pseudo_inputs))
    ops = one * passes
    if cfg.prior == "vamp":
        ops += [Gemm("forward", cfg.pseudo_inputs, n_in, n_out) for name, n_in, n_out in linear_shapes(cfg)
                if name.startswith("encoder")]
    return ops


def flops(ops: list[Op]) -> int:
    return sum(op.flops for op in ops)


def flop_model(cfg: ModelConfig) -> dict[str, int]:
    """FLOPs per training image and per step (the VampPrior's pseudo-inputs), per importance
    sample (decoder, log p(z)), per NLL image (encoder) and per NLL call (pseudo-inputs).
    The counts are linear in the sizes, so two sizes give both parts."""
    t1, t2 = flops(training_ops(cfg, 1)), flops(training_ops(cfg, 2))
    base = flops(nll_ops(cfg, 1, 1))
    return {"train_per_image": t2 - t1, "train_per_step": 2 * t1 - t2,
            "nll_per_sample": flops(nll_ops(cfg, 1, 2)) - base, "nll_per_image": flops(nll_ops(cfg, 2, 1)) - base,
            "nll_per_call": 3 * base - flops(nll_ops(cfg, 1, 2)) - flops(nll_ops(cfg, 2, 1))}


def ceiling(ops: list[Op], rates: dict[Op, float]) -> float:
    """FLOP/s if the workload did nothing but its multiplies, each at its measured rate."""
    return flops(ops) / sum(op.flops / rates[op] for op in ops)


def step_bytes(cfg: ModelConfig, batch: int) -> dict[str, int]:
    """Bytes a training step streams beside its multiplies: the Adam update, and activations
    (per element, the constants above; the VampPrior's pseudo-inputs per step)."""
    def per_row(side: str) -> int:
        n = 0
        for name, _, n_out in linear_shapes(cfg):
            if not name.startswith(side):
                continue
            n += BIAS_BYTES * n_out
            if ".mlp.layers." in name:
                n += ACT_BYTES * n_out
                skip = getattr(cfg, f"{side[:3]}_skip")
                last = name.endswith(f".{(cfg.enc_depth if side == 'encoder' else cfg.dec_depth) - 1}")
                n += SKIP_BYTES * n_out * (skip == "short" or (skip == "long" and last))
        return n

    rows = per_row("encoder") + per_row("decoder") + LOSS_BYTES * X_DIM + LATENT_BYTES * cfg.latent
    for name, _, c_out, _ in conv_shapes(cfg):  # relu and the residual (first: the sum of two convolutions)
        rows += X_DIM * c_out * (BIAS_BYTES + (ACT_BYTES + SKIP_BYTES) * (name.split(".")[-1] != "out"))
    activations = batch * rows
    if cfg.prior == "vamp":
        activations += cfg.pseudo_inputs * (per_row("encoder") + ACT_BYTES * X_DIM) \
            + batch * cfg.pseudo_inputs * MIXTURE_BYTES
    return {"update": ADAM_BYTES * count_parameters(VAE(cfg)), "activations": activations}


def activation_elements(cfg: ModelConfig, batch: int) -> int:
    """The size of a typical activation tensor (the triad's size for its bandwidth)."""
    return batch * (cfg.pixel_channels * X_DIM if cfg.decoder == "pixelcnn" else cfg.hidden)


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


def _op_call(op: Op, device: torch.device) -> Callable[[], torch.Tensor]:
    """The operation with the operand layout nn.Linear, autograd and the PixelCNN (NCHW) use."""
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device)

    if isinstance(op, Conv):
        x, w, b = r(op.rows, op.c_in, IMAGE_SIDE, IMAGE_SIDE), r(op.c_out, op.c_in, op.k, op.k), r(op.c_out)
        pad = op.k // 2
        if op.role == "forward":
            return lambda: F.conv2d(x, w, b, padding=pad)
        dy = r(op.rows, op.c_out, IMAGE_SIDE, IMAGE_SIDE)
        mask = [True, False, False] if op.role == "input_grad" else [False, True, True]
        return lambda: torch.ops.aten.convolution_backward(dy, x, w, [op.c_out], [1, 1], [pad, pad], [1, 1], False,
                                                           [0, 0], 1, mask)
    if op.role == "forward":
        x, w, b = r(op.m, op.k), r(op.n, op.k), r(op.n)
        return lambda: F.linear(x, w, b)
    if op.role == "input_grad":
        dy, w = r(op.m, op.k), r(op.k, op.n)
        return lambda: dy @ w
    dy, x = r(op.k, op.m), r(op.k, op.n)
    return lambda: dy.t() @ x


def triad_bandwidth(elements: int, device: torch.device, s: Settings) -> float:
    """Bytes per second of a = b + 2c on float32 arrays of ``elements`` (12 bytes per element)."""
    a, b, c = (torch.rand(elements, device=device) for _ in range(3))
    return 12 * elements / best_time(lambda: torch.add(b, c, alpha=2.0, out=a), device, s)


def random_images(n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, X_DIM, generator=g) < 0.13).float().to(device)  # MNIST's share of ink


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


def trainer(cfg: ModelConfig, batch: int, variant: str, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    model = VAE(cfg).to(device).train()
    if variant == COMPILED:
        model.elbo = torch.compile(model.elbo)
    if variant == CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    optimizer = TRAINED_BY if variant in (COMPILED, CHANNELS_LAST) else variant
    opt = None if variant == NO_UPDATE else torch.optim.Adam(model.parameters(), lr=get_preset("paper").lr,
                                                               **OPTIMIZERS[optimizer])
    x = random_images(batch, device)
    return lambda: train_step(model, opt, x)


def likelihood_step(batch: int, device: torch.device) -> Callable[[], None]:
    """The Bernoulli log-likelihood of ``batch`` images alone, forward and backward, as the
    ELBO computes it (models.log_bernoulli_logits): elementwise work the roofline counts as
    bytes, timed to show what its transcendentals cost."""
    x = random_images(batch, device)
    logits = torch.randn(batch, X_DIM, device=device, requires_grad=True)
    return lambda: log_bernoulli_logits(x, logits).sum().backward()


def hidden_elementwise(rows: int, width: int, device: torch.device) -> Callable[[], None]:
    """One hidden layer's elementwise work in an NLL pass, as SkipMLP does it: tanh, then the
    skip's addition, over ``rows`` x ``width`` activations (no GEMM: what the ceiling leaves out)."""
    h = torch.randn(rows, width, device=device)
    return lambda: torch.tanh(h) + h


def floor_config(cfg: ModelConfig) -> ModelConfig:
    """The same layers and operators with every width cut to FLOOR_WIDTH (the per-operator floor)."""
    return replace(cfg, hidden=FLOOR_WIDTH, latent=2, pseudo_inputs=2, pixel_channels=2)


@dataclass(frozen=True)
class NllVariant:
    label: str
    model: str = MAIN_MODEL
    chunk: int | None = None  # samples per pass; None: evaluate.py's choice
    inference: bool = False  # inference_mode around evaluate.py's no_grad
    compiled: bool | None = None  # None: as evaluate.py decides for the whole test set at S=5000
    samples: int | None = None  # None: Settings.nll_samples
    points: int | None = None  # images per timed call; None: Settings.nll_points


def nll_variants(s: Settings) -> list[NllVariant]:
    variants = [NllVariant("evaluate.py"), NllVariant("eager", compiled=False),
                NllVariant("chunk=S", chunk=s.nll_samples), NllVariant("inference_mode", inference=True),
                NllVariant("evaluate.py", model=VAMP_BASE), NllVariant("evaluate.py", model=VAMP),
                NllVariant("evaluate.py", model=PIXEL, samples=s.pixel_samples, points=1),
                NllVariant(f"chunk={s.pixel_chunk}", model=PIXEL, chunk=s.pixel_chunk, samples=s.pixel_samples,
                           points=1)]
    return variants if s.compile else [replace(v, compiled=False) for v in variants]


def nll_pass(v: NllVariant, s: Settings, per_pass: int) -> tuple[int, int]:
    """(images, rows) of one importance_nll pass, split as it splits the work."""
    samples = v.samples or s.nll_samples
    chunk = min(samples, v.chunk or per_pass)
    return max(1, per_pass // chunk), chunk * max(1, per_pass // chunk)


def nll_runner(v: NllVariant, s: Settings, points: int, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    model = VAE(get_config(v.model)).to(device).eval()
    # The benchmark times a few images; evaluate.py's choice is the one for the projected test set.
    compiled = compiles_nll(model, TEST_SET * PAPER_SAMPLES) if v.compiled is None else v.compiled
    x = random_images(points, device)
    gen = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        with torch.inference_mode() if v.inference else nullcontext():
            importance_nll(model, x, v.samples or s.nll_samples, chunk=v.chunk, generator=gen, compile=compiled)

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


def time_make_book(timings: Path = TIMINGS) -> float:
    """Run ``make book`` from the repository root, record and return its wall time."""
    start = time.perf_counter()
    subprocess.run(["make", "book"], cwd=REPO_ROOT, check=True)  # its output shows as it runs
    seconds = time.perf_counter() - start
    timing.record("book", seconds, timings)
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


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, including time the hypervisor stole; this
    process's CPU seconds; wall clock), or None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.perf_counter()


def other_work(before: tuple | None, after: tuple | None) -> dict | None:
    """The mean number of cores that other work (other processes, stolen time) kept busy between
    two snapshots. The load average cannot tell: it lags by a minute, so it still shows work
    paused just before the bench, and counts the bench itself."""
    if before is None or after is None:
        return None
    wall = after[2] - before[2]
    others = max(0.0, (after[0] - before[0]) - (after[1] - before[1]))
    return {"core_seconds": round(others, 2), "wall_s": round(wall, 2), "cores": round(others / wall, 3)}


# ------------------------------------------------------------------------- the benchmark

class _Bench:
    """One bench: its settings, device, workloads and progress bar. Each section of the bench is
    one method, called by :func:`run_bench` in order (the order is part of the measurement:
    compiled work comes last), and keeps what later sections read as attributes:
    ``ops`` the rates, bandwidths and ceilings; ``training`` the training rows, roofline, model
    summaries and profile; ``nll`` the NLL rows, ceiling and summary."""

    def __init__(self, s: Settings, dev: torch.device, quick: bool, progress: bool):
        self.s, self.dev = s, dev
        self.b0 = b0 = s.batches[0]
        self.cfgs = cfgs = {name: get_config(name) for name in (*MODELS, VAMP, PIXEL)}
        plan = [(n, b, o) for n in MODELS for b in s.batches for o in OPTIMIZERS]
        plan += [(n, b0, NO_UPDATE) for n in MODELS]
        self.plan = plan + [(VAMP, b0, TRAINED_BY), (PIXEL, b0, TRAINED_BY), (PIXEL, b0, CHANNELS_LAST)]
        # Compiled work last: after a process's first torch.compile, eager log1p (hence the Bernoulli
        # log-likelihood) was measured 7-15x faster, which would flatter every eager row after it.
        self.compiled_plan = [(n, b0, COMPILED) for n in MODELS if s.compile]
        self.roofed = (*MODELS, VAMP, PIXEL)  # the models whose step is set against its roofline
        self.variants = variants = nll_variants(s)
        self.passes = passes = {v: nll_pass(v, s, rows_per_pass(VAE(cfgs[v.model]), dev)) for v in variants}
        self.points = points = {v: max(v.points or s.nll_points, passes[v][0]) for v in variants}
        self.nll_work = {v: nll_ops(cfgs[v.model], *passes[v], max(1, round(points[v] * (v.samples or s.nll_samples)
                                                                             / passes[v][1])))
                         for v in variants}
        self.train_work = {(n, b): training_ops(cfgs[n], b) for n, b, _ in self.plan + self.compiled_plan}
        self.shapes = sorted({op for w in [*self.train_work.values(), *self.nll_work.values()] for op in w},
                             key=lambda op: (type(op).__name__, *asdict(op).values()))
        self.triad_sizes = sorted({2**16 if quick else 2**24} | {activation_elements(cfgs[n], b0) for n in self.roofed}
                                  | {count_parameters(VAE(cfgs[n])) for n in self.roofed})
        tasks = (2 * len(self.shapes) + len(self.triad_sizes) + len(self.plan) + len(self.compiled_plan)
                 + len(self.roofed) + 2 + len(variants) + 2 + len(MODELS) + 2 + 3)  # the last: the targets again
        self.bar = tqdm(total=tasks, desc="bench", unit="task", disable=not progress)

    def task(self, label: str, fn: Callable[[], object]):
        self.bar.set_description(label)
        result = fn()
        self.bar.update()
        return result

    # 1. the multiplies and convolutions alone, and the memory bandwidth. Two passes over the
    # shapes, a pass apart, and each shape's faster one: a stall of a few seconds (another
    # process, the hypervisor) was seen to slow three neighbouring shapes 30-fold in one pass.
    def op_rate(self, op: Op) -> float:
        return op.flops / best_time(_op_call(op, self.dev), self.dev, self.s)

    def ops(self) -> None:
        task = self.task
        first_pass = {op: task(f"{type(op).__name__} {' '.join(map(str, asdict(op).values()))}",
                               lambda op=op: self.op_rate(op)) for op in self.shapes}
        self.rates = {op: max(rate, task(f"again {type(op).__name__}", lambda op=op: self.op_rate(op)))
                      for op, rate in first_pass.items()}
        self.bandwidth = {n: task(f"triad {n:,} floats", lambda n=n: triad_bandwidth(n, self.dev, self.s))
                          for n in self.triad_sizes}
        self.ceilings = {key: ceiling(w, self.rates) for key, w in self.train_work.items()}
        self.best_ceiling = {name: max((self.ceilings[name, b], b) for b in self.s.batches) for name in MODELS}

    # 2. training
    def train_row(self, name: str, b: int, variant: str) -> dict:
        sec = self.task(f"train {name} b{b} {variant}",  # warm=2: the first step allocates Adam's state
                        lambda: best_time(trainer(self.cfgs[name], b, variant, self.dev), self.dev, self.s, warm=2))
        rate = flops(self.train_work[name, b]) / sec
        top = self.best_ceiling[name][0] if name in self.best_ceiling else self.ceilings[name, b]
        return {"model": name, "batch": b, "optimizer": variant, "step_ms": sec * 1e3, "images_per_s": b / sec,
                "gflops": rate / 1e9, "fraction": rate / top, "fraction_same_batch": rate / self.ceilings[name, b]}

    def training(self) -> None:
        task, cfgs, dev, s, b0 = self.task, self.cfgs, self.dev, self.s, self.b0
        runs = [self.train_row(*p) for p in self.plan]
        floors = {n: task(f"floor {n}", lambda n=n: best_time(trainer(floor_config(cfgs[n]), 1, TRAINED_BY, dev), dev,
                                                              s, warm=2)) for n in self.roofed}
        likelihood_ms = task("Bernoulli log-likelihood", lambda: best_time(likelihood_step(b0, dev), dev, s)) * 1e3
        runs += [self.train_row(*p) for p in self.compiled_plan]
        roofline = {}
        for name in self.roofed:
            cfg, by = cfgs[name], step_bytes(cfgs[name], b0)
            parts = {"gemm_ms": sum(op.flops / self.rates[op] for op in self.train_work[name, b0]) * 1e3,
                     "update_ms": by["update"] / self.bandwidth[count_parameters(VAE(cfg))] * 1e3,
                     "activations_ms": by["activations"] / self.bandwidth[activation_elements(cfg, b0)] * 1e3}
            mine = [r for r in runs if r["model"] == name and r["batch"] == b0]
            roofline[name] = {"batch": b0, **parts, "roofline_ms": sum(parts.values()), "update_bytes": by["update"],
                              "activation_bytes": by["activations"], "floor_ms": floors[name] * 1e3,
                              "likelihood_ms": likelihood_ms}
            for r in mine:
                r["roofline_fraction"] = roofline[name]["roofline_ms"] / r["step_ms"]
        models = {}
        for name in MODELS:
            mine = [r for r in runs if r["model"] == name]
            top, top_batch = self.best_ceiling[name]
            models[name] = {"ceiling_gflops": top / 1e9, "ceiling_batch": top_batch,
                            "first_batch": [r for r in mine if r["batch"] == b0],
                            "best": max((r for r in mine if r["optimizer"] != NO_UPDATE),
                                        key=lambda r: r["images_per_s"])}
        self.profile = task("profile of a training step", lambda: {
            "model": MAIN_MODEL, "batch": b0, "optimizer": TRAINED_BY,
            **op_shares(trainer(cfgs[MAIN_MODEL], b0, TRAINED_BY, dev), dev)})
        self.runs, self.roofline, self.models = runs, roofline, models
        self.row = {(r["model"], r["optimizer"]): r for r in runs if r["batch"] == b0}

    # 3. importance-sampled NLL
    def nll_row(self, v: NllVariant) -> dict:
        s, points = self.s, self.points
        fm, samples = flop_model(self.cfgs[v.model]), v.samples or s.nll_samples
        run = nll_runner(v, s, points[v], self.dev)
        first = time.perf_counter()
        run()  # compiles, when compiled
        first = time.perf_counter() - first  # wall clock always: compiling uses worker processes
        sec = self.task(f"NLL {v.model} {v.label}", lambda: best_time(run, self.dev, s, warm=1))
        work = points[v] * (samples * fm["nll_per_sample"] + fm["nll_per_image"]) + fm["nll_per_call"]
        return {"model": v.model, "variant": v.label, "samples": samples, "images": points[v],
                "images_per_pass": self.passes[v][0], "rows_per_pass": self.passes[v][1],
                "samples_per_s": points[v] * samples / sec, "ms_per_image": sec / points[v] * 1e3,
                "gflops": work / sec / 1e9, "fraction_same_rows": work / sec / ceiling(self.nll_work[v], self.rates),
                "first_call_s": first}

    def nll(self) -> None:
        variants, s, cfgs = self.variants, self.s, self.cfgs
        eager_first = sorted(variants, key=lambda v: compiles_nll(VAE(cfgs[v.model]), TEST_SET * PAPER_SAMPLES)
                             if v.compiled is None else v.compiled)  # see compiled_plan
        measured = {v: self.nll_row(v) for v in eager_first}
        nll_rows = {v: measured[v] for v in variants}
        main = [v for v in variants if v.model == MAIN_MODEL]
        nll_ceiling = max(ceiling(self.nll_work[v], self.rates) for v in main)
        for v in main:
            nll_rows[v]["fraction"] = nll_rows[v]["gflops"] * 1e9 / nll_ceiling
        main_rows = [nll_rows[v] for v in main]
        # What the GEMM ceiling leaves out: each decoder hidden layer's tanh and skip addition, per sample.
        cfg_main, (_, pass_rows) = cfgs[MAIN_MODEL], self.passes[main[0]]
        elementwise_ms = self.task("NLL: the hidden layers' tanh and skip additions", lambda: best_time(
            hidden_elementwise(pass_rows, cfg_main.hidden, self.dev), self.dev, s)) * 1e3 * cfg_main.dec_depth \
            * s.nll_samples / pass_rows
        best_nll = max(main_rows, key=lambda r: r["samples_per_s"])
        self.nll_rows, self.nll_ceiling = nll_rows, nll_ceiling
        self.nll_summary = {
            "model": MAIN_MODEL, "samples": s.nll_samples, "ceiling_gflops": nll_ceiling / 1e9, "runs": main_rows,
            "gemm_ms_per_image": flop_model(cfg_main)["nll_per_sample"] * s.nll_samples / nll_ceiling * 1e3,
            "elementwise_ms_per_image": elementwise_ms,
            "best": best_nll, "projected": {"images": TEST_SET, "samples": PAPER_SAMPLES,
                                           "evaluate_py_s": TEST_SET * PAPER_SAMPLES / main_rows[0]["samples_per_s"],
                                           "best_s": TEST_SET * PAPER_SAMPLES / best_nll["samples_per_s"]}}

    # 5. every target's as-trained workload timed again, most of a bench after the first time:
    # two timings give each target a run-to-run spread, and a verdict inside it is inconclusive.
    def target_values(self, step_ms: dict[str, float], nll_of: dict[str, dict]) -> dict[str, float]:
        """Each target's value from one timing of the as-trained workloads: training steps (ms)
        and evaluate.py's NLL rows, per model."""
        b0, roofline = self.b0, self.roofline
        values = {f"training:{n}": roofline[n]["roofline_ms"] / step_ms[n] for n in MODELS}
        return values | {"nll": nll_of[MAIN_MODEL]["gflops"] * 1e9 / self.nll_ceiling,
                         "vamp_nll": nll_of[VAMP]["ms_per_image"] / nll_of[VAMP_BASE]["ms_per_image"],
                         "vamp_epoch": step_ms[VAMP] / 1e3 * EPOCH / b0,
                         "pixel_training": flops(self.train_work[PIXEL, b0]) / (step_ms[PIXEL] / 1e3)
                         / self.ceilings[PIXEL, b0]}

    def targets_twice(self) -> tuple[dict[str, float], dict[str, float]]:
        """The targets' values from the rows already measured, and from their workloads timed again."""
        timed = (*MODELS, VAMP, PIXEL)
        as_run = [v for v in self.variants if v.label == "evaluate.py" and v.model in (MAIN_MODEL, VAMP, VAMP_BASE)]
        first = self.target_values({n: self.row[n, TRAINED_BY]["step_ms"] for n in timed},
                                   {v.model: self.nll_rows[v] for v in as_run})
        again = self.target_values({n: self.train_row(n, self.b0, TRAINED_BY)["step_ms"] for n in timed},
                                   {v.model: self.nll_row(v) for v in as_run})
        return first, again

    # the VampPrior's and the PixelCNN's rows, gathered for the appendix
    def vamp(self, first: dict[str, float]) -> dict:
        b0, roofline, row = self.b0, self.roofline, self.row
        by_model = {m: next(r for v, r in self.nll_rows.items() if v.model == m and v.label == "evaluate.py")
                    for m in (VAMP, VAMP_BASE, PIXEL)}
        return {"model": VAMP, "base": VAMP_BASE, "batch": b0,
                "nll_ms_per_image": by_model[VAMP]["ms_per_image"],
                "base_nll_ms_per_image": by_model[VAMP_BASE]["ms_per_image"],
                "nll_ratio": first["vamp_nll"], "epoch_s": first["vamp_epoch"],
                "base_epoch_s": row[VAMP_BASE, TRAINED_BY]["step_ms"] / 1e3 * EPOCH / b0,
                "gemm_epoch_s": roofline[VAMP]["gemm_ms"] / 1e3 * EPOCH / b0,
                "roofline_epoch_s": roofline[VAMP]["roofline_ms"] / 1e3 * EPOCH / b0,
                # the share of a step's FLOPs spent on the pseudo-inputs (encoder forward and backward)
                "pseudo_share": flop_model(self.cfgs[VAMP])["train_per_step"] / flops(self.train_work[VAMP, b0])}

    def pixel(self) -> dict:
        b0, work = self.b0, self.train_work[PIXEL, self.b0]
        conv_ops = [op for op in work if isinstance(op, Conv)]
        return {"model": PIXEL, "batch": b0, "ceiling_gflops": self.ceilings[PIXEL, b0] / 1e9,
                "conv_share": flops(conv_ops) / flops(work),
                "training": [self.row[PIXEL, v] for v in (TRAINED_BY, CHANNELS_LAST)],
                "nll": [self.nll_rows[v] for v in self.variants if v.model == PIXEL],
                "epoch_s": self.row[PIXEL, TRAINED_BY]["step_ms"] / 1e3 * EPOCH / b0}


def run_bench(device: str = "auto", quick: bool = False, results_dir: str | Path = DEFAULT_RESULTS_DIR,
              threads: int | None = None, cpu_clock: bool = False, progress: bool = True,
              timings: Path = TIMINGS) -> tuple[Path, dict]:
    """Measure everything and write ``<results_dir>/bench/<machine>.json`` (``-quick.json`` for
    ``quick``, so a test run never replaces a real one); returns its path and content."""
    start = time.perf_counter()
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if cpu_clock and (dev.type != "cpu" or torch.get_num_threads() != 1):
        raise ValueError("--cpu-clock times one thread's CPU time: use it with --threads 1 on the CPU")
    s = replace(QUICK if quick else FULL, cpu_clock=cpu_clock)
    load_start, cpu_start = _load_average(), cpu_snapshot()
    b = _Bench(s, dev, quick, progress)
    b.ops()  # 1. the multiplies and convolutions alone, and the memory bandwidth
    b.training()  # 2.
    b.nll()  # 3.
    fisher = b.task("Fisher: vectorised, loop, hooks", lambda: fisher_comparison(s, dev))  # 4. per-example Fisher
    first, again = b.targets_twice()  # 5.
    b.bar.close()
    vamp, pixel = b.vamp(first), b.pixel()

    desc = machine_description(dev)
    doc = {
        "machine": machine_slug(desc), "machine_description": desc, "device": str(dev), "quick": quick,
        "settings": asdict(s), "provenance": provenance(device=str(dev)),
        "load_average": {"start": load_start, "end": _load_average()},
        "other_work": other_work(cpu_start, cpu_snapshot()),
        "flop_model": {name: flop_model(cfg) for name, cfg in b.cfgs.items()},
        "gemm": {"peak_gflops": max(r for op, r in b.rates.items() if isinstance(op, Gemm)) / 1e9,
                 "shapes": [{"kind": type(op).__name__.lower(), **asdict(op), "gflops": b.rates[op] / 1e9}
                            for op in b.shapes],
                 "ceilings": [{"model": n, "batch": bs, "gflops": c / 1e9} for (n, bs), c in b.ceilings.items()]},
        "memory": {"triad": [{"elements": n, "gb_per_s": bw / 1e9} for n, bw in b.bandwidth.items()],
                   "gb_per_s": b.bandwidth[max(b.triad_sizes)] / 1e9},
        "training": {"runs": b.runs, "models": b.models, "profile": b.profile, "roofline": b.roofline},
        "nll": b.nll_summary, "vamp": vamp, "pixel": pixel, "fisher": fisher,
        "make": timing.recorded(timings),
    }
    doc["targets"] = targets(doc, first)
    doc["warnings"], trusted = noise_warnings(doc)
    doc["busy"] = any("busy machine" in w for w in doc["warnings"])
    for key, tg in doc["targets"].items():
        tg["again"], tg["spread"] = again[key], abs(again[key] - tg["as_trained"])
        tg["met"] = verdict(tg) if trusted else None  # None: too noisy to say
    doc["total_s"] = time.perf_counter() - start
    path = Path(results_dir) / "bench" / f"{doc['machine']}{'-quick' * quick}.json"
    write_json(path, "bench", doc)
    return path, doc


def targets(doc: dict, as_trained: dict[str, float]) -> dict[str, dict]:
    """Each target: its value as the code runs it (``as_trained``, by key), the best variant, and
    what stands in the way (the measurements that bound it)."""
    t, b0 = doc["training"], doc["settings"]["batches"][0]
    found = {}

    def target(key: str, fmt: dict, best: tuple[float, str], in_the_way: str) -> None:
        what, value, sense = TARGETS[key.split(":")[0]]
        found[key] = {"what": what.format(**fmt), "target": value, "sense": sense, "as_trained": as_trained[key],
                      "best": best[0], "best_variant": best[1], "in_the_way": in_the_way}

    for name in MODELS:
        r = t["roofline"][name]
        mine = [x for x in t["runs"] if x["model"] == name and x["batch"] == b0]
        trained = next(x for x in mine if x["optimizer"] == TRAINED_BY)
        no_update = next(x for x in mine if x["optimizer"] == NO_UPDATE)
        best = max((x for x in mine if x["optimizer"] != NO_UPDATE), key=lambda x: x["roofline_fraction"])
        target(f"training:{name}", {"m": name, "b": b0}, (best["roofline_fraction"], best["optimizer"]),
               f"roofline {r['roofline_ms']:.2f} ms = multiplies {r['gemm_ms']:.2f} + Adam update "
               f"{r['update_ms']:.2f} + activations {r['activations_ms']:.2f}; the step takes "
               f"{trained['step_ms']:.2f} ms ({no_update['step_ms']:.2f} without the update); the same operators at "
               f"width {FLOOR_WIDTH}, batch 1 take {r['floor_ms']:.2f} ms (the framework's per-operator floor); the "
               f"Bernoulli log-likelihood alone, forward and backward, {r['likelihood_ms']:.2f} ms"
               + _inside_the_step(t["profile"], name, r["gemm_ms"]))
    n = doc["nll"]
    ran = n["runs"][0]
    gemm, elementwise = n.get("gemm_ms_per_image"), n.get("elementwise_ms_per_image")
    target("nll", {}, (n["best"]["fraction"], n["best"]["variant"]),
           f"evaluate.py runs {ran['gflops']:.0f} GFLOP/s against a ceiling of {n['ceiling_gflops']:.0f}"
           + (f": of its {ran['ms_per_image']:.0f} ms per image, the multiplies at their measured rates take "
              f"{gemm:.0f} ms and the decoder's tanh and skip additions alone {elementwise:.0f} ms"
              if gemm is not None and elementwise is not None else ""))
    v = doc["vamp"]
    target("vamp_nll", {}, (v["nll_ratio"], "evaluate.py"),
           f"{v['nll_ms_per_image']:.1f} against {v['base_nll_ms_per_image']:.1f} ms per image: log p(z) and the "
           f"pseudo-inputs add {v['nll_ms_per_image'] - v['base_nll_ms_per_image']:.1f} ms")
    target("vamp_epoch", {"b": b0}, (v["epoch_s"], TRAINED_BY),
           f"its multiplies alone take {v['gemm_epoch_s']:.1f} s per epoch here (roofline {v['roofline_epoch_s']:.1f} "
           f"s), {v['pseudo_share']:.0%} of the FLOPs on the pseudo-inputs; the standard prior's epoch takes "
           f"{v['base_epoch_s']:.1f} s")
    p = doc["pixel"]
    trained, channels_last = p["training"]
    r = t["roofline"][PIXEL]
    target("pixel_training", {"b": b0}, max((x["fraction_same_batch"], x["optimizer"]) for x in p["training"]),
           f"convolutions are {p['conv_share']:.0%} of its FLOPs; the step takes {trained['step_ms']:.0f} ms "
           f"({channels_last['step_ms']:.0f} ms with channels-last maps), of which the activations' "
           f"{r['activation_bytes'] / 1e6:.0f} MB take {r['activations_ms']:.0f} ms at the measured bandwidth "
           f"(roofline {r['roofline_ms']:.0f} ms, {trained['roofline_fraction']:.2f} of it)")
    return found


def verdict(tg: dict) -> bool | str:
    """Met (True) or not (False), or INCONCLUSIVE where the best value lies within the as-trained
    workload's run-to-run spread (two timings) of the target: one timing more could flip it."""
    if abs(tg["best"] - tg["target"]) <= tg.get("spread", 0.0):
        return INCONCLUSIVE
    return tg["best"] >= tg["target"] if tg["sense"] == "at least" else tg["best"] <= tg["target"]


def _inside_the_step(profile: dict, name: str, alone_ms: float) -> str:
    """For the profiled model: how long its multiplies take inside the step, against alone."""
    if profile.get("model") != name or "ms_per_call" not in profile:
        return ""
    inside = profile["matmul_share"] * profile["ms_per_call"]
    return (f"; profiled, the multiplies take {profile['matmul_share']:.0%} of the step, {inside:.2f} ms, against "
            f"{alone_ms:.2f} ms timed alone")


def noise_warnings(doc: dict) -> tuple[list[str], bool]:
    """Signs that other work competed for the machine while it was measured, and whether the
    verdicts can still be trusted (the CPU-time clock discounts a busy machine)."""
    found = []
    cores = doc["machine_description"]["logical_cores"]
    effect = ("the CPU-time clock discounts it, but caches and memory bandwidth were shared"
              if doc["settings"]["cpu_clock"] else
              "rates are lower bounds and fractions unreliable: re-run on a quiet machine (or with --threads 1 "
              "--cpu-clock)")
    others = doc.get("other_work")
    busiest = max((load[0] for load in doc["load_average"].values() if load), default=0.0)
    if doc["device"] == "cpu" and others is not None:  # measured: what other work took meanwhile
        if others["cores"] > BUSY_CORES:
            found.append(f"busy machine: other work kept {others['cores']:.2f} of {cores} cores busy on average "
                         f"({others['core_seconds']:.0f} core-seconds in {others['wall_s']:.0f} s); {effect}")
    elif doc["device"] == "cpu" and busiest > cores:  # no /proc/stat, or an older file: the lagging load
        found.append(f"busy machine: load average up to {busiest:.1f} on {cores} cores, other work competed; {effect}")
    fractions = [r["fraction"] for r in [*doc["training"]["runs"], *doc["nll"]["runs"]]]
    if over := sum(f > 1.05 for f in fractions):
        found.append(f"{over} of {len(fractions)} fractions exceed 1: the multiplies alone ran slower than inside "
                     "the workloads, i.e. the machine was busier while the ceiling was measured")
    return found, not over and (not found or doc["settings"]["cpu_clock"])
