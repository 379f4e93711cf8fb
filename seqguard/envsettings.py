"""Typed settings from prefixed environment variables: one reader for the service and the load-test users."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from seqguard.configfile import TOP_LEVEL, field_errors

M = TypeVar("M", bound=BaseModel)


def settings_from_env(
    model: type[M],
    prefix: str,
    env: Mapping[str, str] | None = None,
    decode: Callable[[str, str], Any] | None = None,
) -> M:
    """`model` from `<prefix><FIELD>` variables (empty ones ignored; `decode(field, text)` for non-scalar fields).
    Raises ValueError naming every offending variable and why."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    for name in model.model_fields:
        value = env.get(prefix + name.upper())
        if value:
            raw[name] = decode(name, value) if decode else value
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        # A problem across fields (a model validator) has no single variable to name.
        names = {TOP_LEVEL: f"{prefix}* settings"}
        raise ValueError("; ".join(f"{names.get(p['field'], prefix + p['field'].upper())}: {p['reason']}"
                                   for p in field_errors(e))) from None
