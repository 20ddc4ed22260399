"""Fabricated, schema-valid result files (train.json, eval.json, figures.npz) for tests of the
code that reads results: tables, plots, reproduce. The numbers mean nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scvae_core.presets import DEFAULT_DATASET, run_preset
from scvae_core.results import RunPaths, write_json, write_npz
from scvae_core.zoo import get_config

PROVENANCE = {"note": "fabricated by tests/fake_results.py"}


def write_eval(results_dir: Path, preset: str, model: str, seed: int, *, nll: float = 90.0, acc: float = 0.9,
               elbo: float = -95.0, kl: float = 20.0, active_units: int = 30, enc: float = 1e-3,
               dec: float = 1e-2, model_mean: float | None = None, prop1_pairs: list[dict] | None = None,
               prop3_layers: list[dict] | None = None, wall_time_s: float = 2.0,
               nll_by_samples: dict[str, float] | None = None, readings: dict | None = None,
               epoch: int | None = None, nll_samples: int = 8, acc_std: float = 0.01,
               fold_accs: list[float] | None = None, mi: tuple[float, float] | None = None,
               linear_probe: float | None = None, heldout: float | None = None, ignores_z: bool = False,
               dataset: str = DEFAULT_DATASET) -> Path:
    """``readings``: {"model" | "empirical" | "authors": {side: (log10 value, se)}}, written as the
    robust summary (model, empirical) or the authors' block, as evaluate.py writes them. ``mi``
    (value, se) writes a ``diagnostics`` block (rate and distortion from ``kl`` and ``elbo``; the
    bypass check's verdict ``ignores_z``);
    without it the file is one evaluated before the diagnostics existed."""
    paths = RunPaths(Path(results_dir), preset, model, seed, dataset)
    metrics = {"nll": nll, "nll_se": 0.1, "nll_samples": nll_samples, "elbo": elbo, "rec": elbo + kl, "kl": kl,
               "test_size": 64, "active_units": active_units, "au_threshold": 0.01, "svm_acc": acc,
               "svm_acc_std": acc_std, "svm_fold_accs": fold_accs or [acc, acc], "svm_size": 200}
    if nll_by_samples is not None:
        metrics["nll_by_samples"] = nll_by_samples
    if heldout is not None:  # the SVM fitted on training labels (data sets that have them)
        metrics |= {"svm_heldout_acc": heldout, "svm_heldout_acc_se": 0.002, "svm_heldout_train_size": 200}
    if linear_probe is not None:
        metrics |= {"linear_probe_acc": linear_probe, "linear_probe_acc_std": 0.01,
                    "linear_probe_fold_accs": [linear_probe, linear_probe]}
    layers = [{"name": "encoder.mlp.layers.0", "part": "encoder", "exact": enc, "kfac": enc},
              {"name": "decoder.mlp.layers.0", "part": "decoder", "exact": dec, "kfac": dec}]
    fisher = {"targets": "model", "points": 16, "layers": layers, "encoder_mean": enc, "decoder_mean": dec,
              "model_mean": (enc + dec) / 2 if model_mean is None else model_mean}
    extra = {}
    for reading, sides in (readings or {}).items():
        if reading == "authors":
            extra["fisher_authors"] = {side: {"strict": None, "with_first": {"log10_mean": v, "log10_se": se}}
                                       for side, (v, se) in sides.items()}
            continue
        block = fisher if reading == "model" else extra.setdefault("fisher_empirical", {"targets": "empirical"})
        block["sides"] = {side: {"log10_mean_of_points": v, "log10_se": se} for side, (v, se) in sides.items()}
    if mi is not None:
        extra["diagnostics"] = {
            "mutual_information": {"value": mi[0], "se": mi[1], "points": 64, "draws_per_point": 10,
                                   "samples": 640, "log_n_bound": 4.16, "mean_kl": kl, "mean_kl_se": 0.1,
                                   "marginal_kl": kl - mi[0], "marginal_kl_se": 0.1},
            "active_units": {"count": active_units, "threshold": 0.01, "metrics_threshold": 0.01,
                             "same_threshold": True, "unit_variance": [0.5] * 50},
            "kl_per_unit": {"values": [kl / 10] * 10 + [0.0] * 40},
            "rate_distortion": {"rate": kl, "distortion": -(elbo + kl), "source": "fabricated"},
            "bypass": {"mean_abs_change": 0.2, "mean_abs_change_se": 0.01, "delta_log_likelihood": 30.0,
                       "delta_log_likelihood_se": 1.0, "points": 64, "tolerance": 0.01, "ignores_z": ignores_z,
                       "source": "fabricated"}}
    derivations = {"proposition1": {"pairs": prop1_pairs or []}}
    if prop3_layers is not None:
        derivations["proposition3"] = {"layers": prop3_layers}
    write_json(paths.eval_json_at(epoch), "eval", {
        "model": model, "preset": preset, "seed": seed, "dataset": dataset, "config": get_config(model).to_dict(),
        "preset_config": run_preset(preset, model, dataset).to_dict(), "provenance": PROVENANCE, "wall_time_s": wall_time_s,
        "metrics": metrics, "fisher": fisher, "derivations": derivations, **extra})
    return paths.eval_json_at(epoch)


def write_train(results_dir: Path, preset: str, model: str, seed: int, *, epochs: int = 3,
                wall_time_s: float = 5.0, device_name: str | None = None, dataset: str = DEFAULT_DATASET) -> Path:
    paths = RunPaths(Path(results_dir), preset, model, seed, dataset)
    history = [{"epoch": e, "train_loss": 100.0 - e, "train_elbo": -100.0 + e, "valid_elbo": -101.0 + e,
                "rec": -80.0, "kl": 20.0, "beta": 1.0, "seconds": 1.0} for e in range(1, epochs + 1)]
    write_json(paths.train_json, "train", {
        "model": model, "preset": preset, "seed": seed, "dataset": dataset, "config": get_config(model).to_dict(), "preset_config": run_preset(preset, model, dataset).to_dict(),
        "provenance": {**PROVENANCE, **({"device_name": device_name} if device_name else {})}, "history": history, "best_epoch": epochs, "best_valid_elbo": history[-1]["valid_elbo"],
        "epochs_run": epochs, "stopped": "max_epochs", "wall_time_s": wall_time_s})
    return paths.train_json


def write_figures(results_dir: Path, preset: str, model: str, seed: int, *, n: int = 60, k: int = 4,
                  epoch: int | None = None, nll_per_image: np.ndarray | None = None,
                  dataset: str = DEFAULT_DATASET) -> Path:
    paths = RunPaths(Path(results_dir), preset, model, seed, dataset)
    rng = np.random.default_rng(seed)
    tsne = {f"tsne_{key}": rng.normal(size=(n, 2)).astype(np.float32)
            for key in ("raw", "first", "middle", "last", "latent")}
    images = {key: rng.random((k, 28, 28)).astype(np.float32) for key in ("recon_truth", "recon_model", "samples")}
    per_image = {} if nll_per_image is None else {"nll_per_image": np.asarray(nll_per_image, dtype=np.float64),
                                                  "nll_test_index": np.arange(len(nll_per_image))}
    write_npz(paths.figures_npz_at(epoch), labels=np.arange(n) % 10, **tsne, **images, **per_image)
    return paths.figures_npz_at(epoch)
