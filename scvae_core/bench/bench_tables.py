"""The performance appendix from ``results/bench/*.json`` (written by ``scvae bench``): every
machine's benchmark side by side as a generated table (checked by ``bookcheck`` like the
paper's tables), the chart of fractions, and the per-machine text ``scvae bench`` prints.
Reads result files only: no torch.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..results import read_json

BUSY_CORES = 0.1  # other work's mean cores above which a CPU benchmark is called busy (bench.py)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TABLE_ID = "bench"
REQUIRED = ("machine", "machine_description", "device", "quick", "flop_model", "gemm", "training", "nll", "fisher",
            "make", "targets", "warnings", "total_s")
INCONCLUSIVE = "inconclusive"  # a target within its workload's run-to-run spread (bench.verdict)
VERDICTS = {True: "met", False: "NOT met", None: "unknown (busy or noisy machine: see the warnings)",
            INCONCLUSIVE: "inconclusive: within the run-to-run spread of two timings"}
MISSING = "—"  # a measure this machine's file lacks (written by an older `scvae bench`)


def read_bench(path: Path) -> dict:
    return read_json(path, "bench", REQUIRED, fix="run `scvae bench` on that machine")


def load_benches(results_dir: str | Path) -> list[dict]:
    """Every machine's full benchmark under ``results_dir/bench`` (quick test runs left out)."""
    docs = [read_bench(p) for p in sorted(Path(results_dir, "bench").glob("*.json"))]
    return [d for d in docs if not d["quick"]]


def is_busy(doc: dict) -> bool:
    """Whether other work competed for the machine while it was measured (load above its cores)."""
    return bool(doc.get("busy")) or any(w.startswith("busy machine") for w in doc["warnings"])


def column_name(doc: dict) -> str:
    return doc["machine"] + (" (busy)" if is_busy(doc) else "")


def _first(doc: dict, model: str, optimizer: str) -> dict:
    b0 = doc["settings"]["batches"][0]
    return next(r for r in doc["training"]["runs"] if (r["model"], r["batch"], r["optimizer"]) == (model, b0, optimizer))


def headline(doc: dict) -> dict[str, float]:
    """The fractions the book's chart compares across machines (those the file has)."""
    b0, bars = doc["settings"]["batches"][0], {}
    for key, tg in doc["targets"].items():
        if tg.get("sense", "at least") == "at least":
            label = key.replace("training:", "train ").replace("_", " ")
            bars[f"{label} b{b0} (as the code runs it)" if "train" in key else f"{label} (as the code runs it)"] = \
                tg["as_trained"]
            bars[f"{label}, fastest variant"] = tg["best"]
    return bars


def _make(target: str) -> Callable[[dict], str]:
    def get(doc: dict) -> str:
        rec = doc["make"][target]
        return f"{rec['seconds']:.0f} s ({rec['recorded_at'][:10]})" if rec else "not measured yet"
    return get


def _training(model: str) -> Callable[[dict], str]:
    def get(doc: dict) -> str:
        r = _first(doc, model, "adam-fused")
        return (f"{r['images_per_s']:,.0f} img/s: {r['roofline_fraction']:.2f} of the roofline, "
                f"{r['fraction_same_batch']:.2f} of the GEMM ceiling")
    return get


def _roofline(model: str) -> Callable[[dict], str]:
    def get(doc: dict) -> str:
        r = doc["training"]["roofline"][model]
        return (f"{r['roofline_ms']:.2f} ms = multiplies {r['gemm_ms']:.2f} + update {r['update_ms']:.2f} + "
                f"activations {r['activations_ms']:.2f}; step {_first(doc, model, 'adam-fused')['step_ms']:.2f} ms; "
                f"per-operator floor {r['floor_ms']:.2f} ms")
    return get


def _fastest(model: str) -> Callable[[dict], str]:
    def get(doc: dict) -> str:
        b = doc["training"]["models"][model]["best"]
        return f"{b['images_per_s']:,.0f} img/s at b{b['batch']}, {b['optimizer']} ({b['fraction']:.2f} of the ceiling)"
    return get


def _verdicts(doc: dict) -> str:
    met = [tg["met"] for tg in doc["targets"].values()]
    if any(m is None for m in met):
        return f"{sum(m is True for m in met)} of {len(met)} met, the rest unknown (busy machine)"
    unsure = sum(m == INCONCLUSIVE for m in met)
    return f"{sum(m is True for m in met)} of {len(met)} met" + (f", {unsure} inconclusive" if unsure else "")


