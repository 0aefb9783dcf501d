"""One frozen configuration for every entry point (notebook, CLI, tests).

Five frozen sections (data / model / train / paths / run, declared in hmolqd.settings) make up `Config`; `run`
nests its parts by concern (checkpoint / logging / sampling). This module holds the facade: `Config`, the
training stages (`STAGE_TABLE`), the presets, and the mapping of flat keys onto the sections. The notebook's
flat `CONFIG` dict maps onto it with `Config.from_flat`: every flat key names exactly one field, and an unknown
key is an error that names it and suggests the closest valid key. `Config.to_dict` / `Config.from_dict`
round-trip the nested form through JSON (`config.json`, every checkpoint): each section is a flat dict of its
keys, nested parts included.

Only `ModelConfig` describes the architecture: on resume it comes from the checkpoint, and a differing
model key is an error (see `architecture_diff`). Every key is documented in the comment beside its field
(in hmolqd.settings; every section is importable from here too) and in the configuration table of
docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# Every section (and its constants) is importable from here, as before the sections moved to hmolqd.settings.
from hmolqd.settings import (  # noqa: F401
    AMP_DTYPES,
    MODEL_KINDS,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    LoggingConfig,
    ModelConfig,
    PathsConfig,
    RunConfig,
    SamplingSettings,
    TrainConfig,
)
from hmolqd.settings import check as _check
from hmolqd.settings.coerce import coerce as _coerce
from hmolqd.settings.rules import at_least

# the one setting for where the Kaggle tree is (tests point it at a temporary folder)
KAGGLE_ROOT_ENV = "HMOLQD_KAGGLE_ROOT"
# seeds are 0 .. 2**32 - 1: torch, numpy and Python's random all take them (every command and `illuminate` checks it)
SEED_LIMIT = 2**32


def kaggle_root() -> Path:
    """The Kaggle tree: `/kaggle`, or `$HMOLQD_KAGGLE_ROOT` where set. Its `input/` holds the attached (read-only)
    data sets, its `working/` the notebook's output folder."""
    return Path(os.environ.get(KAGGLE_ROOT_ENV) or "/kaggle")


def kaggle_input() -> Path:
    return kaggle_root() / "input"


def kaggle_working() -> Path:
    return kaggle_root() / "working"


PRESETS_DIR = Path(__file__).parent / "presets"
# a key of a flat JSON config starting with this is a comment (e.g. "//checkpoint_every": "why 25")
COMMENT_PREFIX = "//"


@dataclass(frozen=True)
class Stage:
    """One training stage: every fact about it, so that adding a stage is one row of `STAGE_TABLE`.

    The table sits here, in the bottom layer, because config (epoch keys), checkpointing (file names, the
    order of stages) and training all need it and imports point down. Its facts are plain data; what they
    mean for the model is read off them in `hmolqd.training.stages`: the objective is the sum of the losses
    of the parts in `trains` (the VQ-VAE's reconstruction loss, the denoiser's diffusion loss), those parts
    are the ones in train mode with gradients, and a stage that leaves the VQ-VAE frozen iterates over
    latents (or codes) encoded once.
    """

    name: str  # in checkpoints ("stage"), the history records and log lines
    epochs_key: str  # the TrainConfig field (flat config key) that counts its epochs
    file_prefix: str  # its checkpoint files: checkpoint_{file_prefix}epoch_N.pt ("" keeps the seed's names)
    trains: tuple[str, ...]  # the RoomModel parts it trains, in the optimizer's parameter order
    starts_denoiser: bool = False  # a fresh start sets the latent scale (or code mirror maps) and restarts the EMA

    @property
    def trains_vqvae(self) -> bool:
        return "vqvae" in self.trains

    @property
    def trains_denoiser(self) -> bool:  # the EMA follows it every step, and generation metrics are measured
        return "diffusion" in self.trains

    @property
    def on_latents(self) -> bool:
        """The VQ-VAE is frozen in this stage, so the rooms are encoded once and the stage iterates over latents."""
        return not self.trains_vqvae


# The training stages in order: VQ-VAE, latent diffusion on the frozen VQ-VAE, optional joint fine-tuning.
# Checkpoint file names, the trainer, the config checks and the history plots all read them from here, at
# call time (`stages()`, `stage_named`), so that a test may register another stage by replacing this table.
STAGE_TABLE: tuple[Stage, ...] = (
    Stage("vqvae", epochs_key="vqvae_epochs", file_prefix="vqvae_", trains=("vqvae",)),
    Stage("diffusion", epochs_key="num_epochs", file_prefix="", trains=("diffusion",), starts_denoiser=True),
    Stage("joint", epochs_key="joint_epochs", file_prefix="joint_", trains=("vqvae", "diffusion")),
)


