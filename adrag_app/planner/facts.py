"""What a segment asks of the pet, and which breeds of the library give it.

``breeds.yaml`` (beside this module) holds a few facts per breed (species, size, coat,
grooming, energy, who it suits, a typical setting) and the *cues*: the words of a segment that
ask for some of those facts. :func:`read_constraints` turns a segment into
:class:`Constraints` — hard ones (species, size, coat, a named breed: never broken while some
breed of the library keeps them) and soft preferences (energy, good with kids / seniors /
apartments, ...), weighted by how often the segment says them — and :func:`rank_breeds` orders
the library's breeds by them. Both planners use it: the built-in one to pick the breed, the
LLM one to tell the model the facts and to check its choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from adrag_app.planner.words import normalise, stem
from adrag_app.yaml_text import parse_yaml

SPECIES = ("dog", "cat")
ORDERED = {
    "size": ("small", "medium", "large"),
    "energy": ("low", "medium", "high"),
    "grooming": ("low", "medium", "high"),
}
COATS = ("short", "medium", "long", "hairless")
GOOD_WITH = ("kids", "seniors", "apartments")
FACTS = ("species", "size", "coat", "grooming", "energy", "good_with")
# The hard constraints, in the order they are given up when no breed keeps them all.
HARD = ("breed", "species", "size", "coat")
_RELAX_ORDER = ("size", "coat", "breed")  # species is the last to go (never, in practice)
_ADJACENT = 0.3  # an ordered fact one step off ("medium" for "low" energy) earns this share


class BreedsFileError(ValueError):
    """The breed facts file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class BreedFacts:
    name: str
    species: str
    size: str
    coat: str
    grooming: str
    energy: str
    good_with: frozenset[str]
    setting: str

    def value(self, fact: str) -> str | frozenset[str]:
        return getattr(self, fact)


@dataclass(frozen=True)
class Preference:
    fact: str
    value: str
    weight: float


@dataclass(frozen=True)
class Cues:
    species: dict[str, tuple[str, ...]]
    size: dict[str, tuple[str, ...]]
    size_nouns: frozenset[str]
    coat: dict[str, tuple[str, ...]]
    negators: frozenset[str]
    prefer: tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...]


@dataclass(frozen=True)
class FactsBook:
    breeds: dict[str, BreedFacts]
    cues: Cues
    source: str


