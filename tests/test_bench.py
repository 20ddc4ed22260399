"""`scvae bench`: its FLOP and byte models against hand counts, the ceiling's definition, the
result file of a quick run (every workload, every target with its verdict and what stands in its
way), the appendix table that bookcheck verifies, the make-timing script and the CLI. No timing
is asserted: the speed targets live in the benchmark's output."""
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scvae_core.bench import bench, bench_tables, timing
from scvae_core.book.bookcheck import check_book
from scvae_core.evaluate import rows_per_pass
from scvae_core.models import VAE, ModelConfig, count_parameters
from scvae_core.results import ResultError
from scvae_core.zoo import get_config


REPO_ROOT = Path(__file__).resolve().parent.parent
SCVAE = [sys.executable, "-m", "scvae_core.cli"]
TINY = ModelConfig(hidden=4, latent=2)  # enc 784->4, mu 4->2, logvar 4->2; dec 2->4, out 4->784


@pytest.mark.unit
def test_flop_model_matches_a_hand_count():
    forward = 2 * (784 * 4 + 4 * 2 + 4 * 2 + 2 * 4 + 4 * 784)  # 12,592
    weight_grads = forward
    input_grads = forward - 2 * 784 * 4  # none for the layer fed by the data
    assert bench.flop_model(TINY) == {
        "train_per_image": forward + weight_grads + input_grads,  # 31,504
        "train_per_step": 0,
        "nll_per_sample": 2 * (2 * 4 + 4 * 784),  # the decoder
        "nll_per_image": 2 * (784 * 4 + 4 * 2 + 4 * 2),  # the encoder
        "nll_per_call": 0,
    }
    assert bench.flops(bench.training_ops(TINY, 3)) == 3 * 31504


@pytest.mark.unit
def test_vampprior_flops_count_the_pseudo_inputs_and_the_mixture_product():
    cfg = replace(TINY, prior="vamp", pseudo_inputs=3)
    encoder = 2 * (784 * 4 + 4 * 2 + 4 * 2)
    mixture = 2 * (2 * 2) * 3  # [z^2, z] (2D = 4) against K = 3 components, per row
    fm = bench.flop_model(cfg)
    assert fm["train_per_image"] == bench.flop_model(TINY)["train_per_image"] + 3 * mixture  # forward + 2 grads
    assert fm["train_per_step"] == 3 * 3 * encoder  # K rows, forward and both gradients (the inputs learn)
    assert fm["nll_per_sample"] == bench.flop_model(TINY)["nll_per_sample"] + mixture
    assert fm["nll_per_call"] == 3 * encoder  # encoded once per NLL call


@pytest.mark.unit
def test_pixelcnn_flops_count_every_convolution():
    cfg = replace(TINY, decoder="pixelcnn", pixel_layers=3, pixel_channels=2)
    per_map = 2 * 28 * 28
    first, middle, out = per_map * 1 * 2 * 49, per_map * 2 * 2 * 9, per_map * 2 * 1 * 1
    convs_forward = 2 * first + middle + out  # first_x and first_cond, one middle layer, the 1x1 output
    fm, mlp = bench.flop_model(cfg), bench.flop_model(TINY)
    assert fm["nll_per_sample"] == mlp["nll_per_sample"] + convs_forward
    # backward: both gradients everywhere except first_x's input gradient (it is fed by x)
    assert fm["train_per_image"] == mlp["train_per_image"] + 3 * convs_forward - first
    assert {(n, k) for n, _, _, k in bench.conv_shapes(cfg)} == {
        ("decoder.pixelcnn.first_x", 7), ("decoder.pixelcnn.first_cond", 7), ("decoder.pixelcnn.middle.0", 3),
        ("decoder.pixelcnn.out", 1)}


