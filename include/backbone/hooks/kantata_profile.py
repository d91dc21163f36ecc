"""What HR says of a person, put on their Kantata user: the role, the skills and certifications,
the department and the location.

Kantata facts this is built on (developer.kantata.com):

- A member's role is their account membership's ``default_role_id``; ``PUT
  /account_memberships/{id}`` with ``change_role_option=update_with_new_role`` replaces it (any
  other option adds a role beside it). Roles are the account's own list (``/roles``).
- Skills are the account's list (``/skills``), each in a skill category; certifications are skills
  in the ``Certification`` category. A user holds a skill through a skill membership; a second
  membership for a skill the user holds is refused (422). A skill membership has no expiry date:
  the warehouse keeps a certification's expiry, Kantata only whether the person holds it.
- Departments and geographies are two organization trees the account's administrators keep
  (``/organizations``, ``type``); a member sits in one department and one geography through one
  organization membership. The backbone finds them by name and never grows those trees: a
  department or location Kantata does not have is logged and the person is left where they are.
- No POST takes an idempotency key, so every create here is sent once (``KantataHook._once``):
  after a lost answer, what the create would have made is looked up before anything is sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backbone.http import FatalApiError

if TYPE_CHECKING:
    from backbone.hooks.kantata import KantataHook

log = logging.getLogger(__name__)

API = "/api/v1"
SKILL = "Skill"
CERTIFICATION = "Certification"


def _key(name: Any) -> str:
    return " ".join(str(name or "").split()).casefold()


@dataclass
class ProfileChanges:
    """What one person's profile changed in Kantata."""

    role: bool = False
    skills_added: int = 0
    skills_removed: int = 0
    placed: bool = False
    not_placed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.role or self.placed or bool(self.skills_added or self.skills_removed)


class KantataVocabulary:
    """The account's roles, skill categories, skills and organizations, read once for a hook's
    run of people (they change by hand, rarely) and read again after a create whose answer was lost."""

    def __init__(self, hook: KantataHook):
        self.hook = hook
        self._lists: dict[str, dict[str, str]] = {}
        """Collection (roles, skills) → normalised name → id."""
        self._categories: dict[str, str] | None = None
        self._organizations: dict[tuple[str, str], str] | None = None

    def _names(self, collection: str, params: dict[str, Any] | None = None) -> dict[str, str]:
        return {_key(r["name"]): str(r["id"]) for page in self.hook.pages(collection, params) for r in page}

    def role(self, name: str) -> str:
        return self._named_once("roles", "role", name, {"name": name})

    def skill(self, name: str, category: str) -> str:
        """The skill of that name (in whichever category the account keeps it), made in ``category`` when missing."""
        if self._known("skills", name) is not None:
            return self._named_once("skills", "skill", name, {})
        if self._categories is None:
            self._categories = self._names("skill_categories")
        category_id = self._categories.get(_key(category))
        if category_id is None:
            raise FatalApiError(f"Kantata has no skill category {category!r}: add it under Settings → Skills, then run again")
        return self._named_once("skills", "skill", name, {"name": name, "skill_category_id": int(category_id)})

    def _known(self, collection: str, name: str) -> str | None:
        if collection not in self._lists:
            self._lists[collection] = self._names(collection)
        return self._lists[collection].get(_key(name))

    def _named_once(self, collection: str, singular: str, name: str, fields: dict[str, Any]) -> str:
        """The id of the ``collection`` object called ``name``: found, or made with one POST of
        ``fields`` (after a lost answer the list is read again before anything is resent)."""
        if (found := self._known(collection, name)) is not None:
            return found

        def send() -> Any:
            return self.hook.request(
                "POST",
                f"{API}/{collection}.json",
                json={singular: fields},
                retry=self.hook._one_attempt,
                description=f"Kantata add {singular} {name!r}",
            )

        def find() -> Any:
            self._lists[collection] = self._names(collection)
            return self._lists[collection].get(_key(name))

        made = self.hook._once(send, find, what=f"the {singular} {name!r}")
        made_id = made if isinstance(made, str) else str(self._first(made, collection)["id"])
        self._lists[collection][_key(name)] = made_id
        return made_id

    def organization(self, kind: str, name: str) -> str | None:
        if self._organizations is None:
            self._organizations = {
                (str(r["type"]).casefold(), _key(r["name"])): str(r["id"]) for page in self.hook.pages("organizations") for r in page
            }
        return self._organizations.get((kind.casefold(), _key(name)))

    @staticmethod
    def _first(body: Any, collection: str) -> dict[str, Any]:
        from backbone.hooks.kantata import records_in_order

        return records_in_order(body, collection)[0]


