"""Checksum-verified downloads into the vaekit cache.

A file is streamed to a temporary file in its destination folder, hashed on the way, and
renamed to its final name only when its SHA-256 matches; on any failure the temporary file
is removed, so the cache never holds a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from vaekit.errors import DataError

logger = logging.getLogger(__name__)

#: Seconds to wait for the server to connect or send the next block.
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20
#: No file vaekit downloads is larger; a server sending more is refused.
MAX_DOWNLOAD_BYTES = 256 * (1 << 20)


def download(url: str, dest: Path, sha256: str, *, hint: str = "") -> Path:
    """Download ``url`` to ``dest`` and check its SHA-256.

    Parameters
    ----------
    url : str
        Source address (``http``, ``https`` or ``file``).
    dest : pathlib.Path
        Final path; its folder is created if needed.
    sha256 : str
        Expected hex digest of the file.
    hint : str, default=""
        Another way to get the file, appended to error messages (``"or put ..."``).

    Returns
    -------
    pathlib.Path
        ``dest``, which now holds the verified file.

    Raises
    ------
    DataError
        If the transfer fails or is cut short, the file is too large, or the checksum
        differs. No file is left behind in any of these cases.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(
            f"cannot write to the cache folder {str(dest.parent)!r} ({exc}); set VAEKIT_CACHE "
            f"to a writable folder"
        ) from exc
    tmp = Path(tmp_name)
    alt = f", {hint}" if hint else ""
    try:
        digest = hashlib.sha256()
        received = 0
        logger.info("downloading %s to %s", url, dest)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            length_header = resp.headers.get("Content-Length")
            expected = int(length_header) if length_header and length_header.isdigit() else None
            while chunk := resp.read(CHUNK_BYTES):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise DataError(
                        f"download of {url} sent more than {MAX_DOWNLOAD_BYTES} bytes, more than "
                        f"any dataset file; check VAEKIT_MIRROR{alt}"
                    )
                digest.update(chunk)
                out.write(chunk)
        if expected is not None and received < expected:
            raise DataError(
                f"download of {url} was interrupted after {received} of {expected} bytes; "
                f"retry{alt}"
            )
        actual = digest.hexdigest()
        if actual != sha256:
            raise DataError(
                f"download of {url} failed its SHA-256 check (expected {sha256}, got {actual}); "
                f"retry later or set VAEKIT_MIRROR to another mirror{alt}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"could not download {url} ({exc}); check the network connection or VAEKIT_MIRROR{alt}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest
