"""Who proposes the pet: a planner turns an audience segment into a photo description.

Two planners behind one interface (:class:`Planner`):

* :class:`BuiltinPlanner` works offline: a curated table of segments, each with a few pet
  descriptions that name breeds present in the photo library (so hybrid search can find
  them), matched robustly (normalised words, synonyms, typo-tolerant via difflib) and with
  sensible fallbacks for segments it has never seen.
* :class:`LlmPlanner` asks any OpenAI-compatible ``/v1/chat/completions`` endpoint, configured
  by ``ADRAG_LLM_BASE_URL``, ``ADRAG_LLM_MODEL`` and ``ADRAG_LLM_API_KEY`` (optional
  ``ADRAG_LLM_TIMEOUT``). Any error falls back to the built-in planner, and the proposal
  carries a ``note`` saying so, so the marketer sees it.

Asking again for the same segment (passing the descriptions already proposed as
``exclude``) gives a different proposal.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from adrag_assets.settings import LlmSettings, load_settings

log = logging.getLogger(__name__)

MAX_PROPOSAL_CHARS = 200


@dataclass(frozen=True)
class Proposal:
    """A photo description to search for, why it fits the segment, and label filters."""

    description: str
    reason: str
    filters: dict[str, str] = field(default_factory=dict)
    source: str = "builtin"  # "builtin", "llm", "fallback" (unknown segment) or "marketer"
    note: str = ""  # shown to the marketer as is, e.g. why the LLM planner was not used

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proposal:
        return cls(
            description=str(data["description"]),
            reason=str(data.get("reason") or ""),
            filters={str(k): str(v) for k, v in dict(data.get("filters") or {}).items()},
            source=str(data.get("source") or "builtin"),
            note=str(data.get("note") or ""),
        )


@runtime_checkable
class Planner(Protocol):
    name: str

    def propose(self, segment: str, exclude: Sequence[str] = ()) -> Proposal:
        """A description for ``segment`` that is not in ``exclude`` (when one is left)."""
        ...


# -- words -----------------------------------------------------------------------------------

# Breeds in the photo library (labels.csv of the sample), by species. Descriptions name them so
# that lexical search on the labels finds matching photos even with a non-semantic encoder.
DOG_BREEDS = (
    "american bulldog",
    "american pit bull terrier",
    "basset hound",
    "beagle",
    "boxer",
    "chihuahua",
    "english cocker spaniel",
    "english setter",
    "german shorthaired",
    "great pyrenees",
    "havanese",
    "japanese chin",
    "keeshond",
    "leonberger",
    "miniature pinscher",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint bernard",
    "samoyed",
    "scottish terrier",
    "shiba inu",
    "staffordshire bull terrier",
    "wheaten terrier",
    "yorkshire terrier",
)
CAT_BREEDS = (
    "abyssinian",
    "bengal",
    "birman",
    "bombay",
    "british shorthair",
    "egyptian mau",
    "maine coon",
    "persian",
    "ragdoll",
    "russian blue",
    "siamese",
    "sphynx",
)
DOG_WORDS = {"dog", "dogs", "puppy", "puppies", "pup", "doggy", "hound", "terrier", "canine"}
CAT_WORDS = {"cat", "cats", "kitten", "kittens", "kitty", "feline"}
PET_WORDS = DOG_WORDS | CAT_WORDS | {"pet", "pets", "animal", "animals"}

_STOP = {
    "a", "an", "the", "of", "for", "and", "or", "in", "on", "with", "who", "that", "to", "at",
    "our", "my", "their", "people", "customers", "customer", "audience", "segment", "target",
    "consumers", "buyers", "users", "folks", "group", "market",
}  # fmt: skip


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces (accents and punctuation dropped)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_text.lower()).split())


def _stem(word: str) -> str:
    # Just enough morphology for segment names: "parents" ~ "parent", "families" ~ "family".
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    return [_stem(w) for w in normalise(text).split() if w not in _STOP]


def species_in(text: str) -> set[str]:
    """The species a description mentions, by species word or breed name."""
    norm = f" {normalise(text)} "
    found = set()
    words = set(norm.split())
    if words & DOG_WORDS or any(f" {b} " in norm for b in DOG_BREEDS):
        found.add("dog")
    if words & CAT_WORDS or any(f" {b} " in norm for b in CAT_BREEDS):
        found.add("cat")
    return found


def infer_filters(description: str) -> dict[str, str]:
    """``{"species": ...}`` when the description names exactly one species, else no filter."""
    found = species_in(description)
    return {"species": found.pop()} if len(found) == 1 else {}


def mentions_pet(text: str) -> bool:
    return bool(species_in(text) or set(normalise(text).split()) & PET_WORDS)


# -- the curated table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    name: str
    keywords: tuple[str, ...]  # words and phrases that point at this segment
    ideas: tuple[tuple[str, str], ...]  # (description, one-line reason)


# fmt: off
SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "young urban professionals",
        (
            "young urban professional", "yuppie", "urban", "city", "professional", "millennial",
            "apartment", "downtown", "commuter", "office worker",
        ),
        (
            ("a pug relaxing in a bright city apartment",
             "a small, low-maintenance dog that suits apartment life and busy schedules"),
            ("a Russian Blue cat lounging on a sofa in a modern loft",
             "a calm, independent cat for people who are out at work all day"),
            ("a Shiba Inu on a balcony overlooking the city",
             "a stylish, self-assured dog that matches an urban lifestyle"),
        ),
    ),
    Segment(
        "families with young children",
        (
            "family", "families", "kid", "child", "children", "parent", "mom", "dad", "mum",
            "toddler", "household",
        ),
        (
            ("a beagle playing with a ball in a sunny backyard",
             "a friendly, playful dog known for being patient with children"),
            ("a ragdoll cat curled up on a family sofa",
             "a famously gentle cat that tolerates being cuddled by kids"),
            ("a Newfoundland lying on the lawn",
             "a gentle giant, the classic family guardian"),
        ),
    ),
    Segment(
        "retirees",
        (
            "retiree", "retired", "senior", "elderly", "older adult", "pensioner", "grandparent",
            "grandma", "grandpa", "boomer", "empty nester", "aged 65",
        ),
        (
            ("a Persian cat napping on a cozy armchair",
             "a calm, affectionate companion for a relaxed home"),
            ("a Havanese sitting on a garden bench",
             "a small, sociable lap dog that loves company and short walks"),
            ("a British Shorthair cat by a sunny window",
             "an easy-going, low-energy cat for a quiet home"),
        ),
    ),
    Segment(
        "students",
        (
            "student", "college", "university", "campus", "dorm", "school", "gen z", "young adult",
            "teen", "teenager",
        ),
        (
            ("a Bengal cat playing on a desk",
             "a curious, energetic cat that fits a small shared space"),
            ("a chihuahua peeking out of a backpack",
             "a tiny, portable dog with plenty of personality"),
            ("a Sphynx cat wrapped in a blanket",
             "quirky and photogenic, made for sharing"),
        ),
    ),
    Segment(
        "outdoor enthusiasts",
        (
            "outdoor", "outdoors", "hiker", "hiking", "camping", "camper", "adventure", "nature",
            "trail", "mountain", "climber", "explorer",
        ),
        (
            ("a German Shorthaired pointer on a mountain trail",
             "a tireless, athletic dog built for long days outside"),
            ("a Saint Bernard in the snowy mountains",
             "the legendary mountain rescue dog"),
            ("an English Setter running through a meadow",
             "a graceful field dog that loves open country"),
        ),
    ),
    Segment(
        "fitness enthusiasts",
        (
            "fitness", "gym", "runner", "running", "athlete", "athletic", "sport", "sporty",
            "active", "yoga", "cyclist", "marathon", "workout", "healthy lifestyle",
        ),
        (
            ("a boxer running on a beach at sunrise",
             "a muscular, energetic dog that mirrors an active lifestyle"),
            ("a Staffordshire Bull Terrier on a morning run in the park",
             "a strong, enthusiastic training partner"),
            ("a miniature pinscher sprinting across the grass",
             "small but full of energy and drive"),
        ),
    ),
    Segment(
        "luxury shoppers",
        (
            "luxury", "premium", "affluent", "wealthy", "high income", "high net worth", "upscale",
            "elegant", "exclusive", "rich",
        ),
        (
            ("a Persian cat on a velvet cushion",
             "the classic glamorous, well-groomed cat"),
            ("a Birman cat in an elegant living room",
             "a refined, silky-coated cat that signals taste"),
            ("a Samoyed with a pristine white coat in a stylish home",
             "a striking, photogenic dog with a luxurious look"),
        ),
    ),
    Segment(
        "new pet owners",
        (
            "new pet owner", "first pet", "first time owner", "pet parent", "adopter", "adoption",
            "new puppy", "new kitten",
        ),
        (
            ("a Pomeranian puppy on a soft rug",
             "small, adaptable and easy for a first-time owner to fall for"),
            ("a ragdoll kitten in a basket",
             "a relaxed, people-oriented cat for first-time owners"),
            ("a beagle puppy exploring a living room",
             "friendly and forgiving, a classic first dog"),
        ),
    ),
    Segment(
        "remote workers",
        (
            "remote", "work from home", "wfh", "home office", "freelancer", "telecommuter",
            "hybrid worker", "digital nomad", "laptop",
        ),
        (
            ("a British Shorthair cat sitting beside a laptop",
             "a quiet, steady desk companion for long home-office days"),
            ("a pug napping under a home office desk",
             "a low-key dog happy to keep you company all day"),
            ("a Maine Coon stretched out on a sunny windowsill",
             "a gentle giant of a cat that brings calm to a workday"),
        ),
    ),
    Segment(
        "cat lovers",
        (
            "cat lover", "cat owner", "cat people", "feline fan", "cat",
        ),
        (
            ("a Maine Coon with a fluffy mane on a sofa",
             "the majestic cat every cat lover admires"),
            ("a Siamese cat with bright blue eyes",
             "an iconic, talkative breed with instant recognition"),
            ("an Abyssinian cat exploring a bookshelf",
             "curious and athletic, a cat lover's favourite"),
        ),
    ),
    Segment(
        "dog lovers",
        (
            "dog lover", "dog owner", "dog people", "dog",
        ),
        (
            ("a happy Samoyed with its famous smile",
             "the 'smiling' dog that makes everyone grin"),
            ("a beagle with floppy ears in a park",
             "a beloved all-round family and companion dog"),
            ("a Leonberger resting in the garden",
             "an impressive, gentle and loyal big dog"),
        ),
    ),
    Segment(
        "eco-conscious consumers",
        (
            "eco", "eco conscious", "green", "sustainable", "sustainability", "environment",
            "environmentally", "organic", "vegan", "natural", "climate",
        ),
        (
            ("a Shiba Inu in a lush green garden",
             "a natural, clean-cut dog that fits an earthy, green mood"),
            ("an Abyssinian cat among potted plants",
             "a warm, natural-looking cat amid greenery"),
            ("a wheaten terrier in a wildflower meadow",
             "soft, natural colours and a fresh outdoor feel"),
        ),
    ),
    Segment(
        "travelers",
        (
            "travel", "traveler", "traveller", "tourist", "jet setter", "frequent flyer",
            "road trip", "vacation", "holiday",
        ),
        (
            ("a Yorkshire Terrier in a travel carrier",
             "a compact, portable companion for people on the move"),
            ("a Japanese Chin looking out of a car window",
             "a small, adaptable dog that takes trips in stride"),
            ("a Bengal cat on a harness exploring outdoors",
             "an adventurous cat that likes to explore new places"),
        ),
    ),
    Segment(
        "social media creators",
        (
            "social media", "influencer", "creator", "instagram", "tiktok", "youtuber", "gen z",
            "trendy", "viral",
        ),
        (
            ("a Shiba Inu with a cheeky expression",
             "a meme-famous breed that performs well on social feeds"),
            ("a pug wearing a tiny bandana",
             "an expressive face the internet loves"),
            ("a Sphynx cat posing in soft light",
             "an eye-catching, unusual look that stops the scroll"),
        ),
    ),
    Segment(
        "rural homeowners",
        (
            "rural", "country", "countryside", "farm", "farmer", "ranch", "village", "homestead",
            "small town", "acreage",
        ),
        (
            ("a Great Pyrenees guarding a farm field",
             "a classic working guardian dog of the countryside"),
            ("a basset hound in a country field",
             "a laid-back scent hound at home in open country"),
            ("an English Cocker Spaniel by a farmhouse gate",
             "a cheerful working spaniel with rural roots"),
        ),
    ),
    Segment(
        "suburban homeowners",
        (
            "suburban", "suburb", "suburbs", "homeowner", "house", "garden", "backyard", "yard",
            "home owner",
        ),
        (
            ("an American Bulldog on a front lawn",
             "a sturdy, friendly dog for a house with a yard"),
            ("a Keeshond sitting on a porch",
             "a fluffy, sociable watchdog for a family home"),
            ("a Maine Coon in a sunny garden",
             "a relaxed, big-hearted cat at home in a house and garden"),
        ),
    ),
    Segment(
        "young couples",
        (
            "couple", "couples", "newlywed", "newlyweds", "engaged", "partner", "dink",
            "young couple", "romantic",
        ),
        (
            ("a Havanese cuddled on a couch between two people",
             "an affectionate dog that loves shared attention"),
            ("a Birman cat on a cozy bed",
             "a sweet, gentle cat that makes a house feel like home"),
            ("a Japanese Chin on a picnic blanket",
             "a charming, companionable little dog"),
        ),
    ),
    Segment(
        "busy parents",
        (
            "busy parent", "working parent", "working mom", "working dad", "time poor", "busy",
            "hectic", "on the go",
        ),
        (
            ("a British Shorthair cat napping in a quiet corner",
             "an independent, low-maintenance cat for a hectic household"),
            ("a basset hound snoozing on the kitchen floor",
             "a mellow dog that keeps calm amid the chaos"),
            ("a ragdoll cat relaxing on a bed",
             "a placid cat that asks for little and gives a lot"),
        ),
    ),
    Segment(
        "winter sports fans",
        (
            "winter", "snow", "ski", "skier", "skiing", "snowboard", "snowboarder", "cold",
            "alpine",
        ),
        (
            ("a fluffy Samoyed playing in fresh snow",
             "a snow-loving dog bred for cold climates"),
            ("a Saint Bernard in a snowy alpine landscape",
             "the iconic alpine dog"),
            ("a Keeshond with a thick coat in winter",
             "a plush, weatherproof coat that says winter"),
        ),
    ),
    Segment(
        "beach lovers",
        (
            "beach", "summer", "surf", "surfer", "coast", "coastal", "sea", "ocean", "sunny",
        ),
        (
            ("a Staffordshire Bull Terrier running on a sandy beach",
             "an exuberant dog that loves water and sunshine"),
            ("a boxer playing in the waves",
             "a fun, energetic dog for long summer days"),
            ("a Chihuahua in the shade of a beach umbrella",
             "a sun-loving little dog with lots of attitude"),
        ),
    ),
    Segment(
        "creatives and artists",
        (
            "creative", "artist", "designer", "musician", "writer", "photographer", "artsy",
            "bohemian", "hipster",
        ),
        (
            ("a black Bombay cat in an art studio",
             "a sleek, mysterious cat that suits a creative space"),
            ("a Scottish Terrier in a sunlit workshop",
             "a characterful, independent-minded dog"),
            ("an Egyptian Mau on a stack of books",
             "an elegant spotted cat with a striking look"),
        ),
    ),
    Segment(
        "gamers and tech fans",
        (
            "gamer", "gaming", "tech", "techie", "geek", "developer", "programmer", "engineer",
            "esports", "early adopter", "gadget",
        ),
        (
            ("a Sphynx cat next to a glowing keyboard",
             "a futuristic-looking cat that suits a tech setting"),
            ("a pug curled up on a gaming chair",
             "a loyal, low-key companion for long sessions indoors"),
            ("a Bengal cat watching a screen",
             "a sharp, curious cat with a wild look"),
        ),
    ),
    Segment(
        "budget-conscious shoppers",
        (
            "budget", "value", "thrifty", "frugal", "bargain", "savings", "deal", "price sensitive",
            "affordable", "low income",
        ),
        (
            ("an American Pit Bull Terrier relaxing at home",
             "a warm, down-to-earth look that feels real and relatable"),
            ("a Russian Blue cat on a simple sofa",
             "an understated, easy-care cat for an everyday home"),
            ("a beagle resting on a doormat",
             "an approachable, everyday family dog"),
        ),
    ),
)

# For segments nobody curated: broadly appealing, well-represented pets, rotated by segment so
# two unknown segments do not both get the same photo.
FALLBACK_IDEAS: tuple[tuple[str, str], ...] = (
    ("a happy beagle in a sunny park",
     "a friendly, widely loved dog that appeals to most audiences"),
    ("a Maine Coon relaxing on a sofa",
     "a gentle, photogenic cat with broad appeal"),
    ("a smiling Samoyed outdoors",
     "a cheerful dog whose 'smile' reads well in any ad"),
    ("a Siamese cat by a bright window",
     "an elegant, instantly recognisable cat"),
    ("a pug on a cozy blanket",
     "an expressive, much-loved small dog"),
    ("a ragdoll cat curled up on a bed",
     "a calm, affectionate cat that feels like home"),
)
# fmt: on


def _phrases(segment: Segment) -> list[str]:
    return [segment.name, *segment.keywords]


def _word_match(word: str, vocab: set[str]) -> float:
    """1 for an exact match, ~0.8-0.9 for a typo (difflib), else 0."""
    if word in vocab:
        return 1.0
    if len(word) < 4:
        return 0.0
    close = difflib.get_close_matches(word, vocab, n=1, cutoff=0.8)
    return 0.85 if close else 0.0


def segment_score(text: str, segment: Segment) -> float:
    """How well ``text`` names ``segment``, 0..1."""
    words = tokens(text)
    if not words:
        return 0.0
    norm = " ".join(words)
    best_phrase = 0.0
    for phrase in _phrases(segment):
        p = " ".join(tokens(phrase))
        if not p:
            continue
        if f" {p} " in f" {norm} ":
            # A whole keyword phrase inside the text: strong, more so for longer phrases.
            best_phrase = max(best_phrase, min(1.0, 0.7 + 0.1 * len(p.split())))
        # The whole text against the phrase: only a near-miss (a typo) counts, since short
        # unrelated words ("nurses", "outdoors") can share many letters.
        ratio = difflib.SequenceMatcher(None, norm, p).ratio()
        if ratio >= 0.85:
            best_phrase = max(best_phrase, ratio * 0.95)
    vocab = {w for phrase in _phrases(segment) for w in tokens(phrase)}
    overlap = sum(_word_match(w, vocab) for w in words) / len(words)
    return max(best_phrase, overlap * 0.9)


def match_segment(text: str, threshold: float = 0.6) -> tuple[Segment | None, float]:
    """The curated segment ``text`` names best, and its score (None below ``threshold``)."""
    scored = sorted(((segment_score(text, s), i) for i, s in enumerate(SEGMENTS)), reverse=True)
    score, i = scored[0]
    return (SEGMENTS[i], score) if score >= threshold else (None, score)


def looks_like_segment(text: str) -> bool:
    """True when ``text`` clearly names a curated audience (and mentions no pet)."""
    return not mentions_pet(text) and match_segment(text, threshold=0.7)[0] is not None


def _stable_offset(text: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(normalise(text).encode()).digest()[:4], "big") % n


class BuiltinPlanner:
    """The curated table: offline, deterministic, always available."""

    name = "builtin"

    def propose(self, segment: str, exclude: Sequence[str] = ()) -> Proposal:
        used = {normalise(e) for e in exclude}
        matched, _ = match_segment(segment)
        ideas: list[tuple[str, str, str]] = []
        if matched is not None:
            ideas += [(d, r, "builtin") for d, r in matched.ideas]
        # Then the fallbacks, starting at a place that depends on the segment.
        start = _stable_offset(segment, len(FALLBACK_IDEAS))
        rotated = FALLBACK_IDEAS[start:] + FALLBACK_IDEAS[:start]
        ideas += [(d, r, "fallback") for d, r in rotated]
        # Then the other segments' ideas: asking again always gives something new.
        ideas += [(d, r, "fallback") for s in SEGMENTS if s is not matched for d, r in s.ideas]
        fresh = [idea for idea in ideas if normalise(idea[0]) not in used]
        # Everything used up (a very long conversation): start the cycle again.
        description, reason, source = (fresh or ideas)[0]
        if source == "fallback" and matched is None:
            reason = f"{reason} (no curated idea for this segment yet)"
        return Proposal(description, reason, infer_filters(description), source)


# -- the LLM planner -------------------------------------------------------------------------

_SYSTEM_PROMPT = """\
You help a marketer choose a pet photo for an ad. Given an audience segment, propose ONE pet \
scene that appeals to that audience, using one of the breeds in our photo library:
dogs: {dogs}
cats: {cats}
Answer with a JSON object only, no prose: {{"description": "<a short scene with the breed, \
under 15 words>", "reason": "<one line: why it fits the segment>", "species": "dog" or "cat"}}"""


def _chat_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    # OpenAI clients take a base URL ending in /v1; accept one without it too.
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def parse_llm_answer(content: str) -> tuple[str, str, dict[str, str]]:
    """(description, reason, filters) from a chat answer that should be a JSON object.

    Tolerates code fences and prose around the object; refuses anything that is not a usable
    one-line description.
    """
    match = re.search(r"\{.*\}", content, flags=re.DOTALL)
    if not match:
        raise ValueError("the answer holds no JSON object")
    data = json.loads(match.group(0))
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    description = " ".join(str(data.get("description") or "").split())
    reason = " ".join(str(data.get("reason") or "").split())
    if not description:
        raise ValueError("the answer has no description")
    if len(description) > MAX_PROPOSAL_CHARS:
        raise ValueError(f"the description is longer than {MAX_PROPOSAL_CHARS} characters")
    species = str(data.get("species") or "").strip().lower()
    filters = {"species": species} if species in ("dog", "cat") else infer_filters(description)
    return description, reason[:MAX_PROPOSAL_CHARS], filters


class LlmPlanner:
    """Proposals from an OpenAI-compatible chat endpoint; the built-in planner on any error."""

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        timeout: float = 20.0,
        fallback: Planner | None = None,
        transport: Any = None,  # an httpx transport; tests pass httpx.MockTransport
    ) -> None:
        self.url = _chat_url(base_url)
        self.model = model
        self._api_key = api_key
        self.timeout = timeout
        self.fallback = fallback or BuiltinPlanner()
        self._transport = transport

    def __repr__(self) -> str:  # never the key
        return f"LlmPlanner(url={self.url!r}, model={self.model!r})"

    def _ask(self, segment: str, exclude: Sequence[str]) -> Proposal:
        import httpx

        system = _SYSTEM_PROMPT.format(dogs=", ".join(DOG_BREEDS), cats=", ".join(CAT_BREEDS))
        user = f"Audience segment: {' '.join(segment.split())[:300]}"
        if exclude:
            user += "\nAlready proposed (propose something different): " + "; ".join(exclude)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.7,
        }
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            response = client.post(self.url, json=body, headers=headers)
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"]
        description, reason, filters = parse_llm_answer(str(content))
        if normalise(description) in {normalise(e) for e in exclude}:
            raise ValueError("the model repeated a description already proposed")
        return Proposal(description, reason or "suggested by the language model", filters, "llm")

    def propose(self, segment: str, exclude: Sequence[str] = ()) -> Proposal:
        try:
            return self._ask(segment, exclude)
        except Exception as e:  # any failure: the marketer still gets a proposal
            detail = _short_error(e)
            log.warning("LLM planner failed (%s); using the built-in planner", detail)
            proposal = self.fallback.propose(segment, exclude)
            note = (
                f"The language model planner is unavailable ({detail}); this idea comes from "
                "the built-in list."
            )
            return Proposal(
                proposal.description, proposal.reason, proposal.filters, proposal.source, note
            )


def _short_error(error: BaseException) -> str:
    import httpx

    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.TransportError):
        return f"cannot connect: {type(error).__name__}"
    # Messages of our own parsing errors are safe and short; others are cut.
    return f"{type(error).__name__}: {str(error)[:120]}"


def make_planner(settings: LlmSettings | None = None) -> Planner:
    """The LLM planner when ``ADRAG_LLM_BASE_URL`` and ``ADRAG_LLM_MODEL`` are set, else the
    built-in one; ``settings`` default to ``load_settings().llm``."""
    llm = settings or load_settings().llm
    if not llm.configured:
        return BuiltinPlanner()
    return LlmPlanner(llm.base_url, llm.model, llm.api_key, timeout=llm.timeout_s)