def apply_profile(hook: KantataHook, vocabulary: KantataVocabulary, user_id: str, person: dict[str, Any]) -> ProfileChanges:
    """Make the user's role, skills, certifications, department and location what HR says."""
    changes = ProfileChanges()
    if role := str(person.get("role") or "").strip():
        changes.role = _set_role(hook, user_id, vocabulary.role(role))
    wanted = {vocabulary.skill(name, SKILL): name for name in person.get("skills") or []}
    for certification in person.get("certifications") or []:
        wanted[vocabulary.skill(certification["name"], CERTIFICATION)] = certification["name"]
    changes.skills_added, changes.skills_removed = _set_skills(hook, user_id, wanted)
    changes.placed, changes.not_placed = _place(hook, vocabulary, user_id, person)
    return changes


def _set_role(hook: KantataHook, user_id: str, role_id: str) -> bool:
    memberships = [m for page in hook.pages("account_memberships", {"by_user_id": user_id, "include": "default_role"}) for m in page]
    if not memberships:
        raise FatalApiError(f"Kantata user {user_id} has no account membership: the user is not a member of this account")
    membership = memberships[0]
    if str(membership.get("default_role_id") or "") == role_id:
        return False
    hook.request(  # a PUT that sets a value: safe to repeat
        "PUT",
        f"{API}/account_memberships/{membership['id']}.json",
        json={"account_membership": {"default_role_id": int(role_id), "change_role_option": "update_with_new_role"}},
        description=f"Kantata set the role of user {user_id}",
    )
    return True


def _held_skills(hook: KantataHook, user_id: str) -> dict[str, str]:
    """Skill id → skill membership id, for what the user holds now."""
    return {
        str(m["skill_id"]): str(m["id"])
        for page in hook.pages("skill_memberships", {"user_ids": user_id, "include": "skill"})
        for m in page
    }


def _set_skills(hook: KantataHook, user_id: str, wanted: dict[str, str]) -> tuple[int, int]:
    held = _held_skills(hook, user_id)
    missing = sorted(set(wanted) - set(held), key=int)
    added = len(missing)
    if missing:

        def send() -> Any:
            memberships = [{"user_id": int(user_id), "skill_id": int(skill)} for skill in missing]
            return hook.request(
                "POST",
                f"{API}/skill_memberships.json",
                json={"skill_memberships": memberships},
                retry=hook._one_attempt,
                description=f"Kantata give user {user_id} {len(memberships)} skill(s)",
            )

        def find() -> Any:  # after a lost answer: only what is still missing is sent again
            nonlocal missing
            missing = sorted(set(wanted) - set(_held_skills(hook, user_id)), key=int)
            return True if not missing else None

        hook._once(send, find, what=f"the skills of user {user_id}")
    removed = 0
    for skill_id in sorted(set(held) - set(wanted), key=int):
        try:
            hook.request(
                "DELETE", f"{API}/skill_memberships/{held[skill_id]}.json", description=f"Kantata take skill {skill_id} from user {user_id}"
            )
        except FatalApiError as exc:
            if exc.status != 404:  # 404: gone already (a retried delete, or removed by hand meanwhile)
                raise
        removed += 1
    return added, removed


def _place(hook: KantataHook, vocabulary: KantataVocabulary, user_id: str, person: dict[str, Any]) -> tuple[bool, list[str]]:
    department, location = str(person.get("department") or "").strip(), str(person.get("location") or "").strip()
    if not department or not location:
        return False, []
    ids = {
        "department_id": vocabulary.organization("Department", department),
        "geography_id": vocabulary.organization("Geography", location),
    }
    unknown = [
        f"{kind} {name!r}"
        for kind, name, key in (("department", department, "department_id"), ("location", location, "geography_id"))
        if ids[key] is None
    ]
    if unknown:
        log.warning(
            "Kantata has no organization for %s of user %s: left where they are "
            "(Kantata's administrators keep the department and geography trees)",
            " and ".join(unknown),
            user_id,
        )
        return False, unknown

    def current() -> dict[str, Any] | None:
        params = {"member_id": user_id, "member_type": "User", "include": "department,geography"}
        return next((m for page in hook.pages("organization_memberships", params) for m in page), None)

    placement = current()
    if placement is not None and all(str(placement.get(k) or "") == v for k, v in ids.items()):
        return False, []
    body = {"organization_membership": {k: int(v) for k, v in ids.items()}}
    if placement is not None:
        hook.request("PUT", f"{API}/organization_memberships/{placement['id']}.json", json=body, description=f"Kantata move user {user_id}")
        return True, []

    def send() -> Any:
        fields = {**body["organization_membership"], "member_id": int(user_id), "member_type": "User"}
        return hook.request(
            "POST",
            f"{API}/organization_memberships.json",
            json={"organization_membership": fields},
            retry=hook._one_attempt,
            description=f"Kantata place user {user_id}",
        )

    def find() -> Any:
        found = current()
        if found is not None and any(str(found.get(k) or "") != v for k, v in ids.items()):
            hook.request("PUT", f"{API}/organization_memberships/{found['id']}.json", json=body)
        return found

    hook._once(send, find, what=f"the department of user {user_id}")
    return True, []
