"""BentoML's own floor: a trivial BentoML 1.4 service with seqguard's request and response schemas.

`/events` takes the same body as seqguard's (`{"events": [Event, ...]}`, validated by the same pydantic model) and
answers the same `ScoreResponse`, one constant result per entity, computing nothing. What it costs per request is
what BentoML, pydantic and the HTTP stack cost; the floor level compares seqguard with it in the same run.

    taskset -c 0 bentoml serve bench.trivial_service:Trivial --port 3001
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field

from seqguard.events import Event
from seqguard.service.schemas import ScoreResponse

EventList = Annotated[list[Event], Field(description="raw events, any entities, any order")]


@bentoml.service(name="trivial", workers=1, traffic={"timeout": 30, "max_concurrency": 512})
class Trivial:
    @bentoml.api(route="/events")
    async def ingest(self, events: EventList) -> ScoreResponse:
        entities = {e.user_id for e in events}
        return ScoreResponse(request_id="", results=[
            {"entity_id": str(u), "score": 0.0, "decision": "allow", "component_scores": {}, "rules_fired": [],
             "reasons": [], "model_version": "trivial", "degraded": False, "n_events": 1} for u in entities])
