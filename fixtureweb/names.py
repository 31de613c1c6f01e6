"""Latin-looking names for synthetic taxa: deterministic, pronounceable and unlike real ones."""

from __future__ import annotations

import random
from collections.abc import Callable

_ONSETS = ("b", "c", "d", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "ph", "tr", "cl", "gr", "st")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "y")
_GENUS_SUFFIXES = ("myces", "ella", "ota", "ius", "ina", "ocybe", "ula", "aria", "porus", "ellus", "opsis", "ides")
_EPITHET_SUFFIXES = ("ensis", "ata", "oides", "icola", "escens", "ifolia", "ana", "ipes", "inus", "osa", "iceps")
_AUTHORS = ("Fr.", "(Fr.) P. Kumm.", "Pers.", "(Bull.) Quél.", "Sacc.", "(Schaeff.) Fr.", "Peck", "Singer")

ORDERS = ("Agaricales", "Boletales", "Russulales", "Polyporales", "Cantharellales")


def _stem(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))


def genus_name(rng: random.Random) -> str:
    return (_stem(rng, rng.randint(1, 2)) + rng.choice(_GENUS_SUFFIXES)).capitalize()


def epithet(rng: random.Random) -> str:
    return _stem(rng, rng.randint(1, 2)) + rng.choice(_EPITHET_SUFFIXES)


def family_name(genus: str) -> str:
    """A family is named after its type genus, as in botany: Marasmius -> Marasmiaceae."""
    stem = genus
    for suffix in sorted(_GENUS_SUFFIXES, key=len, reverse=True):
        if genus.lower().endswith(suffix):
            stem = genus[: -len(suffix)]
            break
    return stem.capitalize() + "aceae"


def authorship(rng: random.Random) -> str:
    return rng.choice(_AUTHORS)


def unique_names(make: Callable[[random.Random], str], rng: random.Random, count: int) -> list[str]:
    """`count` distinct names from `make(rng)`; the generator is drawn from in a fixed order."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = make(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
