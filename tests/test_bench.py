"""`scvae bench`: its FLOP model against a hand count, the ceiling's definition, the result file
of a quick run (schema and sections), the make-timing records and the CLI. No timing is asserted:
the speed targets live in the benchmark's output."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scvae_core import bench
from scvae_core.models import ModelConfig
from scvae_core.results import ResultError
from scvae_core.zoo import get_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SCVAE = [sys.executable, "-m", "scvae_core.cli"]
TINY = ModelConfig(hidden=4, latent=2)  # enc 784->4, mu 4->2, logvar 4->2; dec 2->4, out 4->784


def test_flop_model_matches_a_hand_count():
    forward = 2 * (784 * 4 + 4 * 2 + 4 * 2 + 2 * 4 + 4 * 784)  # 12,592
    weight_grads = forward
    input_grads = forward - 2 * 784 * 4  # none for the layer fed by the data
    assert bench.flop_model(TINY) == {
        "train_per_image": forward + weight_grads + input_grads,  # 31,504
        "nll_per_sample": 2 * (2 * 4 + 4 * 784),  # the decoder
        "nll_per_image": 2 * (784 * 4 + 4 * 2 + 4 * 2),  # the encoder
    }
    assert bench.flops(bench.training_gemms(TINY, 3)) == 3 * 31504


def test_ceiling_is_the_flop_weighted_harmonic_mean():
    a, b = bench.Gemm("forward", 10, 10, 10), bench.Gemm("forward", 20, 10, 10)  # 2,000 and 4,000 FLOPs
    rates = {a: 1000.0, b: 4000.0}  # 2 s + 1 s for 6,000 FLOPs
    assert bench.ceiling([a, b], rates) == pytest.approx(2000.0)


def test_machine_slug_names_hardware_not_hosts():
    assert bench.machine_slug({"gpu": None, "cpu": "AMD EPYC", "logical_cores": 2}) == "amd-epyc-2cpu"
    assert bench.machine_slug({"gpu": "NVIDIA H100 80GB HBM3", "cpu": "x", "logical_cores": 16}) \
        == "nvidia-h100-80gb-hbm3"
    assert bench.machine_slug({"gpu": None, "cpu": "Intel(R) Xeon(R) Gold 6338", "logical_cores": 8}) \
        == "intel-xeon-gold-6338-8cpu"


def test_record_timing_round_trip(tmp_path):
    assert bench.recorded_timings(tmp_path) == {"book": None, "test": None}
    bench.record_timing("test", 123.456, tmp_path)
    found = bench.recorded_timings(tmp_path)
    assert found["book"] is None and found["test"]["seconds"] == 123.5 and found["test"]["recorded_at"]
    with pytest.raises(ValueError):
        bench.record_timing("../evil", 1.0, tmp_path)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    # One thread on its CPU clock: the test suite shares the machine, and oversubscribed threads are slow.
    done = subprocess.run([*SCVAE, "bench", "--quick", "--threads", "1", "--cpu-clock", "--no-progress",
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done.stdout


def test_quick_bench_writes_a_schema_valid_file_with_every_section(quick_run):
    out, stdout = quick_run
    files = list((out / "bench").glob("*.json"))
    assert len(files) == 1 and files[0].name.endswith("-quick.json")  # never replaces a machine's real file
    doc = bench.read_bench(files[0])
    assert doc["kind"] == "bench" and doc["quick"] is True
    assert {"git_revision", "device_name", "written_at"} <= set(doc["provenance"])
    assert doc["machine"] == bench.machine_slug(doc["machine_description"])
    assert doc["flop_model"]["scvae"] == bench.flop_model(get_config("scvae"))
    assert {(r["model"], r["batch"], r["optimizer"]) for r in doc["training"]["runs"]} == {
        (m, b, o) for m in bench.MODELS for b in bench.QUICK.batches for o in bench.OPTIMIZERS} | {
        (m, bench.QUICK.batches[0], bench.NO_UPDATE) for m in bench.MODELS} | (
        {(bench.MAIN_MODEL, bench.QUICK.batches[0], bench.COMPILED)} if bench.QUICK.compile else set())
    for row in [*doc["training"]["runs"], *doc["nll"]["runs"]]:
        assert row["gflops"] > 0 and row["fraction"] > 0
    assert doc["training"]["profile"]["top_ops"]
    assert doc["nll"]["projected"]["evaluate_py_s"] > 0
    assert set(doc["make"]) == set(bench.MAKE_TARGETS)
    assert set(doc["targets"]) == {"training", "nll"}
    assert all(t["met"] in bench.VERDICTS for t in doc["targets"].values())
    # what stands in the way of the training target: the update's share, and the step without it
    training = doc["targets"]["training"]
    assert 0 < training["update_share"] < 1 and training["without_update"] > training["as_trained"]
    assert "in the way: the parameter update takes" in stdout
    assert doc["total_s"] > 0
    assert "total" in stdout and str(files[0]) in stdout
    assert set(bench.headline(doc)) and all(v > 0 for v in bench.headline(doc).values())


def test_vectorised_fisher_agrees_with_the_loop(quick_run):
    out, _ = quick_run
    doc = bench.read_bench(next((out / "bench").glob("*.json")))
    assert doc["fisher"]["max_rel_diff"] < 1e-4
    f = doc["fisher"]
    assert f["speedup"] == pytest.approx(f["loop_s"] / f["hooks_s"])  # the route eval.json takes
    assert doc["fisher"]["layers"] == len(bench.linear_shapes(get_config("scvae")))


def test_book_leaves_quick_runs_out(quick_run, tmp_path):
    out, _ = quick_run
    assert bench.load_benches(tmp_path) == []  # no folder at all: "no benchmark yet"
    assert bench.load_benches(out) == []  # only a quick run
    doc = json.loads(next((out / "bench").glob("*.json")).read_text())
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "m.json").write_text(json.dumps({**doc, "quick": False}))
    assert len(bench.load_benches(tmp_path)) == 1
    (tmp_path / "bench" / "broken.json").write_text("{")
    with pytest.raises(ResultError, match="corrupt"):
        bench.load_benches(tmp_path)


def test_bench_help_and_argument_errors():
    def scvae(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SCVAE, "bench", *args], capture_output=True, text=True, cwd=REPO_ROOT)

    done = scvae("--help")
    assert done.returncode == 0 and "--quick" in done.stdout and "--record-timing" in done.stdout
    done = scvae("--record-timing", "test", "soon")
    assert done.returncode == 2 and "error" in done.stderr
    done = scvae("--quick", "--threads", "2", "--cpu-clock", "--out", "/nonexistent")
    assert done.returncode == 2 and "--threads 1" in done.stderr
