"""The app's keyboard shortcuts: one table that both binds the keys and fills the help overlay."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hotkey:
    """One command: its id, the key sequences that trigger it and what the help overlay says."""

    command: str
    keys: tuple[str, ...]
    help: str
    label: str = ""  # how the help overlay writes the keys when the sequences read badly


HOTKEYS: tuple[Hotkey, ...] = (
    Hotkey("style-n", tuple("1234567890"), "Pick style 1–10", "1 … 9, 0"),
    Hotkey("style-prev", ("Left", "["), "Previous style", "← or ["),
    Hotkey("style-next", ("Right", "]"), "Next style", "→ or ]"),
    Hotkey("pause", ("Space",), "Pause / resume", "Space"),
    Hotkey("record", ("R",), "Start / stop recording", "R"),
    Hotkey("snapshot", ("S",), "Save a snapshot (PNG)", "S"),
    Hotkey("preset", ("B",), "Next region preset (all, person, background, split, blur)", "B"),
    Hotkey("strength-up", ("+", "="), "More style", "+"),
    Hotkey("strength-down", ("-",), "Less style", "−"),
    Hotkey("fullscreen", ("F",), "Fullscreen on / off", "F"),
    Hotkey("mirror", ("M",), "Mirror on / off", "M"),
    Hotkey("virtualcam", ("V",), "Virtual camera on / off", "V"),
    Hotkey("help", ("H", "?"), "Show / hide this help", "H or ?"),
    Hotkey("escape", ("Esc",), "Leave fullscreen, close this help", "Esc"),
    Hotkey("quit", ("Ctrl+Q",), "Quit (finishes a recording first)", "Ctrl+Q"),
)
"""Every shortcut, in the order the help overlay lists them."""

STRENGTH_STEP = 0.1
"""How much ``+``/``-`` change the style strength."""


def help_rows() -> list[tuple[str, str]]:
    """``(keys, what they do)`` rows for the help overlay."""
    return [(h.label or " / ".join(h.keys), h.help) for h in HOTKEYS]
