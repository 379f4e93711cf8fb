"""The OpenAPI document as the service really behaves: every error status it can answer, one error schema, and
request constraints BentoML's generated schema leaves out (non-empty event lists, request size limits, the
timestamp form it accepts). Applied to BentoML's /docs.json by the gateway middleware, so the document and the
running settings cannot drift apart."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from seqguard.events import ID_FIELDS, REQUIRED_FIELDS

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
ERROR_SCHEMAS: dict[str, Any] = {
    "ErrorDetail": {
        "type": "object",
        "required": ["field", "reason"],
        "properties": {
            "field": {"type": "string", "description": "dotted location, e.g. events.0.ts (never the value)"},
            "reason": {"type": "string"},
        },
    },
    "ErrorResponse": {
        "type": "object",
        "required": ["error", "details", "request_id"],
        "properties": {
            "error": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}},
            "request_id": {"type": "string", "description": "also in the X-Request-ID header and the log line"},
        },
        "description": "The body of every error answer, whatever produced it.",
    },
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
# status -> (description, headers)
API_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("the body does not match the request schema (field and reason in details)", {}),
    "401": ("missing API key (only when SEQGUARD_API_KEYS is set)", {}),
    "403": ("invalid API key", {}),
    "413": ("request body over SEQGUARD_MAX_BODY_BYTES", {}),
    "415": ("Content-Type is not application/json", {}),
    "422": ("schema-valid but refused: timestamps outside the accepted window, too many events or entities, "
            "token ids or features that do not fit the served model", {}),
    "429": ("overloaded: the scoring queue is full", RETRY_AFTER),
    "503": ("shutting down, the model backend is down under fail_closed, or the state store is down under the "
            "refuse policy", RETRY_AFTER),
}
API_PATHS = ("/score", "/events", "/score_sequences")
FEEDBACK_PATH = "/feedback"
FEEDBACK_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "404": ("feedback is switched off on this service (SEQGUARD_FEEDBACK_PATH not set)", {}),
    "409": ("feedback_id already stored with a different content", {}),
    "422": ("refused: a field invalid, neither entity_id nor request_id, a label that contradicts the outcome, or a "
            "ts in the future (field and reason in details)", {}),
}
# The record of seqguard.feedback.Feedback, as documentation (the service validates it itself).
FEEDBACK_FIELDS: dict[str, dict[str, Any]] = {
    "outcome": {"type": "string", "enum": ["chargeback", "confirmed_fraud", "false_positive", "reviewed_ok"]},
    "source": {"type": "string", "minLength": 1, "maxLength": 64, "description": "who reported it"},
    "ts": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
           "description": "when the outcome became known (ISO 8601 or epoch seconds); not in the future"},
    "entity_id": {"type": "string", "minLength": 1, "maxLength": 4096,
                  "description": "entity_id or request_id (over 128 characters: clipped to head + hash)"},
    "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                   "description": "a request that scored exactly one entity"},
    "label": {"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}],
              "description": "true = fraud; must agree with outcome"},
    "feedback_id": {"type": "string", "pattern": "^[A-Za-z0-9._:@/-]{1,128}$", "description": "idempotency key"},
}
# Characters Python's str.strip() removes (an identifier made only of these is empty once stripped), spelled out so the
# class means the same in ECMA and Python regular expressions.
_BLANKS = r"\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def ts_pattern(max_age_days: float, now: datetime | None = None) -> str | None:
    """A regular expression for ISO 8601 UTC timestamps in whole calendar years that lie entirely inside the accepted
    window (not older than max_age_days, not in the future), or None when no whole year fits. Days stop at 28 so
    every match is a real date; the server accepts more (other days, offsets, epoch numbers) than this documents."""
    now = now or datetime.now(UTC)
    first = (now - timedelta(days=max_age_days)).year + 1
    last = now.year - 1
    years = [str(y) for y in range(max(first, 2000), last + 1)]
    if not years:
        return None
    return (rf"^({'|'.join(years)})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
            r"(\.[0-9]{1,6})?Z$")


def document_spec(spec: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """BentoML's spec with seqguard's errors and constraints. `limits`: max_events, max_entities, max_age_days."""
    spec = copy.deepcopy(spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy(ERROR_SCHEMAS))
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    request_id = {"X-Request-ID": {"description": "the request id (echoed when the client sends a safe one)",
                                   "schema": {"type": "string"}}}
    for path, ops in spec.get("paths", {}).items():
        for op in ops.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            for status in ("400", "404", "500"):
                responses.pop(status, None)
            if path in API_PATHS or path == FEEDBACK_PATH:
                errors = {**API_ERRORS, **FEEDBACK_ERRORS} if path == FEEDBACK_PATH else API_ERRORS
                for status, (description, headers) in errors.items():
                    responses[status] = {
                        "description": description,
                        "headers": {**request_id, **copy.deepcopy(headers)},
                        "content": {"application/json": {"schema": ERROR_REF}},
                    }
            else:
                responses["503"] = {"description": "not ready, or shutting down", "headers": request_id}
            if "requestBody" in op:
                op["requestBody"]["required"] = True  # an empty body is a 400, not a valid request
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            _constrain_input(body, limits)
            _document_feedback(body)
    for name, schema in schemas.items():
        if name.endswith("__Input"):
            _constrain_input(schema, limits)
        _document_feedback(schema)
    _constrain_models(schemas, limits)
    return spec


def _document_feedback(schema: dict[str, Any]) -> None:
    props = schema.get("properties", {})
    required = ["outcome", "source", "ts"]
    if set(props) == set(FEEDBACK_FIELDS):
        for field, doc in FEEDBACK_FIELDS.items():
            doc = copy.deepcopy(doc)
            description = doc.pop("description", field)
            if field not in required:  # optional: null means absent
                doc = {"anyOf": [*doc.pop("anyOf", [doc]), {"type": "null"}]}
            props[field] = {**doc, "description": description}
        schema["required"] = required


def _constrain_input(schema: dict[str, Any], limits: dict[str, Any]) -> None:
    props = schema.get("properties", {})
    if "events" in props:
        props["events"].update(minItems=1, maxItems=limits.get("max_events", 5000))
    if "sequences" in props:
        props["sequences"].update(minItems=1, maxItems=limits.get("max_entities", 1000))


def _constrain_models(schemas: dict[str, Any], limits: dict[str, Any]) -> None:
    from seqguard.features import FEATURE_NAMES

    features = schemas.get("PrebuiltSequence", {}).get("properties", {}).get("features")
    if features is not None:
        features.pop("additionalProperties", None)
        features.update(
            properties={name: {"type": "number"} for name in FEATURE_NAMES},
            required=list(FEATURE_NAMES),
            additionalProperties=False,
        )
    event = schemas.get("Event", {}).get("properties", {})
    if "ts" in event:
        pattern = ts_pattern(limits.get("max_age_days", 3650.0))
        if pattern:
            ts = {k: v for k, v in event["ts"].items() if k != "format"}
            ts["description"] = (ts.get("description", "") + ". The pattern documents a safe subset (UTC, whole years "
                                 "inside the accepted window); other offsets, days and epoch numbers are accepted too, "
                                 "and timestamps outside the window are answered 422")
            event["ts"] = {**ts, "pattern": pattern}
    status = event.get("payment_status")
    if status:
        status.pop("anyOf", None)
        status.update(anyOf=[{"type": "string", "enum": ["success", "failed"]}, {"type": "null"}])
    for field in ID_FIELDS:
        spec = event.get(field)
        if not spec:
            continue
        variants = spec.pop("anyOf", None) or [{k: spec.pop(k) for k in list(spec) if k in ("type", "minLength",
                                                                                           "maxLength")}]
        for variant in variants:
            if variant.get("type") == "string" and field in REQUIRED_FIELDS:
                # Identifiers are stripped of surrounding blanks: a blank-only user_id is empty, hence refused (an
                # optional one is absent: seqguard.events.IdLimit).
                variant["pattern"] = f"[^{_BLANKS}]"
        # Integer ids (warehouse exports, Taobao) are accepted and kept as their decimal text (clipped like any id).
        spec["anyOf"] = [*variants, {"type": "integer"}]