@pytest.mark.unit
def test_ceiling_is_the_flop_weighted_harmonic_mean():
    a, b = bench.Gemm("forward", 10, 10, 10), bench.Gemm("forward", 20, 10, 10)  # 2,000 and 4,000 FLOPs
    c = bench.Conv("forward", 1, 1, 1, 1)  # 1,568 FLOPs
    rates = {a: 1000.0, b: 4000.0, c: 1568.0}  # 2 s + 1 s + 1 s for 7,568 FLOPs
    assert bench.ceiling([a, b, c], rates) == pytest.approx(7568 / 4)


@pytest.mark.unit
def test_step_bytes_match_a_hand_count():
    per_row = (4 * 4 + 20 * 4) + 4 * 2 + 4 * 2 + (4 * 4 + 20 * 4) + 4 * 784 + 28 * 784 + 120 * 2  # 25,536
    assert bench.step_bytes(TINY, 5) == {"update": 28 * count_parameters(VAE(TINY)), "activations": 5 * per_row}
    skips = replace(TINY, enc_skip="short", dec_skip="short")  # + 24 bytes per hidden unit and side
    assert bench.step_bytes(skips, 5)["activations"] == 5 * (per_row + 2 * 24 * 4)


@pytest.mark.unit
def test_the_pixelcnn_nll_is_timed_at_evaluate_pys_pass_and_a_larger_one():
    per_pass = rows_per_pass(VAE(get_config(bench.PIXEL)), torch.device("cpu"))
    evaluate_py, larger = [v for v in bench.nll_variants(bench.FULL) if v.model == bench.PIXEL]
    assert bench.nll_pass(evaluate_py, bench.FULL, per_pass) == (1, per_pass)  # one image, 64 samples a pass
    assert bench.nll_pass(larger, bench.FULL, per_pass) == (1, bench.FULL.pixel_chunk) and per_pass < 1024


@pytest.mark.unit
def test_machine_slug_names_hardware_not_hosts():
    assert bench.machine_slug({"gpu": None, "cpu": "AMD EPYC", "logical_cores": 2}) == "amd-epyc-2cpu"
    assert bench.machine_slug({"gpu": "NVIDIA H100 80GB HBM3", "cpu": "x", "logical_cores": 16}) \
        == "nvidia-h100-80gb-hbm3"
    assert bench.machine_slug({"gpu": None, "cpu": "Intel(R) Xeon(R) Gold 6338", "logical_cores": 8}) \
        == "intel-xeon-gold-6338-8cpu"


def _noise_doc(load: float, other_cores: float | None) -> dict:
    """The fields noise_warnings reads, for a quiet-looking 2-core CPU run."""
    return {"device": "cpu", "machine_description": {"logical_cores": 2}, "settings": {"cpu_clock": False},
            "load_average": {"start": [load, load, load], "end": [load, load, load]},
            "other_work": None if other_cores is None else {"cores": other_cores, "core_seconds": other_cores * 100,
                                                            "wall_s": 100.0},
            "training": {"runs": [{"fraction": 0.7}]}, "nll": {"runs": [{"fraction": 0.8}]}}


@pytest.mark.unit
def test_a_target_within_its_run_to_run_spread_is_inconclusive():
    at_least = {"target": 0.8, "sense": "at least", "best": 0.82, "spread": 0.01}
    assert bench.verdict(at_least) is True
    assert bench.verdict({**at_least, "best": 0.78}) is False
    assert bench.verdict({**at_least, "spread": 0.05}) == bench_tables.INCONCLUSIVE
    at_most = {"target": 1.3, "sense": "at most", "best": 1.34, "spread": 0.03}
    assert bench.verdict(at_most) is False
    assert bench.verdict({**at_most, "spread": 0.05}) == bench_tables.INCONCLUSIVE
    assert bench.verdict({k: v for k, v in at_most.items() if k != "spread"}) is False  # files before the repeat


@pytest.mark.unit
def test_the_profiled_step_compares_its_multiplies_with_their_time_alone():
    profile = {"model": "scvae", "matmul_share": 0.75, "ms_per_call": 28.0}
    assert bench._inside_the_step(profile, "scvae", 17.19) == (
        "; profiled, the multiplies take 75% of the step, 21.00 ms, against 17.19 ms timed alone")
    assert bench._inside_the_step(profile, "vae-1l", 2.2) == ""  # only the profiled model


