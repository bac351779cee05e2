"""KLING_EXTRA_FIELDS: the unknown fields an operator lets through, at the top of a body and inside it.

The service refuses a field it does not know, so that a typo (``promt``, ``setings.duration``) never
silently does nothing; yet Kling adds fields faster than releases follow, at every level: a new key of a
unified body's ``settings`` or ``options``, of an item of its ``contents``, of lip-sync's ``input``. The
setting names what may pass, each entry one of:

* ``name``: a new top-level field;
* ``a.b`` (any depth: ``a.b.c``): a new key ``b`` of the object ``a``, named by its keys from the top,
  array indices left out: ``settings.seed``, ``options.priority``, ``input.task_id``,
  ``camera_control.config.dolly``, and ``contents.weight`` for the key ``weight`` of any item of the
  array ``contents``;
* ``a.*``: any new key of the object ``a`` that is not a close misspelling of one it has;
* ``*``: any new top-level field that is not a close misspelling of a known one (nested keys need their
  own ``a.b`` or ``a.*``: a wildcard at the top must not hide a typo deep inside);
* ``effect_scene:<name>``: a video effect scene newer than the service's list (domain/effects_rules.py,
  which also reads ``input.<key>`` and ``input.*`` for the scenes' ``input``).

A close misspelling differs from a known name only by case, ``_`` and ``-``, or is as close as difflib's
0.8: it is refused even under a wildcard, with "did you mean". A key let through is sent to Kling as
the caller wrote it; the known keys beside it are checked as always.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

# Similarity above which an unknown field counts as a misspelling even when a wildcard lets new fields
# through; the hint in messages uses a looser bound, since a wrong guess there costs nothing.
MISSPELLING_CUTOFF = 0.8
HINT_CUTOFF = 0.6
WILDCARD = "*"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def close_matches(name: str, candidates: Iterable[str], cutoff: float) -> list[str]:
    """Known names resembling ``name``, best first, ignoring case, '_' and '-' (catches camelCase)."""
    by_normal, normal = {_normalise(candidate): candidate for candidate in candidates}, _normalise(name)
    if normal in by_normal:
        return [by_normal[normal]]
    matches = difflib.get_close_matches(normal, by_normal, n=2, cutoff=cutoff)
    return [by_normal[match] for match in matches]


def top_level_allowed(name: str, known: Iterable[str], extra_fields: frozenset[str]) -> bool:
    """Whether the unknown top-level field `name` may pass: named, or `*` and no misspelling."""
    if name in extra_fields:
        return True
    return WILDCARD in extra_fields and not close_matches(name, known, MISSPELLING_CUTOFF)


def nested_allowed(keys: tuple[str, ...], known: Iterable[str], extra_fields: frozenset[str]) -> bool:
    """Whether the unknown key at `keys` (its path of keys from the top, array indices left out:
    ``("contents", "weight")``) may pass: named whole (``contents.weight``), or its object's wildcard
    (``contents.*``) and not a misspelling of one of the object's `known` keys."""
    if ".".join(keys) in extra_fields:
        return True
    wildcard = ".".join((*keys[:-1], WILDCARD))
    return wildcard in extra_fields and not close_matches(keys[-1], known, MISSPELLING_CUTOFF)


def schema_with_nested(
    properties: dict[str, Any], definitions: dict[str, Any], extra_fields: frozenset[str]
) -> None:
    """Show the nested entries (``a.b``, ``a.*``) in a body's JSON Schema, so the OpenAPI document says
    what the service takes: ``b`` among the object's properties, or the object open to new keys. The
    object is found through its holder's schema (a ``$ref`` into `definitions`, an array's items); an
    entry whose path leads to no object is left out."""
    for entry in sorted(extra_fields):
        if "." not in entry or ":" in entry:
            continue
        first, *inner, last = entry.split(".")
        node = _object_of(properties.get(first), definitions)
        for key in inner:
            node = _object_of((node or {}).get("properties", {}).get(key), definitions)
        if node is None:
            continue
        if last == WILDCARD:
            node["additionalProperties"] = True
        else:
            node.setdefault("properties", {}).setdefault(last, {})


def _object_of(node: Any, definitions: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a property's schema describes: itself, its ``$ref``'s, or its items'."""
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        return _object_of(definitions.get(str(node["$ref"]).rsplit("/", 1)[-1]), definitions)
    if node.get("type") == "array":
        return _object_of(node.get("items"), definitions)
    return node if node.get("type") == "object" or "properties" in node else None