@dataclass(frozen=True)
class Constraints:
    """What a segment asks: hard facts (``""`` = not asked) and soft preferences."""

    species: str = ""
    size: str = ""
    coat: str = ""
    breed: str = ""  # a breed the segment names ("beagle owners")
    not_species: tuple[str, ...] = ()  # "no cats", "allergic to dogs"
    prefer: tuple[Preference, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hard() or self.not_species or self.prefer)

    def hard(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in HARD if getattr(self, k)}

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"species": "cat", ..., "prefer": {"energy=low": 2.0}}``."""
        out: dict[str, Any] = dict(self.hard())
        if self.not_species:
            out["not_species"] = list(self.not_species)
        if self.prefer:
            out["prefer"] = {f"{p.fact}={p.value}": p.weight for p in self.prefer}
        return out

    def allows(self, facts: BreedFacts) -> bool:
        if self.breed and facts.name != self.breed:
            return False
        if facts.species in self.not_species:
            return False
        return all(
            not getattr(self, k) or facts.value(k) == getattr(self, k)
            for k in ("species", "size", "coat")
        )

    def score(self, facts: BreedFacts) -> float:
        """How well ``facts`` meet the soft preferences (0 when there are none)."""
        total = 0.0
        for p in self.prefer:
            have = facts.value(p.fact)
            if isinstance(have, frozenset):
                total += p.weight if p.value in have else 0.0
            elif have == p.value:
                total += p.weight
            elif p.fact in ORDERED:
                order = ORDERED[p.fact]
                if abs(order.index(have) - order.index(p.value)) == 1:
                    total += _ADJACENT * p.weight
        return round(total, 3)

    def relaxed(self) -> list[Constraints]:
        """These constraints, then with hard ones given up one by one (least important
        first), for a library that has no breed keeping them all."""
        out = [self]
        current = self
        for name in _RELAX_ORDER:
            if getattr(current, name):
                current = _replace(current, **{name: ""})
                out.append(current)
        return out

    def describe(self) -> str:
        """In words, for a prompt: "a cat; long coat; preferably good with apartments"."""
        parts = []
        if self.breed:
            parts.append(f"the breed {self.breed}")
        if self.species:
            parts.append(f"a {self.species}")
        if self.not_species:
            parts.append("not a " + " or ".join(self.not_species))
        if self.size:
            parts.append(f"{self.size} size")
        if self.coat:
            parts.append(f"{self.coat} coat")
        soft = [_say(p.fact, p.value) for p in sorted(self.prefer, key=lambda p: -p.weight)]
        if soft:
            parts.append("preferably " + ", ".join(soft))
        return "; ".join(parts)


def _replace(c: Constraints, **changes: Any) -> Constraints:
    data = {k: getattr(c, k) for k in Constraints.__dataclass_fields__}
    data.update(changes)
    return Constraints(**data)


def _say(fact: str, value: str) -> str:
    if fact == "good_with":
        return f"good with {value}"
    if fact == "species":
        return f"a {value}"
    return f"{value} {fact}"


# -- reading the file ---------------------------------------------------------------------------


def _norm_words(text: str) -> list[str]:
    return [stem(w) for w in normalise(text).split()]


def _phrase(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BreedsFileError(f"{where}: cue words must be non-empty strings")
    words = _norm_words(text)
    if not words:
        raise BreedsFileError(f"{where}: {text!r} has no words")
    return " ".join(words)


def _choice(value: Any, allowed: Sequence[str], where: str, name: str) -> str:
    if value not in allowed:
        raise BreedsFileError(f"{where}: {name} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _breed(name: Any, data: Any, source: str) -> BreedFacts:
    where = f"{source}: breed {name!r}"
    if not isinstance(name, str) or not name.strip():
        raise BreedsFileError(f"{source}: a breed name must be a non-empty string")
    if not isinstance(data, dict):
        raise BreedsFileError(f"{where}: must be a mapping of facts")
    unknown = set(data) - {*FACTS, "setting"}
    if unknown:
        raise BreedsFileError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    good_with = data.get("good_with") or []
    if not isinstance(good_with, list) or not set(good_with) <= set(GOOD_WITH):
        raise BreedsFileError(f"{where}: good_with must be a list of {', '.join(GOOD_WITH)}")
    setting = data.get("setting")
    if not isinstance(setting, str) or not setting.strip() or len(setting) > 120:
        raise BreedsFileError(f"{where}: setting must be a short scene (1-120 characters)")
    return BreedFacts(
        name=" ".join(name.lower().split()),
        species=_choice(data.get("species"), SPECIES, where, "species"),
        size=_choice(data.get("size"), ORDERED["size"], where, "size"),
        coat=_choice(data.get("coat"), COATS, where, "coat"),
        grooming=_choice(data.get("grooming"), ORDERED["grooming"], where, "grooming"),
        energy=_choice(data.get("energy"), ORDERED["energy"], where, "energy"),
        good_with=frozenset(good_with),
        setting=" ".join(setting.split()),
    )


def _word_table(data: Any, keys: Sequence[str], where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict) or not set(data) <= set(keys):
        raise BreedsFileError(f"{where}: must map {', '.join(keys)} to lists of words")
    out = {}
    for key, words in data.items():
        if not isinstance(words, list) or not words:
            raise BreedsFileError(f"{where}.{key}: must be a non-empty list of words")
        out[key] = tuple(_phrase(w, f"{where}.{key}") for w in words)
    return out


def _cues(data: Any, source: str) -> Cues:
    where = f"{source}: cues"
    if not isinstance(data, dict):
        raise BreedsFileError(f"{where}: must be a mapping")
    prefer = []
    for i, item in enumerate(data.get("prefer") or []):
        at = f"{where}.prefer[{i + 1}]"
        if not isinstance(item, dict) or set(item) != {"words", "facts"}:
            raise BreedsFileError(f"{at}: must have exactly 'words' and 'facts'")
        if not isinstance(item["words"], list) or not item["words"]:
            raise BreedsFileError(f"{at}: 'words' must be a non-empty list")
        facts = item["facts"]
        if not isinstance(facts, dict) or not facts:
            raise BreedsFileError(f"{at}: 'facts' must map facts to values")
        pairs = []
        for fact, value in facts.items():
            allowed = {
                "species": SPECIES,
                "coat": COATS,
                "good_with": GOOD_WITH,
                **ORDERED,
            }.get(fact)
            if allowed is None:
                raise BreedsFileError(f"{at}: unknown fact {fact!r}")
            pairs.append((fact, _choice(value, allowed, at, fact)))
        prefer.append((tuple(_phrase(w, at) for w in item["words"]), tuple(pairs)))
    return Cues(
        species=_word_table(data.get("species"), SPECIES, f"{where}.species"),
        size=_word_table(data.get("size"), ORDERED["size"], f"{where}.size"),
        size_nouns=frozenset(_phrase(w, f"{where}.size_nouns") for w in data["size_nouns"]),
        coat=_word_table(data.get("coat"), COATS, f"{where}.coat"),
        negators=frozenset(_phrase(w, f"{where}.negators") for w in data.get("negators") or []),
        prefer=tuple(prefer),
    )


def parse_facts(text: str, source: str) -> FactsBook:
    """A :class:`FactsBook` from YAML text; :class:`BreedsFileError` naming ``source`` and the
    entry at fault otherwise."""
    data = parse_yaml(text, source, BreedsFileError)
    if not isinstance(data, dict) or not isinstance(data.get("breeds"), dict):
        raise BreedsFileError(f"{source}: expected a mapping with a 'breeds' mapping")
    if not isinstance(data.get("cues"), dict) or not isinstance(
        data["cues"].get("size_nouns"), list
    ):
        raise BreedsFileError(f"{source}: expected 'cues' with species, size, size_nouns, coat")
    breeds = {}
    for name, facts in data["breeds"].items():
        breed = _breed(name, facts, source)
        if breed.name in breeds:
            raise BreedsFileError(f"{source}: breed {breed.name!r} appears twice")
        breeds[breed.name] = breed
    return FactsBook(breeds, _cues(data["cues"], source), source)


@cache
def default_facts() -> FactsBook:
    """The packaged facts (a broken packaged file is a bug: it raises)."""
    text = resources.files("adrag_app.planner").joinpath("breeds.yaml").read_text("utf-8")
    return parse_facts(text, "adrag_app/planner/breeds.yaml")


# -- reading a segment ----------------------------------------------------------------------------


def _find(words: list[str], phrase: str) -> list[int]:
    """Start positions of ``phrase`` (normalised words) in ``words``."""
    parts = phrase.split()
    n = len(parts)
    return [i for i in range(len(words) - n + 1) if words[i : i + n] == parts]


def _negated(words: list[str], at: int, negators: frozenset[str]) -> bool:
    return any(w in negators for w in words[max(0, at - 3) : at])


def read_constraints(segment: str, book: FactsBook | None = None) -> Constraints:
    """What ``segment`` asks of the pet, from the cue words of the facts file."""
    book = book or default_facts()
    cues = book.cues
    words = _norm_words(segment)
    if not words:
        return Constraints()
    species: set[str] = set()
    not_species: set[str] = set()
    breed = ""
    for name, facts in sorted(book.breeds.items(), key=lambda kv: -len(kv[0])):
        hits = _find(words, " ".join(_norm_words(name)))
        if hits and not _negated(words, hits[0], cues.negators):
            breed = breed or name
            species.add(facts.species)
    for kind, phrases in cues.species.items():
        for phrase in phrases:
            for at in _find(words, phrase):
                (not_species if _negated(words, at, cues.negators) else species).add(kind)
    # "cats and dogs", "pet lovers": no species asked; "no cats": the other one, softly.
    species_value = species.pop() if len(species) == 1 else ""
    not_species -= {species_value}
    left = [s for s in SPECIES if s not in not_species]
    if not species_value and len(left) == 1:  # "allergic to cats": a dog, then
        species_value, not_species = left[0], set()

    size = ""
    for value, phrases in cues.size.items():
        for phrase in phrases:
            for at in _find(words, phrase):
                # Right before the pet: "small dogs", "a big fluffy cat" (two words at most).
                after = words[at + len(phrase.split()) : at + len(phrase.split()) + 2]
                if any(w in cues.size_nouns for w in after):
                    size = size or value
    coat = ""
    for value, phrases in cues.coat.items():
        if any(_find(words, phrase) for phrase in phrases):
            coat = coat or value

    weights: dict[tuple[str, str], float] = {}
    for phrases, facts in cues.prefer:
        found = sum(len(_find(words, phrase)) for phrase in phrases)
        for fact, value in facts if found else ():
            weights[(fact, value)] = weights.get((fact, value), 0.0) + 1.0
    prefer = tuple(
        Preference(fact, value, weight)
        for (fact, value), weight in sorted(weights.items())
        # A preference the hard constraints already settle, or contradict, says nothing more.
        if not (fact == "species" and (species_value or value in not_species))
    )
    return Constraints(
        species=species_value,
        size=size,
        coat=coat,
        breed=breed,
        not_species=tuple(sorted(not_species)),
        prefer=prefer,
    )


# -- choosing breeds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranked:
    """The library's breeds that keep the (possibly relaxed) constraints, best first."""

    constraints: Constraints  # the ones actually kept
    breeds: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    species: dict[str, str] = field(default_factory=dict)  # breed -> species

    def of_species(self, species: str) -> list[str]:
        return [b for b in self.breeds if self.species.get(b) == species]


