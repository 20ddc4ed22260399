"""The GPU sprint, dry-run on CPU with the smoke preset, as the GPU machine would run it: an
interpreter on which Dask and openTSNE cannot be imported, every run budgeted, the results
packed into at most 8 files of at most 16 MiB and unpacked again."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from scvae_core.runner import sprint
from scvae_core.presets import get_preset
from scvae_core.results import RunPaths, read_json

REPO = Path(__file__).resolve().parent.parent
ABSENT = ("openTSNE", "dask", "distributed")  # not on the GPU machine's interpreter
SEEDS = (0, 1)


def scvae(args: list[str], tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """`python -m scvae_core.cli ARGS` with PYTHONPATH=. and the ABSENT packages unimportable."""
    absent = tmp_path / "absent"
    for name in ABSENT:
        (absent / name).mkdir(parents=True, exist_ok=True)
        (absent / name / "__init__.py").write_text(f"raise ImportError('{name}: not on the GPU machine')\n")
    env = {**os.environ, "PYTHONPATH": f"{absent}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1",
           "SCVAE_DATA": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "scvae_core.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.smoke
def test_sprint_dry_run_trains_budgeted_packs_and_unpacks(tmp_path, data_dir):
    results, pack_dir, back = tmp_path / "results", tmp_path / "pack", tmp_path / "unpacked"
    # --minutes 1 all kept for evaluation: a training budget of 0 s, so every run stops after its first epoch.
    # Seeds 0 (a figure seed: t-SNE skipped) and 1 (not one) stand for 0-2, to keep the test short.
    done = scvae(["sprint", "--preset", "smoke", "--device", "cpu", "--seeds", *map(str, SEEDS), "--results-dir",
                  str(results),
                  "--pack-dir", str(pack_dir), "--minutes", "1", "--eval-minutes", "1", "--jobs", "2", "--no-progress",
                  "--revision", "abc123"], tmp_path, data_dir)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    models = get_preset("smoke").stage_models("table1")
    for model in models:
        for seed in SEEDS:
            paths = RunPaths(results, "smoke", model, seed)
            train = read_json(paths.train_json, "train")
            assert (train["epochs_run"], train["stopped"]) == (1, "time_budget"), paths.dir
            evaluation = read_json(paths.eval_json, "eval")
            assert evaluation.get("tsne_skipped") == ("openTSNE is not installed" if seed == 0 else None)
    summary = read_json(results / "smoke" / "sprint.json", "sprint")
    assert len(summary["runs"]) == len(models) * len(SEEDS) and summary["failures"] == []
    assert {(r["epochs_run"], r["stopped"]) for r in summary["runs"]} == {(1, "time_budget")}
    assert summary["tsne"] == "skipped: openTSNE is not installed" and summary["concurrent_runs"] == 2
    assert summary["checkout_revision"] == "abc123"
    assert read_json(results / "smoke" / "stage-table1.json", "stage")["complete"]

    packed = sorted(pack_dir.iterdir())
    assert 2 <= len(packed) <= sprint.MAX_FILES and all(p.stat().st_size <= sprint.MAX_FILE_BYTES for p in packed)
    again = scvae(["sprint", "--unpack", str(pack_dir), "--results-dir", str(back)], tmp_path, data_dir)
    assert again.returncode == 0, again.stderr[-3000:]

    def result_files(results_dir: Path) -> dict[str, bytes]:
        return {str(p.relative_to(results_dir)): p.read_bytes() for p in sorted((results_dir / "smoke").rglob("*"))
                if p.is_file() and "checkpoints" not in p.parts}

    assert result_files(back) == result_files(results)
    assert not list(back.rglob("*.pt")) and any(results.rglob("*.pt"))  # checkpoints stay behind


@pytest.mark.unit
def test_pack_splits_into_parts_and_unpack_checks_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sprint, "MAX_FILE_BYTES", 4096)
    run = tmp_path / "results" / "smoke" / "scvae" / "seed0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "eval.json").write_bytes(os.urandom(10_000))  # incompressible: three parts
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    (run / ".lock").write_text("{}")
    parts = sprint.pack(tmp_path / "results", "smoke", tmp_path / "pack")
    assert [p.name for p in parts] == [f"results.tar.gz.{i:02d}" for i in range(3)] + ["MANIFEST.json"]
    written = sprint.unpack(tmp_path / "pack", tmp_path / "back")
    assert written == [tmp_path / "back" / "smoke" / "scvae" / "seed0" / "eval.json"]
    assert written[0].read_bytes() == (run / "eval.json").read_bytes()

    altered = bytearray(parts[1].read_bytes())
    altered[-1] ^= 0xFF  # flip, not overwrite: a random last byte could already be the new value
    parts[1].write_bytes(bytes(altered))
    with pytest.raises(ValueError, match=r"results.tar.gz.01: missing or altered"):
        sprint.unpack(tmp_path / "pack", tmp_path / "back2")
    monkeypatch.setattr(sprint, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ValueError, match="more than 7 parts"):
        sprint.pack(tmp_path / "results", "smoke", tmp_path / "pack3")


@pytest.mark.unit
def test_a_sprint_on_another_data_set_packs_and_unpacks_its_own_folder(tmp_path):
    for dataset in ("mnist-static", "fashion-static"):  # an MNIST run beside it stays out of the pack
        run = RunPaths(tmp_path / "results", "smoke", "scvae", 0, dataset).dir
        run.mkdir(parents=True)
        (run / "eval.json").write_text(dataset)
    sprint.pack(tmp_path / "results", "smoke", tmp_path / "pack", "fashion-static")
    assert json.loads((tmp_path / "pack" / "MANIFEST.json").read_text())["dataset"] == "fashion-static"
    written = sprint.unpack(tmp_path / "pack", tmp_path / "back")
    assert written == [tmp_path / "back" / "fashion-static" / "smoke" / "scvae" / "seed0" / "eval.json"]
    assert written[0].read_text() == "fashion-static"


@pytest.mark.unit
def test_unpack_refuses_members_outside_the_preset(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("smoke/../../evil.py")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    blob = buffer.getvalue()
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "results.tar.gz.00").write_bytes(blob)
    import hashlib

    digest = hashlib.sha256(blob).hexdigest()
    (pack_dir / "MANIFEST.json").write_text(json.dumps(
        {"preset": "smoke", "parts": [{"name": "results.tar.gz.00", "bytes": len(blob), "sha256": digest}]}))
    with pytest.raises(ValueError, match="refusing archive member"):
        sprint.unpack(pack_dir, tmp_path / "results")
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.unit
def test_bad_layouts_and_missing_data_stop_the_sprint_before_any_run(tmp_path, capsys):
    from scvae_core import cli

    base = ["sprint", "--preset", "smoke", "--device", "cpu", "--results-dir", str(tmp_path / "results")]
    assert cli.main([*base, "--pack-dir", str(tmp_path / "p1"), "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
    (tmp_path / "nodata").mkdir()
    assert cli.main([*base, "--pack-dir", str(tmp_path / "p2"), "--data-dir", str(tmp_path / "nodata")]) == 2
    assert "binarized MNIST is missing" in capsys.readouterr().err
    assert cli.main(base) == 2 and "needs --pack-dir" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.unit
def test_budget_is_shared_by_the_waves_and_the_pack_dir_must_be_empty(tmp_path):
    assert sprint.plan_budget(9, 3, runs=18, jobs=18) == 360
    assert sprint.plan_budget(9, 3, runs=18, jobs=6) == 120
    assert sprint.plan_budget(1, 1, runs=4, jobs=2) == 0
    with pytest.raises(ValueError, match="--minutes"):
        sprint.plan_budget(0, 0, 1, 1)
    (tmp_path / "old").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        sprint._check_pack_dir(tmp_path)