MEASURES: list[tuple[str, Callable[[dict], str]]] = [
    ("device", lambda d: f"{d['provenance']['device_name']} [{d['device']}"
                         + (", one thread's CPU time]" if d["settings"]["cpu_clock"] else "]")),
    ("measured", lambda d: f"{d['provenance']['written_at'][:10]}, {d['provenance']['git_revision'][:10]}"),
    ("load average (1 min) at start, end", lambda d: f"{d['load_average']['start'][0]:.1f}, "
                                                     f"{d['load_average']['end'][0]:.1f}"),
    ("other work while measured (mean cores)", lambda d: f"{d['other_work']['cores']:.2f}"
     if d.get("other_work") else "not measured"),
    ("GEMM: fastest single shape", lambda d: f"{d['gemm']['peak_gflops']:.0f} GFLOP/s"),
    ("memory bandwidth (triad)", lambda d: f"{d['memory']['gb_per_s']:.0f} GB/s"),
    *((f"train {m} b100 (train.py)", _training(m)) for m in ("vae-1l", "scvae")),
    *((f"roofline of train {m} b100", _roofline(m)) for m in ("vae-1l", "scvae")),
    *((f"train {m}, fastest", _fastest(m)) for m in ("vae-1l", "scvae")),
    ("NLL scvae (evaluate.py)", lambda d: f"{d['nll']['runs'][0]['samples_per_s']:,.0f} samples/s "
                                          f"({d['nll']['runs'][0]['fraction']:.2f} of the GEMM ceiling)"),
    ("NLL of the test set at S=5000 (projected)", lambda d: f"{d['nll']['projected']['evaluate_py_s'] / 60:.0f} min"),
    ("VampPrior NLL (vae-1l+vamp against vae-1l)",
     lambda d: f"{d['vamp']['nll_ms_per_image']:.1f} against {d['vamp']['base_nll_ms_per_image']:.1f} ms per image "
               f"({d['vamp']['nll_ratio']:.2f}x)"),
    ("VampPrior training b100",
     lambda d: f"{d['vamp']['epoch_s']:.1f} s per epoch (standard prior {d['vamp']['base_epoch_s']:.1f} s; its "
               f"multiplies alone {d['vamp']['gemm_epoch_s']:.1f} s)"),
    ("PixelVAE training b100",
     lambda d: f"{d['pixel']['epoch_s']:.0f} s per epoch, {d['pixel']['training'][0]['fraction_same_batch']:.2f} of "
               f"the convolution ceiling (channels-last maps: {d['pixel']['training'][1]['fraction_same_batch']:.2f})"),
    ("PixelVAE NLL", lambda d: "; ".join(f"{r['variant']} {r['samples_per_s']:,.0f} samples/s "
                                         f"({r['fraction_same_rows']:.2f})" for r in d["pixel"]["nll"])),
    ("Fisher: vectorised (hooks) against a loop", lambda d: f"{d['fisher']['speedup']:.1f}x faster, max rel. diff "
                                                            f"{d['fisher']['max_rel_diff']:.0e} (float64)"),
    ("make book", _make("book")),
    ("make test", _make("test")),
    ("scvae bench itself", lambda d: f"{d['total_s']:.0f} s"),
    ("targets", _verdicts),
]


def _cell(doc: dict, get: Callable[[dict], str]) -> str:
    try:
        return get(doc)
    except (KeyError, IndexError, StopIteration, TypeError):
        return MISSING


