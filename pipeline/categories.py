"""The 345 official Quick, Draw! class names, shipped with the package so nothing needs the network.

`python -m pipeline download --help` lists them through `all_categories()`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from pipeline.errors import QuickDrawError


@cache
def all_categories() -> tuple[str, ...]:
    """The official class names in Google's order (categories.txt of the dataset repository)."""
    text = resources.files("pipeline").joinpath("categories.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def canonical(name: str) -> str:
    """Map a user-typed class name (any case, underscores or spaces) to the official spelling."""
    wanted = name.strip().replace("_", " ").lower()
    for official in all_categories():
        if official.lower() == wanted:
            return official
    close = [c for c in all_categories() if wanted[:3] and c.lower().startswith(wanted[:3])]
    hint = f" Did you mean: {', '.join(close[:5])}?" if close else ""
    raise QuickDrawError(
        f"'{name}' is not a Quick, Draw! class.{hint} "
        "Run `python -m pipeline classes` for the 345 official names."
    )
