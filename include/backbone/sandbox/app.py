"""The sandbox server: vendor APIs mounted side by side, plus ``/_sandbox`` controls for tests."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backbone.sandbox.crm import CrmStore, build_hubspot_app
from backbone.sandbox.faults import FaultBoard, FaultRule, apply_transport_fault
from backbone.sandbox.limits import SlidingWindowLimit
from backbone.sandbox.psa import PsaStore, build_psa_app
from backbone.sandbox.seed import default_anchor, iso_millis, seed_crm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxConfig:
    deals: int = 120
    seed: int = 20261127
    anchor: datetime | None = None
    token: str = "sandbox-token"
    hubspot_search_per_second: int = 4
    hubspot_calls_per_ten_seconds: int = 150
    state_file: Path | None = None


@dataclass
class SandboxState:
    config: SandboxConfig
    anchor: datetime
    crm: CrmStore
    psa: PsaStore
    faults: FaultBoard = field(default_factory=FaultBoard)
    limits: dict[str, SlidingWindowLimit] = field(default_factory=dict)
    crm_writes: int = 0

    @classmethod
    def fresh(cls, config: SandboxConfig) -> SandboxState:
        anchor = config.anchor or default_anchor()
        return cls(config=config, anchor=anchor, crm=CrmStore(seed_crm(deals=config.deals, anchor=anchor, seed=config.seed)), psa=PsaStore())

    @classmethod
    def load_or_fresh(cls, config: SandboxConfig) -> SandboxState:
        path = config.state_file
        if path is not None and path.exists():
            with path.open("rb") as fh:
                saved = pickle.load(fh)
            log.info("sandbox: resumed state from %s (anchor %s)", path, saved["anchor"])
            return cls(config=config, anchor=saved["anchor"], crm=saved["crm"], psa=saved["psa"], crm_writes=saved.get("crm_writes", 0))
        return cls.fresh(config)

    def save(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump({"anchor": self.anchor, "crm": self.crm, "psa": self.psa, "crm_writes": self.crm_writes}, fh)
        tmp.replace(path)

    def info(self) -> dict[str, Any]:
        return {
            "anchor": iso_millis(self.anchor),
            "deals": len(self.crm.objects["deals"]),
            "companies": len(self.crm.objects["companies"]),
            "contacts": len(self.crm.objects["contacts"]),
            "bad_deals": self.crm.bad_deals,
            "bad_contacts": self.crm.bad_contacts,
            "psa_projects": len(self.psa.projects),
            "psa_creates": self.psa.creates,
            "psa_writes": self.psa.writes,
            "crm_writes": self.crm_writes,
            "faults_fired": dict(self.faults.fired),
            "rate_limited": {name: limit.rejected for name, limit in self.limits.items()},
        }


def build_app(state: SandboxState) -> FastAPI:
    app = FastAPI(title="Vendor sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = state

    @app.middleware("http")
    async def inject_faults(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        if not request.url.path.startswith("/_sandbox"):
            fault = await apply_transport_fault(state.faults, request)
            if fault is not None:
                return fault
        return await call_next(request)

    @app.get("/_sandbox/info")
    def info() -> dict[str, Any]:
        return state.info()

    @app.post("/_sandbox/faults")
    def arm_faults(rules: list[FaultRule]) -> dict[str, Any]:
        state.faults.arm(rules)
        return {"armed": len(rules)}

    @app.delete("/_sandbox/faults")
    def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return {"cleared": True}

    @app.patch("/_sandbox/crm/{object_type}/{object_id}")
    def edit_crm_object(object_type: str, object_id: str, properties: dict[str, Any], request: Request) -> JSONResponse:
        """Edit a record as a salesperson would in the CRM UI (moves hs_lastmodifieddate)."""

        at = request.query_params.get("at")
        when = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
        return JSONResponse(state.crm.update(object_type, object_id, properties, when))

    app.mount("/hubspot", build_hubspot_app(state))
    app.mount("/psa", build_psa_app(state))
    return app
