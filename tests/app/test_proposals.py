"""Proposals honour the segment's own words: species, size, coat, energy, home.

The segments here are held out: none is a segment, keyword or phrasing of the planner's or the
tests' data files (checked below), so the planner cannot have been tuned to them. What is
asserted is the constraint (a cat; a small dog; a long coat), read from the breed facts of the
breed the proposal names, never one exact breed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adrag_app.agent.agent import Agent, AgentState
from adrag_app.planner.facts import (
    BreedFacts,
    BreedsFileError,
    default_facts,
    named_breed,
    parse_facts,
    read_constraints,
)
from adrag_app.planner.planner import BuiltinPlanner, LlmPlanner, normalise
from tests.support.data import PETS
from tests.support.fake_llm import FakeLlm, text
from tests.support.fake_tool import FakeTool

DATA_FILES = [
    Path(__file__).parents[2] / "adrag_app" / "planner" / "segments.yaml",
    Path(__file__).parents[2] / "adrag_app" / "planner" / "breeds.yaml",
    Path(__file__).parent / "data" / "phrasings.yaml",
]


def _small_or_cat(f: BreedFacts) -> bool:
    return f.species == "cat" or f.size == "small"


def _flat_friendly(f: BreedFacts) -> bool:
    return "apartments" in f.good_with


def _calm(f: BreedFacts) -> bool:
    return f.energy == "low"


# (segment, what every one of the first three proposals keeps, what the first one also does)
HELD_OUT: list[tuple[str, dict, object]] = [
    ("young urban couples who just adopted a rescue cat", {"species": "cat"}, None),
    ("retirees who love small dogs", {"species": "dog", "size": "small"}, None),
    (
        "busy nurses in small flats who want a low-maintenance companion",
        {},
        lambda f: _small_or_cat(f) and "apartments" in f.good_with and f.grooming == "low",
    ),
    (
        "families with toddlers and a big backyard",
        {},
        lambda f: f.species == "dog" and f.size == "large" and "kids" in f.good_with,
    ),
    ("cat people who love fluffy long-haired breeds", {"species": "cat", "coat": "long"}, None),
    ("grandparents looking for a tiny lap dog", {"species": "dog", "size": "small"}, None),
    ("people who are allergic to cats", {"species": "dog"}, None),
    (
        "kitten adopters in city apartments",
        {"species": "cat"},
        lambda f: "apartments" in f.good_with,
    ),
    ("farmers who need a big guard dog", {"species": "dog", "size": "large"}, None),
    ("owners of sleek short-haired cats", {"species": "cat", "coat": "short"}, None),
    (
        "couch potatoes who want a calm, cuddly kitty",
        {"species": "cat"},
        lambda f: f.energy == "low",
    ),
    (
        "mountain hikers wanting a large energetic dog",
        {"species": "dog", "size": "large"},
        lambda f: f.energy == "high",
    ),
    ("designers who fancy a hairless cat", {"species": "cat", "coat": "hairless"}, None),
    (
        "pensioners in a flat who want a quiet little dog",
        {"species": "dog", "size": "small"},
        lambda f: "seniors" in f.good_with or "apartments" in f.good_with,
    ),
    ("first-time owners after a medium sized dog", {"species": "dog", "size": "medium"}, None),
    ("marathon runners looking for a running partner", {}, lambda f: f.energy == "high"),
    (
        "shift workers in a studio who need an independent cat",
        {"species": "cat"},
        lambda f: "apartments" in f.good_with,
    ),
    ("teenagers who adore puppies", {"species": "dog"}, None),
]


def _facts_of(description: str) -> BreedFacts:
    book = default_facts()
    breed = named_breed(description, book.breeds)
    assert breed, f"{description!r} names no breed of the library"
    return book.breeds[breed]


def _keeps(f: BreedFacts, hard: dict) -> bool:
    return all(f.value(k) == v for k, v in hard.items())


def sample_vocabulary() -> dict[str, dict[str, int]]:
    """The sample library's labels, counted as the index reports them."""
    vocab: dict[str, dict[str, int]] = {"breed": {}, "species": {}}
    for line in (PETS / "labels.csv").read_text().splitlines()[1:]:
        _, breed, species = (x.strip() for x in line.split(","))
        vocab["breed"][breed] = vocab["breed"].get(breed, 0) + 1
        vocab["species"][species] = vocab["species"].get(species, 0) + 1
    return vocab