@pytest.mark.unit
class TestOtherWork:
    """Whether other work competed is measured (CPU time not ours), not read off the lagging load."""

    def test_other_work_is_the_machines_busy_time_less_our_own(self):
        assert bench.other_work((100.0, 10.0, 0.0), (130.0, 35.0, 20.0)) == {
            "core_seconds": 5.0, "wall_s": 20.0, "cores": 0.25}
        assert bench.other_work(None, (1.0, 1.0, 1.0)) is None  # no /proc/stat

    def test_snapshots_see_our_own_work(self):
        before = bench.cpu_snapshot()
        if not Path("/proc/stat").exists():  # no Linux: the load average is the fallback (tested below)
            assert before is None
            return
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        after = bench.cpu_snapshot()
        own, machine = after[1] - before[1], after[0] - before[0]
        assert own >= 0.25 and machine >= own - 0.05

    def test_busy_is_decided_by_other_work_where_measured(self):
        lagging = bench.noise_warnings(_noise_doc(load=2.9, other_cores=0.02))  # paused just before
        assert lagging == ([], True)
        warnings, trusted = bench.noise_warnings(_noise_doc(load=0.5, other_cores=0.6))
        assert not trusted and warnings[0].startswith("busy machine: other work kept 0.60 of 2 cores")
        warnings, trusted = bench.noise_warnings(_noise_doc(load=9.0, other_cores=None))  # an older file
        assert not trusted and warnings[0].startswith("busy machine: load average up to 9.0")


@pytest.mark.unit
def test_timing_round_trip(tmp_path):
    assert timing.recorded(tmp_path) == {"book": None, "test": None}
    timing.record("test", 123.456, tmp_path)
    found = timing.recorded(tmp_path)
    assert found["book"] is None and found["test"]["seconds"] == 123.5 and found["test"]["recorded_at"]
    (tmp_path / "book.json").write_text('{"kind": "other"}')
    assert timing.recorded(tmp_path)["book"] is None  # not a timing file
    for target, seconds in (("../evil", 1.0), ("test", -1.0)):
        with pytest.raises(ValueError):
            timing.record(target, seconds, tmp_path)


