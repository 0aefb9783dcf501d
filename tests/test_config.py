from __future__ import annotations

import json
from pathlib import Path

import pytest

from hmolqd.config import LEGACY_VALUES, Config, ConfigError, ModelConfig, architecture_diff, flat_keys

REPO = Path(__file__).resolve().parents[1]

# The seed notebook's CONFIG exactly as users write it.
SEED_CONFIG = {
    "batch_size": 32,
    "num_epochs": 100,
    "learning_rate": 1e-4,
    "weight_decay": 0.01,
    "checkpoint_every": 5,
    "latent_dim": 64,
    "num_embeddings": 512,
    "num_timesteps": 1000,
    "embedding_dim": 256,
    "data_dir": "/kaggle/input/vglc",
    "checkpoint_dir": "/kaggle/working/checkpoints",
    "output_dir": "/kaggle/working/outputs",
    "resume_from": None,
    "auto_resume": True,
    "use_amp": True,
    "log_every": 10,
    "val_every": 1,
}


def test_seed_config_is_accepted_verbatim() -> None:
    cfg = Config.from_flat(SEED_CONFIG)
    assert cfg.train.batch_size == 32 and cfg.train.num_epochs == 100
    assert cfg.model.latent_dim == 64 and cfg.model.num_embeddings == 512
    assert cfg.paths.checkpoint_dir == "/kaggle/working/checkpoints"
    assert cfg.data.data_dir == "/kaggle/input/vglc"
    assert cfg.run.checkpoint.checkpoint_every == 5 and cfg.run.auto_resume is True
    assert {k: cfg.to_flat()[k] for k in SEED_CONFIG} == SEED_CONFIG


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("learnig_rate", "learning_rate"), ("batchsize", "batch_size"), ("num_epoch", "num_epochs")],
)
def test_unknown_key_is_named_with_suggestion(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'; did you mean '{suggestion}'"):
        Config.from_flat({key: 1})


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("batch_size", 0, "must be >= 1"),
        ("learning_rate", -1e-3, "must be > 0"),
        ("weight_decay", -0.1, "must be >= 0"),
        ("num_embeddings", 1, "at least 2 codes"),
        ("downsample", 3, "must be 1, 2 or 4"),
        ("schedule", "quadratic", "'linear' or 'cosine'"),
        ("ema_decay", 1.0, r"in \[0, 1\)"),
        ("batch_size", "eight", "must be an integer"),
        ("use_amp", "maybe", r"must be true \(auto.*false \(fp32\), 'fp16' or 'bf16'"),
        ("use_amp", 1, r"must be true \(auto.*'fp16' or 'bf16'"),
        ("use_amp", "float16", r"must be true \(auto.*'fp16' or 'bf16'"),
        ("monitor_mode", "up", "'min' or 'max'"),
        ("auto_resume", None, "may not be None"),
    ],
)
def test_out_of_range_value_names_key_and_rule(key: str, value: object, rule: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{key}'.*{rule}"):
        Config.from_flat({key: value})


def test_json_round_trip_is_exact() -> None:
    cfg = Config.from_flat({**SEED_CONFIG, "val_dungeons": ["tloz1_1", "tloz2_2"], "prediction": "eps"})
    text = cfg.to_json()
    assert json.loads(text)["model"]["prediction"] == "eps"
    assert Config.from_json(text) == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_flat_json_file_and_cli_strings(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 16, "use_amp": False}))
    cfg = Config.load(path)
    assert cfg.train.batch_size == 16 and cfg.train.use_amp is False
    # --set key=value passes strings: they are parsed by the field's type.
    cfg = cfg.with_overrides(
        batch_size="8", use_amp="true", learning_rate="3e-4", resume_from="none", val_dungeons="tloz1_1,tloz2_1"
    )
    assert (cfg.train.batch_size, cfg.train.use_amp, cfg.train.learning_rate) == (8, True, 3e-4)
    assert cfg.paths.resume_from is None and cfg.data.val_dungeons == ("tloz1_1", "tloz2_1")


def test_bad_json_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "batch_size": 8,\n  oops\n}')
    with pytest.raises(ConfigError, match=r"bad\.json: line 3"):
        Config.load(path)


def test_unknown_nested_section_and_key() -> None:
    with pytest.raises(ConfigError, match="unknown config section"):
        Config.from_dict({"optim": {}})
    with pytest.raises(ConfigError, match=r"section 'model'.*'latnt_dim'; did you mean 'latent_dim'"):
        Config.from_dict({"model": {"latnt_dim": 3}})


def test_flat_keys_are_unique_and_cover_every_field() -> None:
    keys = flat_keys()
    assert len(keys) == len(Config().to_flat())
    assert keys["latent_dim"] == "model" and keys["batch_size"] == "train"


