"""Files and payloads in, typed models out: one reader for the YAML/JSON files seqguard takes, one wording of
pydantic's field errors.

Every boundary reports a problem as `field: reason` (the API as [{field, reason}], files and the CLI as lines),
so a user can find the key to fix. Callers pass their own exception class, which keeps their exit codes.

    cfg = load_model("infra/slo.yaml", SLO, "SLO file", error=SLOError)
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, TypedDict, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
TOP_LEVEL = "(top level)"


class ConfigFileError(ValueError):
    """A file that cannot be read, is not YAML, or does not validate; the message names the file and the fields."""


class FieldError(TypedDict):
    field: str
    reason: str


def field_errors(err: ValidationError, model: type[BaseModel] | None = None, *,
                 tags: Collection[str] = ()) -> list[FieldError]:
    """Each problem as {field: 'a.b.0.c', reason}. With `model`, an unknown key's reason lists the keys allowed
    there (and the closest one); `tags` are discriminator values pydantic puts into locations, dropped from them."""
    out: list[FieldError] = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if str(p) not in tags)
        out.append({"field": path or TOP_LEVEL, "reason": _reason(e, model, tags)})
    return out


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel] | None = None, *,
                            tags: Collection[str] = ()) -> str:
    """`<source> is invalid (N problems):` and one `  field: reason` line per problem."""
    problems = field_errors(err, model, tags=tags)
    lines = [f"{source} is invalid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
    lines += [f"  {p['field']}: {p['reason']}" for p in problems]
    return "\n".join(lines)


def read_mapping(path: str | Path, what: str, error: type[Exception] = ConfigFileError) -> dict[str, Any]:
    """The top-level mapping of a YAML (or JSON) file; `error` naming the file and the line for anything else.
    An empty file is an empty mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {p} is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {p}: {getattr(e, 'strerror', None) or e}") from None
    return parse_mapping(text, f"{what} {p}", error)


def parse_mapping(text: str, source: str, error: type[Exception] = ConfigFileError) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{source} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping of settings at the top level (got {type(data).__name__})")
    return data


def validate(data: Any, model: type[M], source: str, error: type[Exception] = ConfigFileError, *,
             tags: Collection[str] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise error(format_validation_error(e, source, model, tags=tags)) from None


def load_model(path: str | Path, model: type[M], what: str, error: type[Exception] = ConfigFileError, *,
               tags: Collection[str] = ()) -> M:
    """Read, parse and validate a settings file in one step; every problem is reported at once."""
    return validate(read_mapping(path, what, error), model, f"{what} {Path(path)}", error, tags=tags)


def _reason(err: Any, model: type[BaseModel] | None, tags: Collection[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden" and model is not None:
        allowed = _allowed_keys(err["loc"][:-1], model, tags)
        hint = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        suggestion = f" — did you mean {hint[0]!r}?" if hint else ""
        return f"unknown key{suggestion} (allowed here: {', '.join(sorted(allowed))})"
    if kind == "missing" and model is not None:
        return "required but missing"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "union_tag_invalid":
        ctx = err["ctx"]
        return f"{ctx['discriminator'].strip(chr(39))} must be one of {ctx['expected_tags']} (got {ctx['tag']!r})"
    if kind == "union_tag_not_found":
        return f"needs {err['ctx']['discriminator'].strip(chr(39))}"
    msg = str(err["msg"])
    if model is None:
        return msg
    given = err.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
    return f"{msg}{shown}"


def _allowed_keys(loc: tuple[Any, ...], model: type[BaseModel], tags: Collection[str]) -> list[str]:
    """Walk the models along `loc` to list the keys valid at that level, for the unknown-key message."""
    current: Any = model
    for part in map(str, loc):
        if part in tags:
            current = _model_in(current, tag=part)
            continue
        cls = _model_in(current)
        if cls is not None and part in cls.model_fields:
            current = cls.model_fields[part].annotation
            continue
        item = _item_type(current)  # a key of a dict, an index into a list
        if item is None:
            return []
        current = item
    cls = _model_in(current)
    return list(cls.model_fields) if cls else []


def _item_type(annotation: Any) -> Any:
    """The value type of a dict / list / tuple annotation (inside Optional too), None for anything else."""
    origin = get_origin(annotation)
    if origin in (dict, Mapping):
        return get_args(annotation)[1]
    if origin in (list, tuple, set, frozenset, Sequence):
        return get_args(annotation)[0]
    for arg in get_args(annotation) if origin in (Union, UnionType) else ():
        found = _item_type(arg)
        if found is not None:
            return found
    return None


def _model_in(annotation: Any, tag: str | None = None) -> type[BaseModel] | None:
    """The model class inside an annotation (unwrapping Optional and unions), picked by its `kind` tag if given."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        kind = annotation.model_fields.get("kind")
        if tag is None or (kind is not None and tag in get_args(kind.annotation)):
            return annotation
        return None
    for arg in get_args(annotation):
        found = _model_in(arg, tag)
        if found is not None:
            return found
    return None