def test_the_held_out_segments_are_in_no_data_file() -> None:
    assert len(HELD_OUT) >= 15
    corpus = " ".join(normalise(p.read_text()) for p in DATA_FILES)
    for segment, _, _ in HELD_OUT:
        assert normalise(segment) not in corpus, segment


def test_the_facts_cover_every_breed_of_the_sample_with_its_species() -> None:
    book = default_facts()
    labels = {}
    for line in (PETS / "labels.csv").read_text().splitlines()[1:]:
        _, breed, species = (x.strip() for x in line.split(","))
        labels[breed] = species
    assert len(labels) == 37 and set(book.breeds) == set(labels)
    for name, facts in book.breeds.items():
        assert facts.species == labels[name], name
    # A few well-known facts, so a shuffled file cannot pass.
    assert book.breeds["chihuahua"].size == "small" and book.breeds["newfoundland"].size == "large"
    assert book.breeds["sphynx"].coat == "hairless" and book.breeds["persian"].coat == "long"
    assert book.breeds["pug"].energy == "low" and book.breeds["german shorthaired"].energy == "high"


@pytest.mark.parametrize("vocabulary", [None, "sample"], ids=["curated", "sample-library"])
@pytest.mark.parametrize(("segment", "hard", "first"), HELD_OUT, ids=[s for s, _, _ in HELD_OUT])
def test_offline_proposals_keep_what_the_segment_says(
    segment: str, hard: dict, first, vocabulary: str | None
) -> None:
    planner = BuiltinPlanner(vocabulary=sample_vocabulary() if vocabulary else None)
    seen: list[str] = []
    for i in range(3):
        proposal = planner.propose(segment, tuple(seen))
        seen.append(proposal.description)
        facts = _facts_of(proposal.description)
        assert _keeps(facts, hard), (i, proposal)
        if i == 0 and first is not None:
            assert first(facts), proposal
        # The species goes to the search as a label filter: the labels hold it.
        assert proposal.filters == {"species": facts.species}, proposal
        assert proposal.constraints == read_constraints(segment).as_dict()
        assert "\n" not in proposal.reason and proposal.reason
    assert len(set(seen)) == 3  # asking again still gives something new


def test_the_issue_examples_no_longer_propose_a_dog_for_a_cat_or_a_samoyed() -> None:
    planner = BuiltinPlanner(vocabulary=sample_vocabulary())
    cat = planner.propose("young urban couples who just adopted a rescue cat")
    assert _facts_of(cat.description).species == "cat" and "havanese" not in cat.description
    seen: list[str] = []
    for _ in range(4):
        seen.append(planner.propose("retirees who love small dogs", tuple(seen)).description)
    assert not any("samoyed" in d for d in seen), seen


def test_a_library_without_a_fitting_breed_gives_up_size_before_species() -> None:
    planner = BuiltinPlanner(
        vocabulary={"breed": {"beagle": 8, "bengal": 8}, "species": {"dog": 8, "cat": 8}}
    )
    proposal = planner.propose("retirees who love small dogs")
    assert "beagle" in proposal.description and proposal.filters == {"species": "dog"}


def test_hard_constraints_become_filters_where_the_labels_hold_them() -> None:
    vocabulary = {
        "breed": {"pug": 5, "chihuahua": 5, "persian": 5},
        "species": {"dog": 10, "cat": 5},
        "size": {"small": 10, "medium": 5},
    }
    proposal = BuiltinPlanner(vocabulary=vocabulary).propose("students who want a tiny dog")
    assert proposal.filters == {"species": "dog", "size": "small"}
    # Without a species label in the library, no species filter (it would match nothing).
    bare = BuiltinPlanner(vocabulary={"breed": {"pug": 5, "persian": 5}})
    assert bare.propose("students who want a tiny dog").filters == {}


