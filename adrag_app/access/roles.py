"""Roles: who may search (viewer), generate (creator) and change the brand's setup (admin).

A signed-in user's role comes from an ID-token claim named by ``ADRAG_ROLES_CLAIM`` (a role
name or a list of them), or else from ``campaigns/access.yaml`` in the volume::

    admin: [lea@brand.com]
    creator: [ana@brand.com, "*@studio.brand.com"]
    viewer: ["*@brand.com"]

Each role lists emails or ``*@domain`` patterns; a user gets the highest role that matches and
nobody who matches none gets in. A refusal is one sentence naming the role needed
(:class:`NotAllowed`), raised by the tool itself, so a forged tool call is refused like a button.
Without sign-in (laptop mode) there is no role and nothing is refused.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adrag_app.yaml_text import parse_yaml
from adrag_assets.volume import CAMPAIGNS, open_volume

ACCESS_FILE = f"{CAMPAIGNS}/access.yaml"
MAX_FILE_BYTES = 256_000
_EMAIL = re.compile(r"^[^@\s*]+@[^@\s*]+\.[^@\s*]+$")
_DOMAIN = re.compile(r"^\*@[^@\s*]+\.[^@\s*]+$")


class Role(enum.IntEnum):
    """Higher includes lower: a creator may do what a viewer may."""

    VIEWER = 1
    CREATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_NAMES = {r.label: r for r in Role}


class AccessFileError(ValueError):
    """``campaigns/access.yaml`` cannot be used: names the file and the entry at fault."""


class NotAllowed(PermissionError):
    """One sentence naming the role an action needs."""


@dataclass(frozen=True)
class Person:
    """Who is signed in: the provider's stable ``subject``, the email, and the role."""

    subject: str
    email: str
    role: Role

    @property
    def display(self) -> str:
        return self.email or self.subject


@dataclass(frozen=True)
class AccessRules:
    """Role -> patterns (exact emails, lower-cased, or ``*@domain``)."""

    patterns: Mapping[Role, tuple[str, ...]]
    source: str

    def role_for(self, email: str) -> Role | None:
        """The highest role whose list matches ``email``; None: no entry."""
        email = email.strip().lower()
        if not _EMAIL.match(email):
            return None
        for role in sorted(self.patterns, reverse=True):
            if any(fnmatch.fnmatchcase(email, p) for p in self.patterns[role]):
                return role
        return None


def parse_access(text: str, source: str) -> AccessRules:
    """:class:`AccessRules` from YAML text; :class:`AccessFileError` naming ``source`` and the
    entry at fault otherwise."""
    data = parse_yaml(text, source, AccessFileError)
    if not isinstance(data, dict) or not data:
        raise AccessFileError(
            f"{source}: expected a mapping of roles ({', '.join(ROLE_NAMES)}) to lists of emails"
        )
    patterns: dict[Role, tuple[str, ...]] = {}
    for name, entries in data.items():
        role = ROLE_NAMES.get(str(name).strip().lower())
        if role is None:
            raise AccessFileError(
                f"{source}: unknown role {name!r} (expected {', '.join(ROLE_NAMES)})"
            )
        if not isinstance(entries, list):
            raise AccessFileError(f"{source}: {role.label} must be a list of emails")
        checked = []
        for entry in entries:
            value = str(entry).strip().lower() if isinstance(entry, str) else None
            if value is None or not (_EMAIL.match(value) or _DOMAIN.match(value)):
                raise AccessFileError(
                    f"{source}: {role.label}: {entry!r} is neither an email nor *@domain"
                )
            checked.append(value)
        patterns[role] = tuple(checked)
    return AccessRules(patterns, source)


def load_access(volume: str | Path) -> AccessRules | None:
    """The volume's access file, or None when there is none."""
    store = open_volume(volume)
    found = store.stat(ACCESS_FILE)
    if found is None:
        return None
    where = str(store.display(ACCESS_FILE))
    if found.size > MAX_FILE_BYTES:
        raise AccessFileError(f"{where}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = store.read_bytes(ACCESS_FILE, MAX_FILE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AccessFileError(f"{where}: cannot be read ({type(e).__name__})") from e
    return parse_access(text, where)


def role_from_claim(value: Any) -> Role | None:
    """The highest role named in a claim's value (a name, a list of names, or a space- or
    comma-separated string); unknown names are ignored."""
    if isinstance(value, str):
        names: Iterable[Any] = re.split(r"[\s,]+", value)
    elif isinstance(value, list | tuple):
        names = value
    else:
        return None
    found = [ROLE_NAMES[n.strip().lower()] for n in names if isinstance(n, str)
             and n.strip().lower() in ROLE_NAMES]  # fmt: skip
    return max(found, default=None)


def person_for(
    claims: Mapping[str, Any], *, claim: str = "", rules: AccessRules | None = None
) -> Person | None:
    """The signed-in person from their ID-token ``claims``: their role from ``claim`` when
    one is named, else from ``rules``; None when no role matches (they may not enter)."""
    subject = str(claims.get("sub") or "")
    email = str(claims.get("email") or "")
    if claim:
        role = role_from_claim(claims.get(claim))
    else:
        role = rules.role_for(email) if rules is not None and email else None
    if role is None or not subject:
        return None
    return Person(subject, email, role)


# What each action needs, as the refusal says it.
ACTIONS = {
    "generate": (Role.CREATOR, "Making or changing an ad"),
    "brand": (Role.ADMIN, "Changing the brand kit"),
    "review": (Role.ADMIN, "Archiving duplicate photos"),
}


def allowed(role: Role | str | None, action: str) -> bool:
    """Whether ``role`` may do ``action``; no role (no sign-in, laptop mode) may do all."""
    if role in (None, ""):
        return True
    needed, _ = ACTIONS[action]
    current = role if isinstance(role, Role) else ROLE_NAMES.get(str(role))
    return current is not None and current >= needed


def require(role: Role | str | None, action: str) -> None:
    """Raise :class:`NotAllowed` unless ``role`` may do ``action``."""
    if not allowed(role, action):
        needed, what = ACTIONS[action]
        raise NotAllowed(f"{what} needs the {needed.label} role.")
