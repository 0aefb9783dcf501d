"""One frozen configuration for every entry point (notebook, CLI, tests).

Five nested frozen dataclasses (data / model / train / paths / run) make up `Config`. The notebook's
flat `CONFIG` dict maps onto it with `Config.from_flat`: every flat key names exactly one field, and an
unknown key is an error that names it and suggests the closest valid key. `Config.to_dict` /
`Config.from_dict` round-trip the nested form through JSON (`config.json`, every checkpoint).

Only `ModelConfig` describes the architecture: on resume it comes from the checkpoint, and a differing
model key is an error (see `architecture_diff`). Every key is documented in its field's docstring-comment
below and in the README's configuration table.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

KAGGLE_WORKING = Path("/kaggle/working")
# The training stages in order: VQ-VAE, latent diffusion on the frozen VQ-VAE, optional joint fine-tuning.
# Checkpoint file names, the trainer and the history plots all take the names from here.
STAGES: tuple[str, ...] = ("vqvae", "diffusion", "joint")
PRESETS_DIR = Path(__file__).parent / "presets"
COMMENT_PREFIX = "//"  # a key of a flat JSON config starting with this is a comment (e.g. "//checkpoint_every": "why 25")


class ConfigError(ValueError):
    """A configuration key is unknown or its value breaks a rule; the message names the key."""


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} = {value!r}: {rule}")


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None  # VGLC "The Legend of Zelda" folder; None = discover (see hmolqd.data)
    val_dungeons: tuple[str, ...] = ("tloz4_1", "tloz8_2")  # whole dungeons held out for validation
    mirror_augment: bool = True  # add left-right / top-bottom mirrored training rooms (doors follow)

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_dungeons", tuple(self.val_dungeons))
        _check(len(self.val_dungeons) >= 1, "val_dungeons", "hold out at least one dungeon", self.val_dungeons)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Changing any of these on resume is an error."""

    num_embeddings: int = 512  # VQ codebook size
    latent_dim: int = 64  # size of one code vector (channels of the latent grid)
    embedding_dim: int = 256  # hidden width of the VQ-VAE encoder/decoder
    downsample: int = 2  # room (16x11, padded to 16x12) -> latent grid 8x6 (2), 4x3 (4) or 16x12 (1)
    num_timesteps: int = 1000  # DDPM training steps T
    schedule: str = "cosine"  # noise schedule: "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    prediction: str = "v"  # denoiser target: "eps" or "v" (Salimans & Ho 2022)
    denoiser_dim: int = 256  # width of the latent denoiser
    denoiser_depth: int = 6  # number of denoiser blocks
    cond_stairs: bool = True  # condition on has-stairs as well as the 4 door sides
    cond_in_context: bool = False  # also feed each condition as a token the latent tokens attend to (DiT sec. 3.2)

    def __post_init__(self) -> None:
        for key in ("num_embeddings", "latent_dim", "embedding_dim", "num_timesteps", "denoiser_dim", "denoiser_depth"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value >= 1, key, "must be an integer >= 1", value)
        _check(self.num_embeddings >= 2, "num_embeddings", "a codebook needs at least 2 codes", self.num_embeddings)
        _check(self.downsample in (1, 2, 4), "downsample", "must be 1, 2 or 4", self.downsample)
        _check(self.schedule in ("linear", "cosine"), "schedule", "must be 'linear' or 'cosine'", self.schedule)
        _check(self.prediction in ("eps", "v"), "prediction", "must be 'eps' or 'v'", self.prediction)
        _check(isinstance(self.cond_in_context, bool), "cond_in_context", "must be true or false", self.cond_in_context)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64  # rooms per optimizer step (per process under DDP)
    vqvae_epochs: int = 300  # stage 1: VQ-VAE epochs
    num_epochs: int = 400  # stage 2: latent diffusion epochs (the seed's key)
    joint_epochs: int = 0  # stage 3: optional joint fine-tuning
    learning_rate: float = 1e-3  # peak AdamW learning rate (all stages)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * learning_rate
    min_lr_ratio: float = 0.1  # the cosine decay ends at min_lr_ratio * learning_rate
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.999  # EMA of the denoiser used for sampling
    codebook_decay: float = 0.99  # EMA codebook update rate
    commitment_beta: float = 0.25  # VQ commitment loss weight (van den Oord et al. 2017)
    rare_tile_weight: float = 4.0  # cross-entropy weight of the rare tiles D and S
    cond_drop_prob: float = 0.1  # classifier-free guidance condition dropout (Ho & Salimans 2022)
    use_amp: bool = True  # bf16 on GPUs with compute capability >= 8.0, fp16 + GradScaler below; off on CPU

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        for key in ("vqvae_epochs", "num_epochs", "joint_epochs", "warmup_steps"):
            _check(getattr(self, key) >= 0, key, "must be >= 0", getattr(self, key))
        _check(self.learning_rate > 0 and math.isfinite(self.learning_rate), "learning_rate", "must be > 0", self.learning_rate)
        _check(self.weight_decay >= 0, "weight_decay", "must be >= 0", self.weight_decay)
        _check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]", self.min_lr_ratio)
        _check(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)", self.grad_clip)
        for key in ("ema_decay", "codebook_decay"):
            _check(0 <= getattr(self, key) < 1, key, "must be in [0, 1)", getattr(self, key))
        _check(self.commitment_beta >= 0, "commitment_beta", "must be >= 0", self.commitment_beta)
        _check(self.rare_tile_weight > 0, "rare_tile_weight", "must be > 0", self.rare_tile_weight)
        _check(0 <= self.cond_drop_prob < 1, "cond_drop_prob", "must be in [0, 1)", self.cond_drop_prob)