@dataclass(frozen=True)
class BenchTable:
    """The side-by-side table, in the markup of ``tables.Table`` (which ``bookcheck`` checks)."""

    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    id: str = TABLE_ID
    preset: str | None = None  # benchmarks belong to no preset
    seeds: tuple[int, ...] = ()

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in self.rows)
        return (f'<table class="scvae-table" id="{self.id}" data-preset="" data-seeds="">\n'
                f"<caption>{html.escape(self.caption)}</caption>\n"
                f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>")


def bench_table(results_dir: str | Path, preset: str | None = None) -> BenchTable:
    """Every machine's benchmark, one column each (``preset`` is ignored: benchmarks have none)."""
    docs = load_benches(results_dir)
    busy = [d["machine"] for d in docs if is_busy(d)]
    caption = ("scvae bench on each machine; fractions are of the machine's own measured ceilings. "
               + (f"Busy while measured (other work kept more than {BUSY_CORES} cores busy, or, where that was not "
                  f"measured, the load average exceeded the cores; rates are lower bounds): {', '.join(busy)}."
                  if busy else "No machine was busy while measured."))
    rows = tuple((label, *(_cell(d, get) for d in docs)) for label, get in MEASURES)
    return BenchTable(caption, ("Measure", *(column_name(d) for d in docs)), rows)


def fraction_figure(docs: list[dict]) -> Figure:
    """Grouped bars: each headline fraction, one bar per machine, with each target's line."""
    from matplotlib.figure import Figure  # shown as PNG once plots.py is imported (the notebook does)

    labels = list(dict.fromkeys(k for d in docs for k in headline(d)))
    fig = Figure(figsize=(9, 0.45 * len(labels) * max(1, len(docs) / 2) + 1.5), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(docs)
    for i, d in enumerate(docs):
        values = headline(d)
        ax.barh([j + i * height for j in range(len(labels))], [values.get(k, 0.0) for k in labels],
                height=height, label=column_name(d))
    ax.set_yticks([j + height * (len(docs) - 1) / 2 for j in range(len(labels))], labels)
    ax.invert_yaxis()
    for value in sorted({tg["target"] for d in docs for tg in d["targets"].values() if tg.get("sense") == "at least"}):
        ax.axvline(value, color="k", linestyle="--", linewidth=1, label=f"target {value}")
    ax.set_xlabel("fraction of the machine's roofline or ceiling (see the table)")
    ax.legend(loc="best")
    fig.suptitle("Throughput as a fraction of what each machine can do")
    return fig


def format_table(doc: dict) -> str:
    """The text ``scvae bench`` prints for one machine."""
    n, f, prof = doc["nll"], doc["fisher"], doc["training"]["profile"]
    lines = [f"{doc['machine']}: {doc['provenance']['device_name']} on {doc['device']}"
             + (", timed by one thread's CPU time" if doc["settings"]["cpu_clock"] else "")
             + (" (QUICK: test sizes, the numbers mean nothing)" if doc["quick"] else ""),
             f"load average (1, 5, 15 min) at start {doc['load_average']['start']}, end {doc['load_average']['end']}; "
             + (f"other work kept {doc['other_work']['cores']:.2f} cores busy on average" if doc.get("other_work")
                else "other work not measured"),
             f"GEMM: fastest single shape {doc['gemm']['peak_gflops']:.1f} GFLOP/s; memory (triad) "
             + ", ".join(f"{t['gb_per_s']:.0f} GB/s at {t['elements']:,} floats" for t in doc["memory"]["triad"]),
             f"{'workload':44s} {'rate':>19s} {'GFLOP/s':>8s} {'ceiling':>8s} {'fraction':>8s} {'roofline':>8s}"]
    ceilings = {(c["model"], c["batch"]): c["gflops"] for c in doc["gemm"]["ceilings"]}
    for r in doc["training"]["runs"]:
        roof = f"{r['roofline_fraction']:8.2f}" if "roofline_fraction" in r else " " * 8
        lines.append(f"{'train ' + r['model'] + ' b' + str(r['batch']) + ' ' + r['optimizer']:44s} "
                     f"{r['images_per_s']:>13,.1f} img/s {r['gflops']:8.1f} {ceilings[r['model'], r['batch']]:8.1f} "
                     f"{r['fraction_same_batch']:8.2f}{roof}".rstrip())
    for r in [*n["runs"], *doc["pixel"]["nll"]]:
        lines.append(f"{'NLL ' + r['model'] + ' S=' + str(r['samples']) + ' ' + r['variant']:44s} "
                     f"{r['samples_per_s']:>9,.0f} samples/s {r['gflops']:8.1f} "
                     f"{r['gflops'] / r['fraction_same_rows']:8.1f} {r['fraction_same_rows']:8.2f}")
    v, p = doc["vamp"], n["projected"]
    lines += [f"VampPrior: NLL {v['nll_ms_per_image']:.1f} ms per image against {v['base_nll_ms_per_image']:.1f} "
              f"({v['nll_ratio']:.2f}x); training {v['epoch_s']:.1f} s per epoch (standard prior {v['base_epoch_s']:.1f} "
              f"s)",
              f"NLL of all {p['images']:,} test images at S={p['samples']}: {p['evaluate_py_s'] / 60:.0f} min with "
              f"evaluate.py, {p['best_s'] / 60:.0f} min with the best variant",
              f"Fisher {f['model']}, {f['points']} points: loop over examples {f['loop_s']:.2f} s, vectorised "
              f"hooks {f['hooks_s']:.2f} s (speed-up {f['speedup']:.1f}x), torch.func vmap {f['vectorised_s']:.2f} s "
              f"({f['func_speedup']:.1f}x); max relative difference to the loop {f['max_rel_diff']:.1e} in float64, "
              f"{f['max_rel_diff_float32']:.1e} in float32",
              f"profile of train {prof['model']} b{prof['batch']} {prof['optimizer']}: multiplies "
              f"{prof['matmul_share']:.0%}; " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in prof["top_ops"][:5])]
    for target, rec in doc["make"].items():
        lines.append(f"make {target}: " + (f"{rec['seconds']:.0f} s (recorded {rec['recorded_at']})" if rec
                                           else "not measured yet"))
    for tg in doc["targets"].values():
        lines.append(f"target: {tg['what']} {tg['sense']} {tg['target']}: {tg['as_trained']:.2f} as the code runs "
                     f"it" + (f" ({tg['again']:.2f} timed again)" if "again" in tg else "")
                     + f", {tg['best']:.2f} with {tg['best_variant']} ({VERDICTS[tg['met']]})")
        if tg["met"] is not True:
            lines.append(f"  in the way: {tg['in_the_way']}")
    lines += [f"WARNING: {w}" for w in doc["warnings"]]
    lines.append(f"total {doc['total_s']:.0f} s")
    return "\n".join(lines)