def stages() -> tuple[Stage, ...]:
    return STAGE_TABLE


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in STAGE_TABLE)


def denoiser_stage() -> Stage:
    """The stage that first trains the denoiser: a model without its epochs generates noise."""
    return next(s for s in STAGE_TABLE if s.starts_denoiser)


def stage_named(name: str) -> Stage:
    for stage in STAGE_TABLE:
        if stage.name == name:
            return stage
    raise ConfigError(f"unknown stage {name!r}; stages are {stage_names()}")


# What a saved config (config.json, a checkpoint) written before a key existed meant: the behaviour of the
# version that wrote it. Keys not listed here had their current default then.
LEGACY_VALUES: dict[str, dict[str, Any]] = {
    "data": {"door_augment": 0},
    "model": {
        "model_kind": "continuous",
        "vq_local": False,
        "codebook_restart": "uniform",
        "column_pad": "zero",
        "attn_radius": 0,
        "cond_attributes": False,
    },
}

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "paths": PathsConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        # Every stage's epoch count, read off the table, so that a registered stage's key is checked too.
        at_least(self.train, tuple(stage.epochs_key for stage in STAGE_TABLE), 0)
        for stage in (s for s in STAGE_TABLE if s.trains_vqvae and s.trains_denoiser):  # the joint stage
            epochs = getattr(self.train, stage.epochs_key)
            _check(
                epochs == 0 or self.model.model_kind == "continuous",
                stage.epochs_key,
                "must be 0 with model_kind 'discrete' (code indices carry no gradient to the VQ-VAE)",
                epochs,
            )

    # ---- flat form (the notebook's CONFIG dict, the CLI's --set key=value) ----
    @classmethod
    def from_flat(cls, flat: dict[str, Any], base: Config | None = None) -> Config:
        """Build from a flat dict such as the notebook's CONFIG; unknown keys are rejected by name."""
        base = base or cls()
        owner = _owners()
        updates: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in flat.items():
            if key not in owner:
                raise ConfigError(_unknown_key_message(key, owner))
            path, holder = owner[key]
            updates[path.split(".")[0]][key] = _coerce(holder, key, value)
        return cls(**{name: _replace_flat(getattr(base, name), updates[name]) for name in SECTIONS})

    def to_flat(self) -> dict[str, Any]:
        return {k: v for name in SECTIONS for k, v in _flat_values(getattr(self, name)).items()}

    def with_overrides(self, **flat: Any) -> Config:
        return Config.from_flat(flat, base=self)

    # ---- nested form (config.json, checkpoints) ----
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict of str/int/float/bool/None/list: safe for JSON and `weights_only` loads."""
        out = {}
        for name in SECTIONS:  # a nested part (run.checkpoint, ...) is saved flat in its section, as before the split
            section = _flat_values(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        return out

    @classmethod
    def from_dict(cls, nested: dict[str, Any]) -> Config:
        unknown = sorted(set(nested) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; valid sections: {sorted(SECTIONS)}")
        flat: dict[str, Any] = {}
        for name, values in nested.items():
            valid = {key for key, _, _ in leaf_fields(SECTIONS[name], name)}
            for key, value in values.items():
                if key not in valid:
                    raise ConfigError(
                        f"config section {name!r}: " + _unknown_key_message(key, {k: name for k in valid})
                    )
                flat[key] = value
        return cls.from_flat(flat)

    @classmethod
    def from_saved(cls, nested: dict[str, Any]) -> Config:
        """`from_dict` for a config a run wrote (config.json, a checkpoint): a key it lacks was written by an
        older version and takes that version's value (`LEGACY_VALUES`), not today's default."""
        return cls.from_dict(with_legacy_values(nested))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> Config:
        try:
            nested = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: line {err.lineno} column {err.colno}: invalid JSON: {err.msg}") from err
        if not isinstance(nested, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(nested).__name__}")
        nested = {k: v for k, v in nested.items() if not str(k).startswith(COMMENT_PREFIX)}  # JSON has no comments
        # A config file may be flat (like the notebook's CONFIG) or nested (like config.json).
        if nested and all(isinstance(v, dict) for v in nested.values()) and set(nested) <= set(SECTIONS):
            return cls.from_saved(nested)  # the nested form is what a run saves (config.json)
        return cls.from_flat(nested)

    @classmethod
    def preset(cls, name: str) -> Config:
        """A documented preset shipped in hmolqd/presets/<name>.json (see docs/configuration.md)."""
        path = PRESETS_DIR / f"{name}.json"
        if not path.is_file():
            names = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
            raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(names)}")
        return cls.load(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
        except UnicodeDecodeError as err:
            line = path.read_bytes()[: err.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}:{line}: not UTF-8 text (byte offset {err.start}); a config file is JSON in UTF-8"
            ) from err
        return cls.from_json(text, source=str(path))

    # ---- derived values ----
    def resolved(self) -> Config:
        """Fill the path defaults for where this runs (Kaggle or local)."""
        working = kaggle_working()
        base = working if working.is_dir() else Path("runs") / self.run.name
        paths = dataclasses.replace(
            self.paths,
            checkpoint_dir=self.paths.checkpoint_dir or str(base / "checkpoints"),
            output_dir=self.paths.output_dir or str(base / "outputs"),
        )
        return dataclasses.replace(self, paths=paths)


def leaf_fields(cls: type, path: str) -> list[tuple[str, type, str]]:
    """(flat key, the dataclass that declares it, its dotted section such as "run.checkpoint") of every key of
    section class `cls`, in declaration order; a field holding a dataclass contributes that dataclass's keys."""
    out: list[tuple[str, type, str]] = []
    for f in fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += leaf_fields(type(default), f"{path}.{f.name}")
        else:
            out.append((f.name, cls, path))
    return out


