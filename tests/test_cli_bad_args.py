"""Every CLI command with a table of bad arguments: exit status 2, one `error:` line on stderr naming the
argument and its rule, no traceback, and nothing written. `main(argv)` is called in-process (the same code
path as `python -m hmolqd`, which one subprocess test below runs for real)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from model_helpers import TINY_CLI_MODEL

from hmolqd.cli import main
from hmolqd.config import Config
from hmolqd.models.room_model import RoomModel
from hmolqd.training.outputs import export_final

REPO = Path(__file__).resolve().parents[1]
TINY = TINY_CLI_MODEL


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained model exported like training does: enough to reach every argument check."""
    return export_final(RoomModel.from_config(Config().with_overrides(**TINY)), tmp_path_factory.mktemp("run"))


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """Paths the table names: a folder, a file, a non-UTF-8 config, a tiny corpus (two dungeons)."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    room = ["W" * 11] * 2 + ["WW" + "F" * 7 + "WW"] * 12 + ["W" * 11] * 2
    corpus = tmp_path / "corpus" / "Processed"
    corpus.mkdir(parents=True)
    for name in ("tloz1_1", "tloz2_1"):
        (corpus / f"{name}.txt").write_text("\n".join(room) + "\n")
    (corpus.parent / "Graph Processed").mkdir()
    (corpus.parent / "Graph Processed" / "LoZ_1.dot").write_text('digraph {\n0 [label="s"]\n}\n')
    return {
        "DIR": str(tmp_path / "adir"),
        "FILE": str(tmp_path / "afile"),
        "LATIN1": str(tmp_path / "latin1.json"),
        "CORPUS": str(tmp_path / "corpus"),
        "TMP": str(tmp_path),
    }


# (argv, what the one error line must contain: the argument and its rule). MODEL, DIR, ... are filled in.
BAD = [
    # sample
    (["sample", "--model", "MODEL", "-n", "100000000"], "-n 100000000: must be <= 100000"),
    (["sample", "--model", "MODEL", "-n", "0"], "-n 0: must be >= 1"),
    (["sample", "--model", "MODEL", "--steps", "0"], "--steps 0: must be >= 1 (sampling steps)"),
    (["sample", "--model", "MODEL", "--ncols", "100000"], "--ncols 100000: must be <= 64"),
    (["sample", "--model", "MODEL", "--out", "DIR"], "--out {DIR}: is a folder; give a file name ending in .png"),
    (["sample", "--model", "MODEL", "--out", "TMP/x.jpg"], "--out {TMP}/x.jpg: the file name must end in .png"),
    (["sample", "--model", "MODEL", "--out", "FILE/x.png"], "--out {FILE}/x.png: {FILE} is a file, not a folder"),
    (["sample", "--model", "MODEL", "--seed", "1e20"], "argument --seed: invalid int value: '1e20'"),
    (["sample", "--model", "MODEL", "--seed", str(10**20)], f"--seed {10**20}: must be an integer in 0 .. 4294967295"),
    (["sample", "--model", "MODEL", "--seed", "-1"], "--seed -1: must be an integer in 0 .. 4294967295"),
    (["sample", "--model", "MODEL", "--guidance", "nan"], "--guidance nan: must be a finite number >= 0"),
    (["sample", "--model", "MODEL", "--guidance", "inf"], "--guidance inf: must be a finite number >= 0"),
    (["sample", "--model", "MODEL", "--guidance", "-1"], "--guidance -1.0: must be a finite number >= 0"),
    (
        ["sample", "--model", "MODEL", "--attributes", "monsters=yes,monsters=no"],
        "monsters given twice; name each attribute once",
    ),
    (["sample", "--model", "MODEL", "--doors", "up"], "--doors 'up': unknown door side(s) ['up']"),
    (["sample", "--model", "TMP/missing.pt"], "--model {TMP}/missing.pt: no such file"),
    (["sample"], "the following arguments are required: --model"),
    (["sample", "--model", "MODEL", "--bogus"], "unrecognized arguments: --bogus"),
    # dungeon
    (["dungeon", "--model", "MODEL", "--rooms", "2000"], "--rooms 2000: must be <= 200 (rooms of one dungeon"),
    (["dungeon", "--model", "MODEL", "--rooms", "3"], "--rooms 3: a dungeon needs at least 4 rooms"),
    (["dungeon", "--model", "MODEL", "--steps", "0"], "--steps 0: must be >= 1"),
    (["dungeon", "--model", "MODEL", "--seed", "-5"], "--seed -5: must be an integer in 0 .. 4294967295"),
    (["dungeon", "--model", "MODEL", "--out", "FILE"], "--out {FILE}: is a file; give a folder"),
    (["dungeon", "--model", "MODEL", "--max-regenerations", "1000000"], "--max-regenerations 1000000: must be <= 100"),
    (["dungeon", "--model", "MODEL", "--rooms", "x"], "argument --rooms: invalid int value: 'x'"),
    # evaluate (every argument is checked before the data is looked for)
    (["evaluate", "--model", "MODEL", "--temperature", "0"], "--temperature 0.0: must be a finite number > 0"),
    (["evaluate", "--model", "MODEL", "--temperature", "nan"], "--temperature nan: must be a finite number > 0"),
    (["evaluate", "--model", "MODEL", "--guidance", "nan"], "--guidance nan: must be a finite number >= 0"),
    (["evaluate", "--model", "MODEL", "--eta", "-1"], "--eta -1.0: must be a finite number >= 0"),
    (["evaluate", "--model", "MODEL", "--door-guidance", "inf"], "--door-guidance inf: must be a finite number >= 0"),
    (["evaluate", "--model", "MODEL", "--copy-guard", "-1"], "--copy-guard -1: must be >= 0"),
    (["evaluate", "--model", "MODEL", "--guard-draws", "0"], "--guard-draws 0: must be >= 1"),
    (["evaluate", "--model", "MODEL", "--steps", "0"], "--steps 0: must be >= 1"),
    (["evaluate", "--model", "MODEL", "--samples", "1000000000"], "--samples 1000000000: must be <= 20000"),
    (["evaluate", "--model", "MODEL", "--png", "DIR"], "--png {DIR}: is a folder; give a file name ending in .png"),
    (["evaluate", "--model", "MODEL", "--png", "TMP/a.jpg"], "--png {TMP}/a.jpg: the file name must end in .png"),
    (["evaluate", "--model", "MODEL", "--json", "DIR"], "--json {DIR}: is a folder; give a file name ending in .json"),
    (["evaluate", "--model", "MODEL", "--json", "TMP/a.jpg"], "--json {TMP}/a.jpg: the file name must end in .json"),
    (["evaluate", "--model", "MODEL", "--sampler", "greedy"], "argument --sampler: invalid choice: 'greedy'"),
    (["evaluate", "--model", "MODEL", "--sample-dtype", "fp16"], "argument --sample-dtype: invalid choice: 'fp16'"),
    (
        ["evaluate", "--model", "MODEL", "--device", "tpu", "--data", "CORPUS"],
        "--device 'tpu': must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
    ),
    # data-stats
    (["data-stats", "--render", "DIR"], "--render {DIR}: is a folder; give a file name ending in .png"),
    (["data-stats", "--render", "TMP/map.jpg"], "--render {TMP}/map.jpg: the file name must end in .png"),
    (
        ["data-stats", "--data", "CORPUS", "--render", "TMP/m.png", "--dungeon", "nosuch"],
        "--dungeon 'nosuch' is not in the corpus",
    ),
    # train
    (["train", "--config", "LATIN1"], "{LATIN1}:1: not UTF-8 text"),
    (["train", "--config", "TMP/none.json"], "cannot read config file {TMP}/none.json"),
    (["train", "--set", "nosuch=1"], "unknown config key 'nosuch'"),
    (["train", "--set", "batch_size=many"], "config key 'batch_size' = 'many': must be an integer"),
    (
        [
            "train",
            "--set",
            "data_dir=CORPUS",
            "--set",
            "val_dungeons=nosuch",
            "--set",
            "checkpoint_dir=TMP/c",
            "--set",
            "output_dir=TMP/o",
        ],
        "config key 'val_dungeons' = ['nosuch']: ['nosuch'] not in the corpus",
    ),
    (["train", "--preset", "nosuch"], "unknown preset 'nosuch'"),
    # fetch-data: input errors are exit 2 (a failed download is exit 1)
    (["fetch-data", "TMP/d", "--base-url", "notaurl"], "--base-url 'notaurl': must be an http:// or https:// URL"),
    (["fetch-data", "TMP/d", "--timeout", "-1"], "--timeout -1.0: must be a finite number > 0"),
    (["fetch-data", "TMP/d", "--timeout", "nan"], "--timeout nan: must be a finite number > 0"),
    (["fetch-data", "FILE"], "dir {FILE}: is a file; give a folder"),
    # no command at all
    ([], "the following arguments are required: COMMAND"),
]


def fill(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace(key, value)
    return text


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a[:1] + a[-2:]) or "none" for a, _ in BAD])
def test_bad_argument_is_one_error_line_and_exit_2(
    model: Path, places: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    names = {"MODEL": str(model), **places}
    argv = [fill(a, names) for a in argv]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors leave through SystemExit, as under `python -m`
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert says.format(**places) in err, err
    assert out == ""
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written, no folder made


def test_the_real_entry_point_gives_the_same_one_line(model: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hmolqd", "dungeon", "--model", str(model), "--rooms", "2000"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: --rooms 2000: must be <= 200") and done.stderr.count("\n") == 1, done.stderr


def test_a_missing_corpus_is_at_most_three_lines(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no data/vglc-zelda here, and the model stores no data_dir
    assert main(["evaluate", "--model", str(model), "--samples", "4", "--no-dungeons"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: VGLC Zelda corpus not found: --data is not given")
        and err.count("\n") <= 3
        and "Traceback" not in err
    ), err