@dataclass(frozen=True)
class PathsConfig:
    """None means the default for where it runs: /kaggle/working/... on Kaggle, ./runs/<name>/... elsewhere."""

    checkpoint_dir: str | None = None  # checkpoint files; None = /kaggle/working/checkpoints or ./runs/<name>/checkpoints
    output_dir: str | None = None  # config.json, history, curves, model_final.pt, samples, zip; None = .../outputs like checkpoint_dir
    resume_from: str | None = None  # explicit checkpoint to resume from (missing file is an error)


@dataclass(frozen=True)
class RunConfig:
    name: str = "default"  # run name: ./runs/<name>/ off Kaggle
    seed: int = 0  # seeds data order, initialisation, noise and the sample grids (bit-exact resume on CPU)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:N"
    auto_resume: bool = True  # resume from the newest valid checkpoint in checkpoint_dir
    # Default cadence, checkpoint cost <= 1 % of training time: a save blocks the training thread ~0.1 s (the
    # snapshot of the 20 M-parameter default state, 177 MiB, measured on CPU; the ~1.2 s write runs in the
    # background), and a T4 epoch of this corpus is 19 steps, under a second (issue 13; taken as 0.5 s). Saving (and validating, which can write
    # best) every 25 epochs costs 0.1 s / (25 x 0.5 s) = 0.8 %; every epoch it was 20 %. Slower hardware saves by
    # time too: every 10 minutes, 0.1 s / 600 s = 0.02 %, and a kill loses at most 10 minutes of training.
    checkpoint_every: int = 25  # save checkpoint_epoch_N.pt every N epochs
    checkpoint_every_steps: int = 0  # also save a step checkpoint every N optimizer steps (0 = off)
    checkpoint_every_minutes: float = 10.0  # also save a step checkpoint every N minutes of training (0 = off)
    checkpoint_async: bool = True  # write checkpoints on a background thread (training waits only for a snapshot); False = write inline
    keep_last_n: int = 3  # epoch/step files kept per stage (latest and best are never rotated)
    disk_budget_gb: float = 0.0  # cap on checkpoint_dir size, oldest epoch files go first (0 = off)
    monitor_metric: str = "val_loss"  # metric that selects checkpoint_best.pt
    monitor_mode: str = "min"  # "min" or "max"
    max_runtime_hours: float = 11.5  # cumulative training time budget across resumes (0 = off)
    log_every: int = 10  # batches between logged losses
    val_every: int = 25  # epochs between validations (and chances to write checkpoint_best.pt); the last epoch is always validated
    sample_every: int = 0  # epochs between generation metrics in diffusion training (0 = off)
    eval_samples: int = 256  # rooms generated at each sample_every evaluation
    sample_steps: int = 50  # DDIM steps
    ddim_eta: float = 0.0  # DDIM stochasticity (0 = deterministic)
    guidance_scale: float = 2.0  # classifier-free guidance scale (1 = conditional only)
    door_guidance: float = 0.0  # decoder-gradient door guidance strength per DDIM step (hmolqd.sampling.door_guidance; 0 = off)

    def __post_init__(self) -> None:
        _check(bool(self.name) and "/" not in self.name, "name", "must be a non-empty name without '/'", self.name)
        for key in ("checkpoint_every", "log_every", "val_every", "sample_steps", "eval_samples"):
            _check(getattr(self, key) >= 1, key, "must be >= 1", getattr(self, key))
        for key in ("checkpoint_every_steps", "checkpoint_every_minutes", "disk_budget_gb", "max_runtime_hours", "sample_every", "ddim_eta", "guidance_scale", "door_guidance"):
            _check(getattr(self, key) >= 0, key, "must be >= 0", getattr(self, key))
        _check(self.keep_last_n >= 1, "keep_last_n", "must be >= 1", self.keep_last_n)
        _check(isinstance(self.checkpoint_async, bool), "checkpoint_async", "must be true or false", self.checkpoint_async)
        _check(self.monitor_mode in ("min", "max"), "monitor_mode", "must be 'min' or 'max'", self.monitor_mode)
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "paths": PathsConfig, "run": RunConfig}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # ---- flat form (the notebook's CONFIG dict, the CLI's --set key=value) ----
    @classmethod
    def from_flat(cls, flat: dict[str, Any], base: Config | None = None) -> Config:
        """Build from a flat dict such as the notebook's CONFIG; unknown keys are rejected by name."""
        base = base or cls()
        owner = flat_keys()
        updates: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in flat.items():
            if key not in owner:
                raise ConfigError(_unknown_key_message(key, owner))
            section = owner[key]
            updates[section][key] = _coerce(SECTIONS[section], key, value)
        return cls(**{name: dataclasses.replace(getattr(base, name), **updates[name]) for name in SECTIONS})

    def to_flat(self) -> dict[str, Any]:
        return {k: v for name in SECTIONS for k, v in dataclasses.asdict(getattr(self, name)).items()}

    def with_overrides(self, **flat: Any) -> Config:
        return Config.from_flat(flat, base=self)

    # ---- nested form (config.json, checkpoints) ----
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict of str/int/float/bool/None/list: safe for JSON and `weights_only` loads."""
        out = {}
        for name in SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        return out

    @classmethod
    def from_dict(cls, nested: dict[str, Any]) -> Config:
        unknown = sorted(set(nested) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; valid sections: {sorted(SECTIONS)}")
        flat: dict[str, Any] = {}
        for name, values in nested.items():
            valid = {f.name for f in fields(SECTIONS[name])}
            for key, value in values.items():
                if key not in valid:
                    raise ConfigError(f"config section {name!r}: " + _unknown_key_message(key, {k: name for k in valid}))
                flat[key] = value
        return cls.from_flat(flat)

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
            return cls.from_dict(nested)
        return cls.from_flat(nested)

    @classmethod
    def preset(cls, name: str) -> Config:
        """A documented preset shipped in hmolqd/presets/<name>.json (see the README)."""
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
        return cls.from_json(text, source=str(path))

    # ---- derived values ----
    def resolved(self) -> Config:
        """Fill the path defaults for where this runs (Kaggle or local)."""
        base = KAGGLE_WORKING if KAGGLE_WORKING.is_dir() else Path("runs") / self.run.name
        paths = dataclasses.replace(
            self.paths,
            checkpoint_dir=self.paths.checkpoint_dir or str(base / "checkpoints"),
            output_dir=self.paths.output_dir or str(base / "outputs"),
        )
        return dataclasses.replace(self, paths=paths)


def key_docs() -> list[tuple[str, str, Any, str]]:
    """(flat key, section, default, the comment beside its field in this file) for every key, in section order.

    The comments are read from this module's source, so the README's configuration table (generated
    from this list, see tests/test_config.py) cannot drift from them. A key without a comment is an error.
    """
    import ast
    import io
    import tokenize

    source = Path(__file__).read_text(encoding="utf-8")
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    rows = []
    for section, cls in SECTIONS.items():
        lines = {node.target.id: node.lineno for node in classes[cls.__name__].body
                 if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
        for f in fields(cls):
            comment = comments.get(lines[f.name], "")
            if not comment:
                raise AssertionError(f"config key {f.name!r} ({cls.__name__}) has no comment beside its field in {__file__}")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            rows.append((f.name, section, default, comment))
    return rows


def config_table() -> str:
    """Markdown table of every key: key, section, default, what it does (the comments of this file)."""
    lines = ["| key | section | default | what it sets |", "|---|---|---|---|"]
    for key, section, default, comment in key_docs():
        text = comment.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")  # markdown table cell, no HTML tags
        lines.append(f"| `{key}` | {section} | `{default!r}` | {text} |")
    return "\n".join(lines)


def flat_keys() -> dict[str, str]:
    """Map every flat key to its section; flat keys are unique across sections."""
    owner: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            assert f.name not in owner, f"flat key {f.name!r} is defined twice"
            owner[f.name] = name
    return owner


def architecture_diff(saved: dict[str, Any], current: ModelConfig) -> list[str]:
    """Differences between a checkpoint's `model` section and the current one, as 'key: saved -> current'."""
    now = dataclasses.asdict(current)
    # A key added after the checkpoint was written means its default: the model it describes had that behaviour.
    saved = {**dataclasses.asdict(ModelConfig()), **saved}
    keys = sorted(set(saved) | set(now))
    return [f"{k}: checkpoint={saved.get(k, '<absent>')!r} config={now.get(k, '<absent>')!r}" for k in keys if saved.get(k, "<absent>") != now.get(k, "<absent>")]


def _unknown_key_message(key: str, owner: dict[str, str]) -> str:
    close = difflib.get_close_matches(str(key), list(owner), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint} (valid keys: {', '.join(sorted(owner))})"


def _coerce(cls: type, key: str, value: Any) -> Any:
    """Check (and, for strings from the CLI, parse) a value against the field's annotated type."""
    hint = typing.get_type_hints(cls)[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        _check(optional, key, f"may not be None (expected {getattr(hint, '__name__', hint)})", value)
        return None
    base = next((a for a in args if a is not type(None)), hint) if args and optional else hint
    origin = typing.get_origin(base)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        _check(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), key, "must be a list of strings", value)
        return tuple(value)
    if base is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        _check(isinstance(value, bool), key, "must be true or false", value)
        return value
    if base is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        _check(isinstance(value, int) and not isinstance(value, bool), key, "must be an integer", value)
        return value
    if base is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, "must be a number", value)
        return float(value)
    if base is str:
        _check(isinstance(value, (str, os.PathLike)), key, "must be a string", value)
        return os.fspath(value)
    raise AssertionError(f"unsupported config field type {hint} for {key}")
