"""The 345 official Quick, Draw! class names, shipped with the package so nothing needs the network.

`python -m pipeline download --help` lists them through `all_categories()`.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources

from pipeline.errors import QuickDrawError


@cache
def all_categories() -> tuple[str, ...]:
    """The official class names in Google's order (categories.txt of the dataset repository)."""
    text = resources.files("pipeline").joinpath("categories.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def canonical(name: str) -> str:
    """Map a user-typed class name (any case, underscores or spaces) to the official spelling; a
    misspelt one is a QuickDrawError with the closest official names ("did you mean 'dog'?")."""
    wanted = " ".join(name.strip().replace("_", " ").split()).lower()
    official = {c.lower(): c for c in all_categories()}
    if wanted in official:
        return official[wanted]
    suggestions = [official[c] for c in suggest(wanted, list(official))]
    if suggestions:
        options = " or ".join(f"'{c}'" for c in suggestions)
        raise QuickDrawError(f"unknown class '{name}'; did you mean {options}? "
                             "`python -m pipeline classes` lists the 345 official names.")
    raise QuickDrawError(f"'{name}' is not a Quick, Draw! class; "
                         "`python -m pipeline classes` lists the 345 official names.")


def suggest(wanted: str, names: list[str], limit: int = 2) -> list[str]:
    """The names closest to a misspelling: difflib's close matches, ranked by edit distance (a
    swapped pair of letters counts as one edit, so 'dgo' is 'dog' before 'dragon'); only the
    names tied for the fewest edits are returned."""
    close = difflib.get_close_matches(wanted, names, n=6, cutoff=0.6)
    if not close:
        return []
    ranked = sorted(close, key=lambda c: (_edits(wanted, c), close.index(c)))
    fewest = _edits(wanted, ranked[0])
    return [c for c in ranked if _edits(wanted, c) == fewest][:limit]


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    previous2, previous = [], list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], previous2[j - 2] + 1)
        previous2, previous = previous, row
    return previous[-1]
