"""POST /api/integrations/alertmanager: Alertmanager's webhook receiver, firing alerts in as incidents
(engine/alertmanager.py says how), through the same ingest pipeline as POST /api/events."""

from __future__ import annotations

import difflib
import json
import logging

from fastapi import APIRouter, Request

from console import api_models as m
from engine.alertmanager import AlertmanagerMapping, incidents_from_webhook
from engine.errors import InvalidInput

log = logging.getLogger("govcon.api")


MAPPING_KEYS = ("severity_label", "default_severity", "service_label", "command_label")


def mapping_from_config(config) -> AlertmanagerMapping:
    """``[integrations.alertmanager]``: unknown keys and non-string values refused, naming the file."""
    section = config.section("integrations").get("alertmanager", {})
    where = f"[integrations.alertmanager] in {config.path}"
    if not isinstance(section, dict):
        raise InvalidInput(f"{where}: must be a table")
    for key, value in section.items():
        if key not in MAPPING_KEYS:
            close = difflib.get_close_matches(key, MAPPING_KEYS, n=1)
            raise InvalidInput(f"{where}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                               + f"; the keys are {', '.join(MAPPING_KEYS)}")
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{where}: {key} must be a non-empty string, not {value!r}")
    try:
        return AlertmanagerMapping(**section)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc} (in {config.path})") from None


def build_router(gov, auth, ingest, json_response, mapping: AlertmanagerMapping) -> APIRouter:
    router = APIRouter()

    @router.post("/api/integrations/alertmanager", tags=["integrations"], response_model=m.AlertmanagerReport,
                 responses={**m.CHANGE_ERRORS, 409: {"model": m.AlertmanagerReport, "description": "an incident "
                                                     "conflicts with a stored one (the others stored)"},
                            422: {"model": m.ErrorBody | m.AlertmanagerReport, "description": "a malformed alert "
                                  "(nothing stored), or a rejected event (the others stored)"}},
                 openapi_extra={"security": [{"HTTPBearer": []}]},
                 summary="Alertmanager webhook (version 4): each firing alert becomes an incident event, stored "
                         "once however often it is re-sent; resolved alerts are counted and ignored")
    async def alertmanager(request: Request):
        await auth.ingester(request)
        try:
            payload = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"body: not valid JSON ({str(exc)[:200]})") from None
        converted = incidents_from_webhook(payload, mapping, gov.clock.now(), gov.ingestor.timing)
        if converted.defaulted:
            log.info("alertmanager: %d alert(s) without a %r label stored as %s: %s", len(converted.defaulted),
                     mapping.severity_label, mapping.default_severity, ", ".join(converted.defaulted[:10]))
        if converted.unmapped:
            log.info("alertmanager: severity words not understood, stored as %s: %s", mapping.default_severity,
                     converted.unmapped)
        if not converted.events:
            return json_response({"accepted": 0, "duplicate": 0, "rejected": 0, "errors": [],
                                  **converted.summary()})
        outcome = await ingest.submit(json.dumps(converted.events).encode(), "application/json")
        return json_response({**outcome.to_json(), **converted.summary()}, outcome.status_code)

    return router
