"""Fixtures for the data tests: an offline environment, tiny IDX folders, a local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.data import registry
from vaekit.data.idx import write_idx

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def offline(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every dataset location at empty folders and downloads at a closed port."""
    root = tmp_path_factory.mktemp("offline")
    for sub in ("data", "cache", "debian"):
        (root / sub).mkdir()
    monkeypatch.setenv("VAEKIT_DATA", str(root / "data"))
    monkeypatch.setenv("VAEKIT_CACHE", str(root / "cache"))
    monkeypatch.setenv("VAEKIT_MIRROR", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setattr(registry, "DEBIAN_ROOT", root / "debian")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return root


def _make_arrays(
    n_train: int = 30, n_test: int = 10, hw: tuple[int, int] = (6, 5), n_classes: int = 3
) -> dict[str, np.ndarray]:
    """Small random images and labels, every class present in both parts."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "y_train": (np.arange(n_train) % n_classes).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "y_test": (np.arange(n_test) % n_classes).astype(np.uint8),
    }


def _write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> Path:
    """Write the four IDX files of ``arrays`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        if key in arrays:
            write_idx(folder / (name + (".gz" if gz else "")), arrays[key])
    return folder


@pytest.fixture
def idx_arrays() -> dict[str, np.ndarray]:
    """30 training and 10 test images of 6x5 pixels with labels 0..2."""
    return _make_arrays()


@pytest.fixture
def make_idx_arrays() -> Callable[..., dict[str, np.ndarray]]:
    """Factory for :func:`_make_arrays`."""
    return _make_arrays


@pytest.fixture
def write_idx_folder() -> Callable[..., Path]:
    """Factory for :func:`_write_idx_folder`."""
    return _write_idx_folder


@pytest.fixture
def idx_folder(tmp_path: Path, idx_arrays: dict[str, np.ndarray]) -> Path:
    """A folder with the four gzip IDX files of ``idx_arrays``."""
    return _write_idx_folder(tmp_path / "idx", idx_arrays)


def _save_image(path: Path, mode: str = "L", size: tuple[int, int] = (6, 5), seed: int = 0) -> Path:
    """Save a random image of ``size = (width, height)``; the format follows the suffix."""
    rng = np.random.default_rng(seed)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


@dataclass
class Server:
    """A local HTTP server; ``files`` maps a URL path to its body, ``requests`` logs paths."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    short: set[str] = field(default_factory=set)  # paths whose transfer is cut in half


@pytest.fixture
def http_server() -> Iterator[Server]:
    """Serve ``Server.files`` from 127.0.0.1 on a free port, in a thread."""
    state = Server(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in state.short:  # announce the full length, send half, hang up
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def save_image() -> Callable[..., Path]:
    """Factory for :func:`_save_image`."""
    return _save_image
