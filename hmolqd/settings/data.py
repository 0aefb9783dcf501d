"""Where the data and the outputs are: `DataConfig` (the corpus, its split and augmentation) and `PathsConfig`
(checkpoint and output folders, what to resume from), frozen. Every field is a flat config key."""

from __future__ import annotations

from dataclasses import dataclass

from hmolqd.settings.rules import check, integers_at_least


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None  # VGLC "The Legend of Zelda" folder; None = discover (see hmolqd.data)
    val_dungeons: tuple[str, ...] = ("tloz4_1", "tloz8_2")  # whole dungeons held out for validation
    mirror_augment: bool = True  # add left-right / top-bottom mirrored training rooms (doors follow)
    #: add this many copies of every training room with its doors redrawn (interior kept, attributes re-measured)
    door_augment: int = 1
    #: add this many x N new rooms recombined from two training rooms' interior parts (every 2x2 window seen in the
    #: corpus, interior new; hmolqd.data.augment_recombine); 0 = none
    recombine_augment: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_dungeons", tuple(self.val_dungeons))
        integers_at_least(self, ("door_augment", "recombine_augment"), 0)
        check(len(self.val_dungeons) >= 1, "val_dungeons", "hold out at least one dungeon", self.val_dungeons)


@dataclass(frozen=True)
class PathsConfig:
    """None means the default for where it runs: /kaggle/working/... on Kaggle, ./runs/<name>/... elsewhere."""

    #: checkpoint files; None = /kaggle/working/checkpoints or ./runs/<name>/checkpoints
    checkpoint_dir: str | None = None
    #: config.json, history, curves, model_final.pt, samples, zip; None = .../outputs like checkpoint_dir
    output_dir: str | None = None
    resume_from: str | None = None  # explicit checkpoint to resume from (missing file is an error)
    #: a new run starts from this model file's VQ-VAE (another run's model_final.pt or checkpoint), e.g. to train
    #: denoiser variants on one tokenizer with vqvae_epochs=0; its tokenizer keys must equal this config's
    vqvae_from: str | None = None
    # Used only when checkpoint_dir holds no checkpoint of its run (a new Kaggle session); never inside a package or
    # repo tree.
    #: previous output to continue: "auto" = an hmolqd checkpoint folder (run.json) under /kaggle/input; "off"; or a
    #: path
    resume_input: str = "auto"
