"""``WIDTHxHEIGHT`` flags, parsed one way for every command."""

from __future__ import annotations

import re

from .errors import InputError


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """``"640x480"`` → ``(640, 480)``; anything else is an :class:`InputError` naming ``flag``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise InputError(f"{flag} {text}: expected WIDTHxHEIGHT, e.g. 640x480")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise InputError(f"{flag} {text}: width must be 16–7680 and height 16–4320")
    return w, h