def rank_breeds(
    library: Mapping[str, Iterable[str]],
    constraints: Constraints,
    book: FactsBook | None = None,
    *,
    counts: Mapping[str, int] | None = None,
) -> Ranked:
    """``library`` ({species: [breed, ...]}) ordered by ``constraints``: only breeds that keep
    the hard ones (given up one by one when none does), best soft score first, then by
    photos in the library (``counts``), then by name. Breeds without facts come last, and only
    when the constraints ask for nothing but their species."""
    book = book or default_facts()
    counts = counts or {}
    pool = [(b, s) for s, names in library.items() for b in names]
    for kept in constraints.relaxed():
        known = [(b, book.breeds[b]) for b, _ in pool if b in book.breeds]
        allowed = [(b, f) for b, f in known if kept.allows(f)]
        if kept.hard().keys() <= {"species"} and not kept.prefer:
            # Without facts a breed can still honour a species: keep those too.
            allowed += [
                (b, None)
                for b, s in pool
                if b not in book.breeds
                and (not kept.species or s == kept.species)
                and s not in kept.not_species
            ]
        if allowed:
            scores = {b: (kept.score(f) if f else -1.0) for b, f in allowed}
            order = sorted(scores, key=lambda b: (-scores[b], -int(counts.get(b, 0)), b))
            return Ranked(kept, tuple(order), scores, {b: s for b, s in pool})
    return Ranked(constraints, (), {}, {})


