"""Our PSA API as a documented contract (issue 21, part 1): the OpenAPI in ``docs/psa-api/`` is what
the sandbox serves, and every call the PSA hook makes is in it. No services needed."""

from __future__ import annotations

import ast
import json
import re

from tests.conftest import ROOT

CONTRACT = ROOT / "docs" / "psa-api" / "openapi.json"


def test_the_committed_contract_is_what_the_sandbox_serves():
    """Change the PSA API, then run ``python -m backbone_devtools psa-contract`` and commit the file."""
    from backbone_sandbox.psa import contract

    assert json.loads(CONTRACT.read_text(encoding="utf-8")) == json.loads(json.dumps(contract())), (
        "docs/psa-api/openapi.json is stale: run `.venv/bin/python -m backbone_devtools psa-contract`"
    )


def calls_of_the_hook() -> set[tuple[str, str]]:
    """(method, path template) of every request in ``backbone/hooks/psa.py``: per method of the hook,
    the paths it names (literals and f-strings) with the HTTP method it names (``_cursor_pages`` reads:
    GET)."""
    source = (ROOT / "include" / "backbone" / "hooks" / "psa.py").read_text(encoding="utf-8")
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        fragments = {id(part) for node in ast.walk(function) if isinstance(node, ast.JoinedStr) for part in node.values}
        paths = {
            re.sub(r"\{[^}]*\}", "{}", ast.unparse(node).lstrip("f").strip("'\""))
            for node in ast.walk(function)
            if isinstance(node, ast.Constant | ast.JoinedStr)
            and id(node) not in fragments
            and ast.unparse(node).lstrip("f").strip("'\"").startswith("/api/v1")
        }
        methods = {
            node.value for node in ast.walk(function) if isinstance(node, ast.Constant) and node.value in ("GET", "PUT", "POST", "DELETE")
        }
        if "_cursor_pages" in ast.unparse(function) and function.name != "_cursor_pages":
            methods.add("GET")
        found |= {(method, path) for path in paths for method in (methods or {"?"})}
    return found


def test_every_call_of_the_psa_hook_is_in_the_contract():
    paths = json.loads(CONTRACT.read_text(encoding="utf-8"))["paths"]
    offered = {(method.upper(), re.sub(r"\{[^}]*\}", "{}", path)) for path, operations in paths.items() for method in operations}
    calls = calls_of_the_hook()
    assert len(calls) >= 8 and all(method != "?" for method, _ in calls), calls
    assert calls <= offered, sorted(calls - offered)
