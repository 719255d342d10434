"""What the commands share (``vaekit.cli.runs``) and the package's entry points, in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import write_image_folder

from vaekit import __version__
from vaekit.cli.commands import _data_name
from vaekit.cli.runs import _refuse_run_as_data
from vaekit.errors import VaekitError

RUN_CONFIG = {"format_version": 1, "estimator": "VAEClustering", "params": {}}


def test_only_vaekit_runs_are_refused_as_data(tmp_path: Path, monkeypatch) -> None:
    """A config.json of another tool's inside an image folder is not a run (a review found
    such folders refused); a run spelled like a built-in name ('Digits') is one."""
    monkeypatch.chdir(tmp_path)
    pets = write_image_folder(tmp_path / "pets", n=4)
    (pets / "cats" / "config.json").write_text('{"source": "labelling tool"}')
    (pets / "config.json").write_text('{"name": "my pets"}')
    _refuse_run_as_data("pets")
    for name in ("Digits", "runs"):
        run = tmp_path / name / "cluster" if name == "runs" else tmp_path / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(RUN_CONFIG))
    with pytest.raises(VaekitError, match="'Digits' is a vaekit run folder"):
        _refuse_run_as_data("Digits")  # load_dataset reads an existing 'Digits' as a path
    with pytest.raises(VaekitError, match="'runs' is a folder of vaekit runs"):
        _refuse_run_as_data("runs")
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "config.json").write_text(json.dumps(RUN_CONFIG))
    _refuse_run_as_data("digits")  # the built-in set, as typed, whatever the folder holds


def test_default_run_names_keep_a_links_own_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").mkdir()
    os.symlink("plain", "mycats")
    (tmp_path / "arr.npy").write_bytes(b"")
    os.symlink("arr.npy", "mine.npy")
    assert [_data_name(s) for s in ("mycats", "mine.npy", ".", "plain/", "/")] == [
        "mycats",
        "mine",
        tmp_path.name,
        "plain",
        "data",
    ]


def test_python_m_vaekit_cli_is_the_command() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "vaekit.cli", "--version"], capture_output=True, text=True
    )
    assert (res.returncode, res.stdout.strip()) == (0, f"vaekit {__version__}")
