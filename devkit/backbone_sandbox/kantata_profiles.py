"""Kantata's account vocabulary as the HR flow meets it: roles and each member's default role,
skills (certifications are skills in the ``Certification`` category) and skill memberships, and
the department and geography organizations a member belongs to.

Restated from developer.kantata.com (not copied):

- ``/roles``: ``GET`` (``matching``, ``only``; alphabetical), ``POST {role: {name}}``. No
  idempotency key: a second POST makes a second role of the same name.
- ``/account_memberships``: one per member; ``GET`` with ``by_user_id`` (``include=default_role``
  adds ``default_role_id`` and the role), ``PUT {account_membership: {default_role_id,
  change_role_option}}``: ``update_with_new_role`` replaces the role, anything else adds one.
- ``/skill_categories``: ``GET``; the account's categories, among them ``Skill``, ``Language``,
  ``Certification`` and ``Other``.
- ``/skills``: ``GET`` (``matching``, ``skill_category_ids``; ``include=skill_category`` adds
  ``skill_category_id``), ``POST {skill: {name, skill_category_id}}``; alphabetical.
- ``/skill_memberships``: ``GET`` with ``user_ids`` (``include=skill`` adds ``skill_id`` and the
  skill), ``POST`` one ``skill_membership`` or up to 200 under ``skill_memberships`` — a user
  given a skill they already hold is refused (422); ``DELETE /skill_memberships/{id}`` (204).
- ``/organizations``: ``GET`` (``type`` ``Department`` or ``Geography``, ``matching``): two trees
  the account's administrators keep.
- ``/organization_memberships``: ``GET`` with ``member_id`` and ``member_type``
  (``include=department,geography``), ``POST {organization_membership: {department_id,
  geography_id, member_id, member_type}}`` (all four required), ``PUT`` to move the member.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from backbone_sandbox.bamboohr import DEPARTMENTS, LOCATIONS
from backbone_sandbox.kantata_time import KantataTimeView, answer, includes, only

SKILL_CATEGORIES = ("Certification", "Language", "Other", "Skill")
SEEDED_ROLES = ("Consultant", "Data Engineer")
"""Roles the account had before the backbone came; the others HR names are made by the hook."""
SEEDED_SKILLS = {"Python": "Skill", "SQL": "Skill", "Scrum Master": "Certification"}


class KantataProfiles:
    """The account's roles, skills and organizations, and what each member holds of them; kept in
    the Kantata store's own dictionaries, so a state pickled with the sandbox keeps them."""

    def __init__(self, store: Any, view: KantataTimeView):
        self.store, self.view = store, view
        book = store.__dict__
        self.roles: dict[str, dict[str, Any]] = book.setdefault("roles", {})
        self.memberships: dict[str, dict[str, Any]] = book.setdefault("account_memberships", {})
        self.categories: dict[str, dict[str, Any]] = book.setdefault("skill_categories", {})
        self.skills: dict[str, dict[str, Any]] = book.setdefault("skills", {})
        self.skill_memberships: dict[str, dict[str, Any]] = book.setdefault("skill_memberships", {})
        self.organizations: dict[str, dict[str, Any]] = book.setdefault("organizations", {})
        self.placements: dict[str, dict[str, Any]] = book.setdefault("organization_memberships", {})
        if not self.categories:
            self._open_account()

    def _open_account(self) -> None:
        with self.store._lock:
            for name in SKILL_CATEGORIES:
                self._add(self.categories, {"name": name})
            for name in SEEDED_ROLES:
                self._add(self.roles, {"name": name})
            for name, category in SEEDED_SKILLS.items():
                self._add(self.skills, {"name": name, "skill_category_id": self.category_id(category), "max_level": "5"})
            for kind, names in (("Department", tuple(DEPARTMENTS)), ("Geography", LOCATIONS)):  # the seed's HR names
                root = self._add(self.organizations, {"name": f"All {kind.lower()}s", "type": kind, "parent_id": None})
                for name in names:
                    self._add(self.organizations, {"name": name, "type": kind, "parent_id": root["id"]})

    def _add(self, table: dict[str, dict[str, Any]], fields: dict[str, Any]) -> dict[str, Any]:
        record = {"id": self.store._new_id(), **fields}
        table[record["id"]] = record
        return record

    def category_id(self, name: str) -> str:
        return next(c["id"] for c in self.categories.values() if c["name"] == name)

    def membership_of(self, user_id: str) -> dict[str, Any]:
        """The member's account membership, made the first time it is asked for."""
        with self.store._lock:
            found = next((m for m in self.memberships.values() if m["user_id"] == user_id), None)
            return found or self._add(self.memberships, {"user_id": user_id, "default_role_id": None, "permission": "collaborator"})

    def count(self, kind: str) -> None:
        self.store.creates[kind] = self.store.creates.get(kind, 0) + 1

    def profile(self, user_id: str) -> dict[str, Any]:
        """What the account says of one member: role, department, geography, skills by category."""
        membership = self.membership_of(user_id)
        placement = next((p for p in self.placements.values() if p["member_id"] == user_id and p["member_type"] == "User"), None)
        held: dict[str, list[str]] = {}
        for record in self.skill_memberships.values():
            if record["user_id"] == user_id:
                skill = self.skills[record["skill_id"]]
                held.setdefault(self.categories[skill["skill_category_id"]]["name"], []).append(skill["name"])
        return {
            "role": (self.roles.get(membership["default_role_id"] or "") or {}).get("name"),
            "department": self.organizations[placement["department_id"]]["name"] if placement else None,
            "geography": self.organizations[placement["geography_id"]]["name"] if placement else None,
            "skills": sorted(held.get("Skill", [])),
            "certifications": sorted(held.get("Certification", [])),
        }