@pytest.mark.unit
def test_timing_script_loads_neither_torch_nor_numpy(tmp_path):
    code = ("import runpy, sys\n"
            f"sys.argv = ['timing', 'book', '42', '--root', {str(tmp_path)!r}]\n"
            "try:\n    runpy.run_module('scvae_core.bench.timing', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]") and timing.recorded(tmp_path)["book"]["seconds"] == 42.0
    done = subprocess.run([sys.executable, "-m", "scvae_core.bench.timing", "book", "soon", "--root", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2 and "soon" in done.stderr


@pytest.mark.unit
def test_the_appendix_renders_without_torch():
    code = ("import sys\nfrom scvae_core.bench import bench_tables\n"
            "bench_tables.bench_table('results').to_html()\n"  # the committed benchmark files
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    results_dir = tmp_path_factory.mktemp("results")
    # One thread on its CPU clock: the test suite shares the machine, and oversubscribed threads are slow.
    done = subprocess.run([*SCVAE, "bench", "--quick", "--threads", "1", "--cpu-clock", "--no-progress",
                           "--results-dir", str(results_dir)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    files = list((results_dir / "bench").glob("*.json"))
    assert len(files) == 1 and files[0].name.endswith("-quick.json")  # never replaces a machine's real file
    return bench_tables.read_bench(files[0]), done.stdout, files[0]


@pytest.mark.smoke
def test_quick_bench_times_every_workload(quick_run):
    doc, stdout, path = quick_run
    assert doc["kind"] == "bench" and doc["quick"] is True and doc["machine"] == bench.machine_slug(
        doc["machine_description"])
    assert {"git_revision", "device_name", "written_at"} <= set(doc["provenance"])
    models = (*bench.MODELS, bench.VAMP, bench.PIXEL)
    assert doc["flop_model"] == {m: bench.flop_model(get_config(m)) for m in models}
    b0 = bench.QUICK.batches[0]
    assert {(r["model"], r["batch"], r["optimizer"]) for r in doc["training"]["runs"]} == {
        (m, b, o) for m in bench.MODELS for b in bench.QUICK.batches for o in bench.OPTIMIZERS} | {
        (m, b0, bench.NO_UPDATE) for m in bench.MODELS} | {
        (bench.VAMP, b0, bench.TRAINED_BY), (bench.PIXEL, b0, bench.TRAINED_BY), (bench.PIXEL, b0, bench.CHANNELS_LAST)}
    # the ceiling covers every operation of every workload: each was timed alone
    timed = {(s.pop("kind"), *s.values()) for s in ({k: v for k, v in x.items() if k != "gflops"}
                                                    for x in doc["gemm"]["shapes"])}
    for m in models:
        for op in bench.training_ops(get_config(m), b0):
            assert (type(op).__name__.lower(), *vars(op).values()) in timed, (m, op)
    assert all(x["gflops"] > 0 for x in doc["gemm"]["shapes"])
    for m in models:
        r = doc["training"]["roofline"][m]
        assert r["roofline_ms"] == pytest.approx(r["gemm_ms"] + r["update_ms"] + r["activations_ms"])
        assert r["update_bytes"] == bench.ADAM_BYTES * count_parameters(VAE(get_config(m)))
        assert min(r["gemm_ms"], r["update_ms"], r["activations_ms"], r["floor_ms"]) > 0
    assert doc["memory"]["gb_per_s"] > 0 and len(doc["memory"]["triad"]) >= 3
    assert [r["model"] for r in doc["nll"]["runs"]] == [bench.MAIN_MODEL] * 4
    assert [r["variant"] for r in doc["pixel"]["nll"]] == ["evaluate.py", f"chunk={bench.QUICK.pixel_chunk}"]
    v = doc["vamp"]
    assert v["nll_ratio"] == pytest.approx(v["nll_ms_per_image"] / v["base_nll_ms_per_image"])
    assert 0 < v["pseudo_share"] < 1 and v["gemm_epoch_s"] < v["roofline_epoch_s"]
    assert doc["fisher"]["max_rel_diff"] < 1e-4  # the vectorised routes agree with the loop (float64)
    assert doc["fisher"]["layers"] == len(VAE(get_config(bench.MAIN_MODEL)).linear_layers())
    assert set(doc["make"]) == set(timing.MAKE_TARGETS) and str(path) in stdout


@pytest.mark.smoke
def test_every_target_has_a_verdict_that_follows_from_its_numbers(quick_run):
    doc, stdout, _ = quick_run
    assert set(doc["targets"]) == {f"training:{m}" for m in bench.MODELS} | {
        "nll", "vamp_nll", "vamp_epoch", "pixel_training"}
    for key, tg in doc["targets"].items():
        assert tg["target"] == bench.TARGETS[key.split(":")[0]][1]
        assert tg["spread"] == pytest.approx(abs(tg["again"] - tg["as_trained"]))
        if tg["met"] is not None:
            assert tg["met"] == bench.verdict(tg)
        if tg["met"] is not True:  # a missed target says what stands in its way
            assert f"in the way: {tg['in_the_way']}" in stdout
    assert "ms" in doc["targets"]["training:scvae"]["in_the_way"]
    # the first timing's values are those of the rows the file keeps
    b0, tg = doc["settings"]["batches"][0], doc["targets"]
    for m in bench.MODELS:
        trained = next(r for r in doc["training"]["runs"]
                       if (r["model"], r["batch"], r["optimizer"]) == (m, b0, bench.TRAINED_BY))
        assert tg[f"training:{m}"]["as_trained"] == pytest.approx(trained["roofline_fraction"])
    assert tg["nll"]["as_trained"] == pytest.approx(doc["nll"]["runs"][0]["fraction"])
    assert tg["vamp_nll"]["as_trained"] == doc["vamp"]["nll_ratio"]
    assert tg["vamp_epoch"]["as_trained"] == doc["vamp"]["epoch_s"]
    assert tg["pixel_training"]["as_trained"] == pytest.approx(doc["pixel"]["training"][0]["fraction_same_batch"])


@pytest.mark.smoke
def test_the_appendix_table_shows_each_machine_and_marks_busy_ones(quick_run, tmp_path):
    doc, _, path = quick_run
    assert bench_tables.load_benches(tmp_path) == []  # no folder at all: "no benchmark yet"
    assert bench_tables.load_benches(path.parent.parent) == []  # only a quick run
    (tmp_path / "bench").mkdir()
    quiet = {**doc, "quick": False, "machine": "quiet-box", "warnings": [], "busy": False}
    busy = {**doc, "quick": False, "machine": "busy-box", "busy": True,
            "warnings": ["busy machine: load average up to 9.0 on 2 cores"]}
    old = {k: v for k, v in {**quiet, "machine": "old-box"}.items() if k not in ("vamp", "pixel", "memory")}
    for d in (quiet, busy, old):
        (tmp_path / "bench" / f"{d['machine']}.json").write_text(json.dumps(d))
    table = bench_tables.bench_table(tmp_path)
    assert table.columns == ("Measure", "busy-box (busy)", "old-box", "quiet-box")
    assert "busy-box" in table.caption and "quiet-box" not in table.caption
    cells = {row[0]: row[1:] for row in table.rows}
    assert cells["VampPrior NLL (vae-1l+vamp against vae-1l)"][1] == bench_tables.MISSING  # an older file
    assert cells["VampPrior NLL (vae-1l+vamp against vae-1l)"][2] != bench_tables.MISSING
    assert all(len(row) == 4 for row in table.rows)
    (tmp_path / "bench" / "broken.json").write_text("{")
    with pytest.raises(ResultError, match="corrupt"):
        bench_tables.load_benches(tmp_path)


@pytest.mark.smoke
def test_bookcheck_verifies_the_appendix_table(quick_run, tmp_path):
    doc, _, _ = quick_run
    results = tmp_path / "results"
    (results / "bench").mkdir(parents=True)
    (results / "bench" / "m.json").write_text(json.dumps({**doc, "quick": False}))
    site = tmp_path / "html"
    (site / "notebooks").mkdir(parents=True)
    (site / "index.html").write_text("<html><body><main></main></body></html>")
    page = site / "notebooks" / "07_performance.html"
    html = bench_tables.bench_table(results).to_html()
    page.write_text(f"<html><body><main>{html}</main></body></html>")
    toc = tmp_path / "_toc.yml"  # a book of this one page, whose source glues nothing
    toc.write_text("root: notebooks/07_performance\n")

    def check() -> list[str]:
        return check_book(site, results, sources=tmp_path / "notebooks", toc=toc)

    assert check() == []
    cell = next(row[1] for row in bench_tables.bench_table(results).rows if row[0] == "GEMM: fastest single shape")
    page.write_text(f"<html><body><main>{html.replace(cell, 'edited')}</main></body></html>")
    problems = check()
    assert len(problems) == 1 and "stale or edited" in problems[0]


@pytest.mark.unit
def test_bench_help_and_argument_errors():
    def scvae(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SCVAE, "bench", *args], capture_output=True, text=True, cwd=REPO_ROOT)

    done = scvae("--help")
    assert done.returncode == 0 and "--quick" in done.stdout and "--cpu-clock" in done.stdout
    done = scvae("--quick", "--threads", "2", "--cpu-clock", "--results-dir", "/nonexistent")
    assert done.returncode == 2 and "--threads 1" in done.stderr
