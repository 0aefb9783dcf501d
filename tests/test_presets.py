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
def test_quality_presets_are_the_measured_room_model(name: str) -> None:
    cfg = Config.preset(name)
    # The best model of bench/QUALITY.md: discrete codes of a patch-local 8x6 VQ-VAE (128 codes), attributes asked for.
    assert (cfg.model.model_kind, cfg.model.downsample, cfg.model.num_embeddings, cfg.model.vq_local) == (
        "discrete",
        2,
        128,
        True,
    )
    assert cfg.model == Config().model, "the presets train the default (best measured) architecture"
    sampling, default = cfg.run.sampling, Config().run.sampling
    assert (sampling.sample_steps, sampling.sampler, sampling.tie_mirrors) == (
        default.sample_steps,
        default.sampler,
        True,
    )
    assert cfg.train.use_amp is (name == "gpu")