def fit_reason(facts: BreedFacts, constraints: Constraints) -> str:
    """One line on why a breed fits: its size and energy, and the facts the segment asked
    about ("the japanese chin is a small, calm dog, good with seniors")."""
    asked = {p.fact for p in constraints.prefer} | set(constraints.hard())
    size = "medium-sized" if facts.size == "medium" else facts.size
    energy = {"low": "calm", "medium": "easy-going", "high": "energetic"}[facts.energy]
    extra = []
    if "coat" in asked or "grooming" in asked:
        coat = "hairless" if facts.coat == "hairless" else f"with a {facts.coat} coat"
        care = {"low": "easy to groom", "medium": "some grooming", "high": "much grooming"}
        extra.append(f"{coat} ({care[facts.grooming]})")
    wanted = {p.value for p in constraints.prefer if p.fact == "good_with"}
    good = sorted(wanted & facts.good_with)
    if good:
        extra.append("good with " + " and ".join(good))
    return f"the {facts.name} is a {size}, {energy} {facts.species}" + "".join(
        f", {e}" for e in extra
    )


def named_breed(text: str, names: Iterable[str]) -> str:
    """The longest of ``names`` that ``text`` names, or ''."""
    norm = f" {' '.join(_norm_words(text))} "
    found = [n for n in names if f" {' '.join(_norm_words(n))} " in norm]
    return max(found, key=len) if found else ""