def test_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.train.batch_size = 3  # type: ignore[misc]


def test_default_paths_local_and_kaggle(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HMOLQD_KAGGLE_ROOT", str(tmp_path / "nope"))
    paths = Config.from_flat({"name": "exp1"}).resolved().paths
    assert paths.checkpoint_dir == "runs/exp1/checkpoints" and paths.output_dir == "runs/exp1/outputs"
    kaggle = tmp_path / "kaggle" / "working"
    kaggle.mkdir(parents=True)
    monkeypatch.setenv("HMOLQD_KAGGLE_ROOT", str(tmp_path / "kaggle"))
    paths = Config().resolved().paths
    assert paths.checkpoint_dir == str(kaggle / "checkpoints") and paths.output_dir == str(kaggle / "outputs")
    # An explicit value always wins.
    assert Config.from_flat({"output_dir": "/x"}).resolved().paths.output_dir == "/x"


def test_architecture_diff_lists_every_key_with_both_values() -> None:
    saved = ModelConfig().__dict__ | {"latent_dim": 32, "num_embeddings": 512}
    diff = architecture_diff(saved, ModelConfig())
    assert diff == ["latent_dim: checkpoint=32 config=64", "num_embeddings: checkpoint=512 config=128"]
    assert architecture_diff(dict(ModelConfig().__dict__), ModelConfig()) == []
    # A checkpoint written before a model key existed had that key's default behaviour.
    older = {k: v for k, v in ModelConfig().__dict__.items() if k != "cond_stairs"}
    assert architecture_diff(older, ModelConfig()) == []
    assert architecture_diff(older, ModelConfig(cond_stairs=False)) == ["cond_stairs: checkpoint=True config=False"]
    # A checkpoint written before model_kind existed holds a continuous model with the VQ-VAE of that time.
    v010 = {k: v for k, v in ModelConfig().__dict__.items() if k not in LEGACY_VALUES["model"]}
    assert architecture_diff(v010, ModelConfig(**LEGACY_VALUES["model"])) == []
    assert "model_kind: checkpoint='continuous' config='discrete'" in architecture_diff(v010, ModelConfig())


def test_saved_configs_without_a_key_mean_what_their_version_did() -> None:
    nested = Config().to_dict()
    for section, keys in LEGACY_VALUES.items():
        for key in keys:
            del nested[section][key]
    old = Config.from_saved(nested)
    assert (old.model.model_kind, old.model.vq_local, old.data.door_augment) == ("continuous", False, 0)
    assert Config.from_json(json.dumps(nested)) == old  # config.json of an older run reads the same way
    assert Config.from_saved(Config().to_dict()) == Config()


# ---------------------------------------------------------------- the configuration table (docs/configuration.md)


def _table_tool():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_table", REPO / "tools" / "config_table.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_configuration_table_is_generated_from_config_py() -> None:
    """docs/configuration.md's table between the config-table markers is exactly what tools/config_table.py writes."""
    repo, tool = REPO, _table_tool()
    page = (repo / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert tool.PAGE == repo / "docs" / "configuration.md"
    assert tool.with_table(page) == page, (
        "docs/configuration.md's configuration table is out of date: run python tools/config_table.py"
    )
    # The README links the page, and the notebook's CONFIG cell points at the table by its page and heading.
    assert "(docs/configuration.md)" in (repo / "README.md").read_text(encoding="utf-8")
    assert "## Configuration table" in page and (
        'docs/configuration.md, \\"Configuration table\\"' in (repo / "train_h_molqd_kaggle.ipynb").read_text()
    )


def test_config_table_lists_every_key_with_section_default_and_comment() -> None:
    tool = _table_tool()
    docs, config_table = tool.key_docs(), tool.config_table
    assert [key for key, *_ in docs] == list(flat_keys())  # every key, once, in section order
    defaults = Config().to_flat()
    for key, section, default, comment in docs:
        assert flat_keys()[key] == section and default == defaults[key] and comment, key
        assert f"| `{key}` | {section} | `{default!r}` |" in config_table()


@pytest.mark.parametrize(
    ("given", "stored"),
    [("fp16", "fp16"), ("bf16", "bf16"), ("true", True), ("False", False), (True, True), ("no", False)],
)
def test_use_amp_takes_true_false_or_a_dtype_name(given: object, stored: object) -> None:
    cfg = Config.from_flat({"use_amp": given})  # a CONFIG value or a --set string
    assert cfg.train.use_amp is stored if isinstance(stored, bool) else cfg.train.use_amp == stored
    assert Config.from_json(cfg.to_json()) == cfg  # config.json and checkpoints round-trip it