def _owners() -> dict[str, tuple[str, type]]:
    """Every flat key -> (its dotted section, the dataclass that declares it); flat keys are unique."""
    owner: dict[str, tuple[str, type]] = {}
    for name, cls in SECTIONS.items():
        for key, holder, path in leaf_fields(cls, name):
            assert key not in owner, f"flat key {key!r} is defined twice"
            owner[key] = (path, holder)
    return owner


def flat_keys() -> dict[str, str]:
    """Map every flat key to its dotted section ("train", "run.sampling", ...)."""
    return {key: path for key, (path, _) in _owners().items()}


def _replace_flat(section: Any, flat: dict[str, Any]) -> Any:
    """`section` with the flat keys it (or a nested part of it) declares set from `flat`; validated on the way."""
    changes = {}
    for f in fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = _replace_flat(value, flat)
        elif f.name in flat:
            changes[f.name] = flat[f.name]
    return dataclasses.replace(section, **changes)


def _flat_values(section: Any) -> dict[str, Any]:
    """Every flat key of `section` (nested parts included) -> its value."""
    out: dict[str, Any] = {}
    for f in fields(section):
        value = getattr(section, f.name)
        out.update(_flat_values(value) if dataclasses.is_dataclass(value) else {f.name: value})
    return out


def with_legacy_values(nested: dict[str, Any]) -> dict[str, Any]:
    """A saved nested config with every key it lacks from `LEGACY_VALUES` filled in (see `Config.from_saved`)."""
    out = {name: dict(values) if isinstance(values, dict) else values for name, values in nested.items()}
    for section, legacy in LEGACY_VALUES.items():
        if isinstance(out.get(section), dict):
            out[section] = {**legacy, **out[section]}
    return out


def architecture_diff(saved: dict[str, Any], current: ModelConfig) -> list[str]:
    """Differences between a checkpoint's `model` section and the current one, as 'key: saved -> current'."""
    now = dataclasses.asdict(current)
    # A key added after the checkpoint was written means what that version did (LEGACY_VALUES), else its default.
    saved = {**dataclasses.asdict(ModelConfig()), **with_legacy_values({"model": saved})["model"]}
    keys = sorted(set(saved) | set(now))
    return [
        f"{k}: checkpoint={saved.get(k, '<absent>')!r} config={now.get(k, '<absent>')!r}"
        for k in keys
        if saved.get(k, "<absent>") != now.get(k, "<absent>")
    ]


def _unknown_key_message(key: str, owner: dict[str, Any]) -> str:
    close = difflib.get_close_matches(str(key), list(owner), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint} (valid keys: {', '.join(sorted(owner))})"
