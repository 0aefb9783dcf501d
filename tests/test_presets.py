"""The shipped presets load, hold no paths, and the cpu / gpu presets use the documented architecture."""

from __future__ import annotations

import json

import pytest

from hmolqd.config import PRESETS_DIR, Config

PATH_KEYS = ("data_dir", "checkpoint_dir", "output_dir", "resume_from")


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.json")))
def test_preset_loads_and_holds_no_paths(name: str) -> None:
    flat = json.loads((PRESETS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    assert not set(flat) & set(PATH_KEYS), f"preset {name} must not hold paths"
    cfg = Config.preset(name)
    assert cfg.run.name == name


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_quality_presets_use_the_measured_tokenizer_and_in_context_conditions(name: str) -> None:
    cfg = Config.preset(name)
    # The VQ-VAE that meets the held-out bar (bench/vqvae_bar.py): 8x6 grid of 64-dim codes, 512 codes.
    assert (cfg.model.downsample, cfg.model.latent_dim, cfg.model.num_embeddings) == (2, 64, 512)
    assert cfg.model.cond_in_context is True
    assert cfg.train.use_amp is (name == "gpu")
