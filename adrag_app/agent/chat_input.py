"""The check every chat message passes before anything reads it (the app and `adrag chat`).

A message that is too long, not UTF-8 text, or holds control characters is refused with one
plain sentence: no intent parsing, no search, no trace, no model call sees it. The limit is
``ADRAG_MAX_MESSAGE_CHARS`` (``settings.app.max_message_chars``).
"""

from __future__ import annotations

import unicodedata

# Line breaks and tabs are text (a pasted brief); every other control character is not.
_ALLOWED_CONTROLS = frozenset("\t\n\r")
REFUSED = "message_refused"  # the Reply.error of a refused message


class MessageRefused(ValueError):
    """A chat message that is not read; ``str(error)`` is the sentence said back."""


def check_message(message: str | bytes, max_chars: int) -> str:
    """``message`` as text when it may be read, else :class:`MessageRefused` saying why."""
    if isinstance(message, bytes):
        # At most 4 bytes a character: a longer line cannot be a valid message, whatever it holds.
        if len(message) > 4 * max_chars:
            raise MessageRefused(_too_long(max_chars))
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageRefused("That message was not read: it is not UTF-8 text.") from None
    if len(message) > max_chars:
        raise MessageRefused(_too_long(max_chars, len(message)))
    for char in message:
        if "\ud800" <= char <= "\udfff":  # bytes that were not UTF-8, smuggled into a str
            raise MessageRefused("That message was not read: it is not UTF-8 text.")
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            raise MessageRefused(
                f"That message was not read: it holds a control character (U+{ord(char):04X})."
            )
    return message


def _too_long(max_chars: int, length: int | None = None) -> str:
    size = f" ({length:,} characters)" if length is not None else ""
    return (
        f"That message was not read: it is longer{size} than the {max_chars:,} characters "
        "a message may have. Say it in fewer words."
    )


def shortened(message: str, limit: int = 200) -> str:
    """``message`` cut to ``limit`` characters for showing back (a refused paste can be huge)."""
    return message if len(message) <= limit else message[:limit] + "…"
