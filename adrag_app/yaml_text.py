"""YAML data files (segments, breeds, roles, placements, brand kit): parsed with one error shape.

Each file's schema is its own module's; what they share is the first step, and that a file that
is not YAML at all is reported the same way: the file, then the parser's reason.
"""

from __future__ import annotations

from typing import Any

import yaml


def parse_yaml(text: str, source: str, error: type[Exception]) -> Any:
    """``text`` parsed (safely) as YAML; ``error`` naming ``source`` when it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{source}: not valid YAML ({e})") from None