def test_the_agent_searches_the_species_the_segment_names(tmp_path: Path) -> None:
    tool = FakeTool(tmp_path / "volume")
    agent = Agent(tool, BuiltinPlanner(vocabulary=sample_vocabulary()))
    state, reply = agent.handle(AgentState(), "young urban couples who just adopted a rescue cat")
    assert reply.proposal["constraints"]["species"] == "cat"
    state, reply = agent.handle(state, "yes")
    arguments, context = tool.calls[-1]
    assert context.filters == {"species": "cat"}
    assert _facts_of(arguments["description"]).species == "cat"


# -- with a language model ------------------------------------------------------------------


def _answer(description: str, species: str) -> str:
    return f'{{"description": "{description}", "reason": "fits", "species": "{species}"}}'


def _llm_planner(llm: FakeLlm) -> LlmPlanner:
    return LlmPlanner(
        llm.base_url, "fake", "sk-planner", fallback=BuiltinPlanner(vocabulary=sample_vocabulary())
    )


def test_the_model_is_given_the_facts_and_its_misfit_is_sent_back_once() -> None:
    answers = [
        text(_answer("a samoyed playing in the snow", "dog")),
        text(_answer("a pug asleep on a sofa", "dog")),
    ]
    with FakeLlm("sk-planner", answers) as llm:
        proposal = _llm_planner(llm).propose("pensioners who dote on small dogs")
    assert proposal.description == "a pug asleep on a sofa" and proposal.source == "llm"
    assert proposal.filters == {"species": "dog"} and proposal.note == ""
    first, second = llm.requests
    system = first["messages"][0]["content"]
    assert "- pug: dog, small, short coat, low energy, good with apartments, kids, seniors" in (
        system
    )
    assert "small size" in first["messages"][1]["content"]
    correction = second["messages"][-1]["content"]
    assert "does not fit" in correction and "samoyed" in correction


def test_a_model_that_keeps_missing_falls_back_to_a_fitting_builtin_idea() -> None:
    answers = [
        text(_answer("a samoyed playing in the snow", "dog")),
        text(_answer("a persian cat on a rug", "cat")),
    ]
    with FakeLlm("sk-planner", answers) as llm:
        proposal = _llm_planner(llm).propose("pensioners who dote on small dogs")
    assert len(llm.requests) == 2
    assert "does not fit" in proposal.note
    facts = _facts_of(proposal.description)
    assert facts.species == "dog" and facts.size == "small"


def test_a_fitting_first_answer_is_taken_as_is() -> None:
    with FakeLlm("sk-planner", [text(_answer("a ragdoll curled on a window seat", "cat"))]) as llm:
        proposal = _llm_planner(llm).propose("book lovers who want a fluffy cat")
    assert proposal.description == "a ragdoll curled on a window seat" and len(llm.requests) == 1
    assert proposal.constraints == {"species": "cat", "coat": "long"}


# -- the facts file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("dog, size: small", "dog, size: tiny", 1), "size must be one of small, medium, large"),
        (("species: cat", "species: bird", 1), "species must be one of dog, cat"),
        (("good_with: [kids, apartments]", "good_with: [cats]", 1), "good_with must be a list"),
        (("    facts: {energy: high}", "    facts: {mood: happy}", 1), "unknown fact 'mood'"),
        (("breeds:", "breedz:", 1), "expected a mapping with a 'breeds' mapping"),
    ],
)
def test_a_bad_facts_file_is_one_clear_error(change: tuple[str, str, int], message: str) -> None:
    path = DATA_FILES[1]
    old, new, count = change
    broken = path.read_text().replace(old, new, count)
    assert broken != path.read_text()
    with pytest.raises(BreedsFileError) as caught:
        parse_facts(broken, "campaigns/breeds.yaml")
    assert str(caught.value).startswith("campaigns/breeds.yaml") and message in str(caught.value)