def add_profile_routes(app: Any, store: Any, view: KantataTimeView) -> KantataProfiles:
    profiles = KantataProfiles(store, view)
    _add_roles(app, profiles)
    _add_skills(app, profiles)
    _add_skill_memberships(app, profiles)
    _add_organizations(app, profiles)
    _add_placements(app, profiles)
    return profiles


def _body(fields: Any, key: str) -> dict[str, Any]:
    from backbone_sandbox.kantata import KantataError

    item = (fields or {}).get(key) if isinstance(fields, dict) else None
    if not isinstance(item, dict):
        raise KantataError(400, f"send the object under {key}")
    return item


def _named(records: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """``matching``: names containing the text, any case; alphabetical, as Kantata lists them."""
    if (text := query.get("matching")) is not None:
        records = [r for r in records if text.lower() in r["name"].lower()]
    return sorted(records, key=lambda r: (r["name"].lower(), int(r["id"])))


def _add_roles(app: Any, profiles: KantataProfiles) -> None:
    from backbone_sandbox.kantata import KantataError

    @app.get("/api/v1/roles")
    @app.get("/api/v1/roles.json")
    def list_roles(request: Request) -> dict[str, Any]:
        return answer("roles", _named(only(list(profiles.roles.values()), request.query_params), request.query_params), request, {})

    @app.post("/api/v1/roles")
    @app.post("/api/v1/roles.json")
    async def create_role(request: Request) -> dict[str, Any]:
        name = str(_body(await request.json(), "role").get("name") or "").strip()
        if not name:
            raise KantataError(422, "Name can't be blank", "validation")
        with profiles.store._lock:
            record = profiles._add(profiles.roles, {"name": name})
            profiles.count("roles")
        return answer("roles", [record], request, {})

    def shown(membership: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
        hidden = {"default_role_id": "default_role", "user_id": "user"}
        return {k: v for k, v in membership.items() if k not in hidden or hidden[k] in wanted}

    @app.get("/api/v1/account_memberships")
    @app.get("/api/v1/account_memberships.json")
    def list_memberships(request: Request) -> dict[str, Any]:
        from backbone_sandbox.kantata_people import account_users

        query, wanted = request.query_params, includes(request.query_params)
        users = [query["by_user_id"]] if query.get("by_user_id") else sorted(account_users(profiles.view, profiles.store))
        records = only([profiles.membership_of(u) for u in users if u in account_users(profiles.view, profiles.store)], query)
        roles = {r["default_role_id"]: profiles.roles[r["default_role_id"]] for r in records if r["default_role_id"] in profiles.roles}
        return answer(
            "account_memberships", [shown(r, wanted) for r in records], request, {"roles": roles} if "default_role" in wanted else {}
        )

    @app.put("/api/v1/account_memberships/{membership_id}")
    @app.put("/api/v1/account_memberships/{membership_id}.json")
    async def update_membership(membership_id: str, request: Request) -> dict[str, Any]:
        fields = _body(await request.json(), "account_membership")
        record = profiles.memberships.get(membership_id.removesuffix(".json"))
        if record is None:
            raise KantataError(404, "Not found")
        if "default_role_id" in fields:
            role = str(fields["default_role_id"] or "")
            if role and role not in profiles.roles:
                raise KantataError(422, f"Role {role} not found", "validation")
            if fields.get("change_role_option") != "update_with_new_role" and record["default_role_id"]:
                raise KantataError(
                    422, "this sandbox keeps one role per member: send change_role_option=update_with_new_role", "validation"
                )
            record["default_role_id"] = role or None
            profiles.store.updates["account_memberships"] = profiles.store.updates.get("account_memberships", 0) + 1
        return answer("account_memberships", [shown(record, includes(request.query_params))], request, {})


def _add_skills(app: Any, profiles: KantataProfiles) -> None:
    from backbone_sandbox.kantata import KantataError

    @app.get("/api/v1/skill_categories")
    @app.get("/api/v1/skill_categories.json")
    def list_categories(request: Request) -> dict[str, Any]:
        return answer("skill_categories", _named(list(profiles.categories.values()), request.query_params), request, {})

    def shown_skill(skill: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
        return {k: v for k, v in skill.items() if k != "skill_category_id" or "skill_category" in wanted}

    @app.get("/api/v1/skills")
    @app.get("/api/v1/skills.json")
    def list_skills(request: Request) -> dict[str, Any]:
        query, wanted = request.query_params, includes(request.query_params)
        records = only(list(profiles.skills.values()), query)
        if categories := query.get("skill_category_ids"):
            chosen = {part.strip() for part in categories.split(",")}
            records = [r for r in records if r["skill_category_id"] in chosen]
        records = _named(records, query)
        side = {"skill_categories": {r["skill_category_id"]: profiles.categories[r["skill_category_id"]] for r in records}}
        return answer("skills", [shown_skill(r, wanted) for r in records], request, side if "skill_category" in wanted else {})

    @app.post("/api/v1/skills")
    @app.post("/api/v1/skills.json")
    async def create_skill(request: Request) -> dict[str, Any]:
        fields = _body(await request.json(), "skill")
        name, category = str(fields.get("name") or "").strip(), str(fields.get("skill_category_id") or "")
        if not name:
            raise KantataError(422, "Name can't be blank", "validation")
        if category not in profiles.categories:
            raise KantataError(422, "Skill category must exist", "validation")
        with profiles.store._lock:
            if any(s["name"].lower() == name.lower() for s in profiles.skills.values()):
                raise KantataError(422, "Name has already been taken", "validation")
            record = profiles._add(
                profiles.skills, {"name": name, "skill_category_id": category, "max_level": str(fields.get("max_level") or "5")}
            )
            profiles.count("skills")
        return answer("skills", [shown_skill(record, includes(request.query_params))], request, {})


def _add_skill_memberships(app: Any, profiles: KantataProfiles) -> None:
    from backbone_sandbox.kantata import KantataError

    def shown_membership(record: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
        return {
            **{k: v for k, v in record.items() if k not in ("skill_id", "user_id")},
            **({"skill_id": record["skill_id"]} if "skill" in wanted else {}),
            **({"user_id": record["user_id"]} if "user" in wanted else {}),
        }

    @app.get("/api/v1/skill_memberships")
    @app.get("/api/v1/skill_memberships.json")
    def list_skill_memberships(request: Request) -> dict[str, Any]:
        query, wanted = request.query_params, includes(request.query_params)
        records = only(list(profiles.skill_memberships.values()), query)
        if users := query.get("user_ids"):
            chosen = {part.strip() for part in users.split(",")}
            records = [r for r in records if r["user_id"] in chosen]
        records.sort(key=lambda r: -int(r["id"]))  # created_at:desc
        side = {"skills": {r["skill_id"]: profiles.skills[r["skill_id"]] for r in records}} if "skill" in wanted else {}
        return answer("skill_memberships", [shown_membership(r, wanted) for r in records], request, side)

    @app.post("/api/v1/skill_memberships")
    @app.post("/api/v1/skill_memberships.json")
    async def add_skill_memberships(request: Request) -> dict[str, Any]:
        from backbone_sandbox.kantata_people import account_users

        body = await request.json()
        many = body.get("skill_memberships") if isinstance(body, dict) else None
        items = many if isinstance(many, list) else [_body(body, "skill_membership")]
        if not items or len(items) > 200 or not all(isinstance(i, dict) for i in items):
            raise KantataError(400, "send one skill_membership, or up to 200 under skill_memberships")
        users = account_users(profiles.view, profiles.store)
        with profiles.store._lock:
            wanted = [(str(i.get("user_id") or ""), str(i.get("skill_id") or "")) for i in items]
            for user, skill in wanted:
                if user not in users or skill not in profiles.skills:
                    raise KantataError(422, f"User {user} and skill {skill} must exist", "validation")
                held = any(r["user_id"] == user and r["skill_id"] == skill for r in profiles.skill_memberships.values())
                if held or wanted.count((user, skill)) > 1:
                    raise KantataError(422, "Skill has already been added to this user", "validation")
            made = [
                profiles._add(
                    profiles.skill_memberships, {"user_id": u, "skill_id": s, "level": 0, "cached_skill_name": profiles.skills[s]["name"]}
                )
                for u, s in wanted
            ]
            profiles.count("skill_memberships")
        return answer("skill_memberships", [shown_membership(r, includes(request.query_params)) for r in made], request, {})

    @app.delete("/api/v1/skill_memberships/{membership_id}")
    @app.delete("/api/v1/skill_memberships/{membership_id}.json")
    def remove_skill_membership(membership_id: str) -> Response:
        if profiles.skill_memberships.pop(membership_id.removesuffix(".json"), None) is None:
            raise KantataError(404, "Not found")
        return Response(status_code=204)


def _add_organizations(app: Any, profiles: KantataProfiles) -> None:

    @app.get("/api/v1/organizations")
    @app.get("/api/v1/organizations.json")
    def list_organizations(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = only(list(profiles.organizations.values()), query)
        if kind := query.get("type"):
            records = [r for r in records if r["type"].lower() == kind.lower()]
        return answer("organizations", _named(records, query), request, {})


def _add_placements(app: Any, profiles: KantataProfiles) -> None:
    from backbone_sandbox.kantata import KantataError

    def shown(record: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in ("department_id", "geography_id") or k.removesuffix("_id") in wanted}

    def side(records: list[dict[str, Any]], wanted: set[str]) -> dict[str, Any]:
        chosen = {r[f"{name}_id"] for r in records for name in ("department", "geography") if name in wanted}
        return {"organizations": {o: profiles.organizations[o] for o in chosen}} if chosen else {}

    @app.get("/api/v1/organization_memberships")
    @app.get("/api/v1/organization_memberships.json")
    def list_placements(request: Request) -> dict[str, Any]:
        query, wanted = request.query_params, includes(request.query_params)
        records = only(list(profiles.placements.values()), query)
        if member := query.get("member_id"):
            records = [r for r in records if r["member_id"] == member]
        if kind := query.get("member_type"):
            records = [r for r in records if r["member_type"].lower() == kind.lower()]
        records.sort(key=lambda r: int(r["id"]))
        return answer("organization_memberships", [shown(r, wanted) for r in records], request, side(records, wanted))

    def checked(fields: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
        out = {**(record or {})}
        for name, kind in (("department_id", "Department"), ("geography_id", "Geography")):
            value = str(fields.get(name) or (record or {}).get(name) or "")
            if (profiles.organizations.get(value) or {}).get("type") != kind:
                raise KantataError(422, f"{name} must be a {kind} organization", "validation")
            out[name] = value
        return out

    @app.post("/api/v1/organization_memberships")
    @app.post("/api/v1/organization_memberships.json")
    async def place(request: Request) -> dict[str, Any]:
        fields = _body(await request.json(), "organization_membership")
        member, kind = str(fields.get("member_id") or ""), str(fields.get("member_type") or "")
        if not member or kind.lower() not in ("user", "workspace"):
            raise KantataError(422, "member_id and member_type (User or Workspace) are required", "validation")
        record = checked(fields, None)
        with profiles.store._lock:
            if any(p["member_id"] == member and p["member_type"].lower() == kind.lower() for p in profiles.placements.values()):
                raise KantataError(422, "Member already belongs to an organization", "validation")
            made = profiles._add(profiles.placements, {**record, "member_id": member, "member_type": kind.capitalize()})
            profiles.count("organization_memberships")
        return answer("organization_memberships", [shown(made, includes(request.query_params))], request, {})

    @app.put("/api/v1/organization_memberships/{placement_id}")
    @app.put("/api/v1/organization_memberships/{placement_id}.json")
    async def move(placement_id: str, request: Request) -> dict[str, Any]:
        fields = _body(await request.json(), "organization_membership")
        record = profiles.placements.get(placement_id.removesuffix(".json"))
        if record is None:
            raise KantataError(404, "Not found")
        record.update(checked(fields, record))
        profiles.store.updates["organization_memberships"] = profiles.store.updates.get("organization_memberships", 0) + 1
        return answer("organization_memberships", [shown(record, includes(request.query_params))], request, {})
