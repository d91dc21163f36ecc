"""``python -m backbone_sandbox`` — serve the vendor sandbox on loopback and print its base URLs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path

import uvicorn

from backbone_sandbox.app import SandboxConfig, SandboxState, build_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backbone_sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container other services reach)")
    parser.add_argument("--deals", type=int, default=120, help="number of CRM deals to seed (tens to a million)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--anchor", help="ISO time the seeded deals were modified up to (default: last half hour boundary)")
    parser.add_argument("--people", type=int, default=12, help="PSA people with time entries")
    parser.add_argument(
        "--weeks",
        type=int,
        default=None,
        help="weeks of approved time up to the last Friday 17:00 (default: back to the last closed month)",
    )
    parser.add_argument("--qbo-rate", type=int, default=500, help="QuickBooks requests per minute before 429")
    parser.add_argument("--qbo-batch-rate", type=int, default=40, help="QuickBooks batch calls per minute before 429 (Intuit's is 40)")
    parser.add_argument("--xero-rate", type=int, default=60, help="Xero calls per minute per tenant before 429 (Xero's own limit is 60)")
    parser.add_argument("--token", default="sandbox-token", help="bearer token every API expects")
    parser.add_argument("--state-file", type=Path, help="keep state across restarts in this file (saved on shutdown)")
    parser.add_argument(
        "--crm",
        choices=["hubspot", "salesforce"],
        default=None,
        help="CRM the PSA's projects came from (default: $BACKBONE_SANDBOX_CRM or hubspot)",
    )
    parser.add_argument("--search-rate", type=int, default=4, help="HubSpot search requests per second before 429")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(levelname)s %(message)s")
    config = SandboxConfig(
        deals=args.deals,
        seed=args.seed,
        anchor=datetime.fromisoformat(args.anchor.replace("Z", "+00:00")) if args.anchor else None,
        token=args.token,
        hubspot_search_per_second=args.search_rate,
        people=args.people,
        weeks=args.weeks,
        qbo_requests_per_minute=args.qbo_rate,
        qbo_batch_requests_per_minute=args.qbo_batch_rate,
        xero_requests_per_minute=args.xero_rate,
        state_file=args.state_file,
        **({"crm": args.crm} if args.crm else {}),
    )
    state = SandboxState.load_or_fresh(config)
    app = build_app(state)
    base = f"http://{args.host}:{args.port}"
    print(f"HubSpot CRM : {base}/hubspot", flush=True)
    print(f"Salesforce  : {base}/salesforce   (OAuth: {base}/salesforce/services/oauth2/token)", flush=True)
    print(f"PSA API     : {base}/psa   (OpenAPI: {base}/psa/openapi.json)", flush=True)
    print(f"QuickBooks  : {base}/quickbooks   (OAuth: {base}/quickbooks/oauth2/v1/tokens/bearer)", flush=True)
    print(
        f"Xero        : {base}/xero   (Accounting: /xero/api.xro/2.0, Projects: /xero/projects.xro/2.0, OAuth: /xero/connect/token)",
        flush=True,
    )
    print(f"BambooHR    : {base}/bamboohr   (Basic auth: API key as user name)", flush=True)
    print(f"Controls    : {base}/_sandbox/info", flush=True)
    # uvicorn stops on SIGTERM and then re-raises it under the handler it found: make that handler
    # an exit, not the default kill, so the state (rotated tokens included) is saved below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        state.save()


if __name__ == "__main__":
    main()
