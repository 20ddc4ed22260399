"""The settings fingerprint: what a stored result depends on, and which results it keeps."""
import hashlib
import json

import pytest

from scvae_core import presets
from scvae_core.data import SUMS_FILE
from scvae_core.presets import EVAL_FIELDS, TRAINING_FIELDS, changed_settings, get_preset, run_preset, settings
from scvae_core.results import DEFAULT_RESULTS_DIR

pytestmark = pytest.mark.unit


def test_the_fingerprint_holds_the_data_list():
    stored = settings(get_preset("smoke"))
    assert stored["data_sums"] == presets.DATA_SUMS == hashlib.sha256(SUMS_FILE.read_bytes()).hexdigest()[:16]
    assert changed_settings(stored, get_preset("smoke", data_sums="another list")) == ["data_sums"]
    assert changed_settings(stored, get_preset("smoke", lr=1e-2)) == ["lr"]


def test_a_file_without_the_data_digest_was_made_from_the_list_of_its_time(monkeypatch):
    older = {k: v for k, v in settings(get_preset("smoke")).items() if k != "data_sums"}
    assert changed_settings(older, get_preset("smoke")) == []
    monkeypatch.setattr(presets, "DATA_SUMS_BEFORE_RECORDED", "an older list")  # the list has changed since
    assert changed_settings(older, get_preset("smoke")) == ["data_sums"]


def test_every_committed_result_fits_the_current_settings():
    docs = [json.loads(p.read_text()) for p in DEFAULT_RESULTS_DIR.glob("*/*/seed*/*.json")]
    docs = [d for d in docs if d.get("kind") in ("train", "eval") and d["preset"] in presets.PRESETS]
    assert docs, f"no committed results under {DEFAULT_RESULTS_DIR}"
    for doc in docs:
        names = TRAINING_FIELDS if doc["kind"] == "train" else (*TRAINING_FIELDS, *EVAL_FIELDS)
        preset = run_preset(doc["preset"], doc["model"])
        assert changed_settings(doc["preset_config"], preset, names) == [], (doc["preset"], doc["model"], doc["seed"])


def test_every_stage_has_its_seeds_and_every_twin_set_its_stage():
    for preset in presets.PRESETS.values():
        assert set(preset.seeds) == set(preset.stages), preset.name
    for name in ("smoke", "cpu", "paper"):
        assert {t.stage for t in presets.TWINS} <= set(get_preset(name).stages), name
    assert get_preset("cpu").seeds["activation"] == (0, 1, 2) and get_preset("cpu").seeds["init"] == (0,)
