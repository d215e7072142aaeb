"""The IdP's directory on one database transaction: the storage behind scim2-server, plus the
provisioning push into the org after every change.

scim2-server speaks the protocol (validation, PATCH, filter grammar, ETags, responses); this
module stores what it validated. It works on a SQLAlchemy session rather than owning one, so the
SCIM app, the seeds and the control routes share one code path, and a change and its push into
the org commit (or roll back) together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Union, cast
from unicodedata import normalize

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    External,
    Filter,
    InvalidValueException,
    Meta,
    NotFoundException,
    PreconditionFailedException,
    Reference,
    Resource,
    ScimFilter,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison
from scim2_server.storage import SearchPage
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
    parametrize,
)
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sandbox.idp.models import IdpGroupMember, IdpProvisioningError, IdpResource
from sandbox.org.provisioning import PushResult, idp_managed_members, push_identity
from sandbox.org.service import OrgError, norm_email

USER, GROUP = "User", "Group"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
MAX_RESULTS = 200  # Okta's page limit; scim2-server bounds every search's count by it
_CHUNK = 500  # ids per IN (...) clause, well under SQLite's bound-parameter limit

BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken,
    name="OAuth Bearer Token",
    description="Authorization: Bearer <token> (the sandbox's IdP token)",
    spec_uri=Reference[External]("https://www.rfc-editor.org/rfc/rfc6750"),
    primary=True,
)


def _config() -> ServiceProviderConfig:
    """scim2-server's defaults, minus bulk (no IdP offers it to apps), plus our auth scheme."""
    config = load_default_service_provider_config()
    config.bulk = Bulk(supported=False, max_operations=0, max_payload_size=0)
    config.filter = Filter(supported=True, max_results=MAX_RESULTS)
    config.authentication_schemes = [BEARER]  # also makes 401s carry WWW-Authenticate
    return config


# RFC 7643's User (with the enterprise extension) and Group, as scim2-server ships them.
PROVIDER = ScimProvider.from_discovery(
    load_default_schemas().values(), load_default_resource_types().values(), config=_config()
)


def resource_model(type_: str) -> type[Resource[Any]]:
    """The composed model (extensions included) of a resource type the sandbox serves.

    Raises:
        KeyError: ``type_`` is not ``User`` or ``Group``.
    """
    model = PROVIDER.model_for(type_)
    if model is None or not issubclass(model, Resource):
        raise KeyError(type_)
    return model


def comparison_key(value: str) -> str:
    """How SCIM compares a caseExact=false string (scim2-models' default policy)."""
    return normalize("NFC", normalize("NFC", value).lower())


def identity_email(data: dict[str, Any]) -> str | None:
    """The address the org knows a user by: the userName when it is one, else the primary
    (or first) email; ``None`` when the user has no address at all."""
    user_name = str(data.get("userName") or "")
    if "@" in user_name:
        return norm_email(user_name)
    emails = [e for e in data.get("emails") or [] if "@" in str(e.get("value") or "")]
    emails.sort(key=lambda e: not e.get("primary"))
    return norm_email(str(emails[0]["value"])) if emails else None


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _version(row: IdpResource) -> str:
    return f'W/"{row.version}"'


class Directory:
    """The IdP's users and groups inside one open transaction (committed by the caller).

    Args:
        session: the open transaction.
        now: the sandbox clock's time (``meta`` dates, the org's audit log).
        trigger: what caused the changes, kept with any provisioning error.
    """

    def __init__(self, session: Session, now: datetime, trigger: str = "") -> None:
        self.s = session
        self.now = now
        self.trigger = trigger
        self.results: list[PushResult] = []

    # ------------------------------------------------------------------ reads
    def row(self, type_: str, resource_id: str | None) -> IdpResource:
        row = self.s.get(IdpResource, resource_id) if resource_id else None
        if row is None or row.type != type_:
            raise NotFoundException(detail=f"{type_} {resource_id!r} not found")
        return row

    def find(self, type_: str, name: str) -> IdpResource | None:
        """A User by userName, or a Group by displayName (compared as SCIM compares them)."""
        return self.s.scalar(
            select(IdpResource).where(
                IdpResource.type == type_, IdpResource.name_key == comparison_key(name)
            )
        )

    def get(self, type_: str, resource_id: str) -> Resource[Any]:
        return self.resources([self.row(type_, resource_id)])[0]

    def resources(self, rows: Sequence[IdpResource]) -> list[Resource[Any]]:
        """Rows → scim2 models, with the server-computed parts (meta, User.groups, $refs)."""
        groups_of: dict[str, list[dict[str, Any]]] = {}
        users = [r.id for r in rows if r.type == USER]
        for ids in _chunks(users):
            q = (
                select(IdpGroupMember.member_id, IdpResource.id, IdpResource.display_name)
                .join(IdpResource, IdpResource.id == IdpGroupMember.group_id)
                .where(IdpGroupMember.member_id.in_(ids))
                .order_by(IdpResource.name_key)
            )
            for member_id, gid, name in self.s.execute(q):
                groups_of.setdefault(member_id, []).append(
                    {"value": gid, "$ref": f"Groups/{gid}", "display": name, "type": "direct"}
                )
        member_types = self._types_of(
            [str(m["value"]) for r in rows if r.type == GROUP for m in r.data.get("members", [])]
        )
        out = []
        with PROVIDER:
            for r in rows:
                data = {**r.data, "id": r.id}
                if r.type == USER and r.id in groups_of:
                    data["groups"] = groups_of[r.id]
                if r.type == GROUP and data.get("members"):
                    # $ref is derived from value, so it is rebuilt relative to the SCIM root:
                    # the server turns it into a URL of whatever host the client called.
                    data["members"] = [
                        {**m, "$ref": f"{member_types.get(m['value'], USER)}s/{m['value']}"}
                        for m in data["members"]
                    ]
                resource = resource_model(r.type).model_validate(data)
                resource.meta = Meta(
                    resource_type=r.type,
                    created=r.created_at,
                    last_modified=r.updated_at,
                    version=_version(r),
                )
                out.append(resource)
        return out

    def _types_of(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(sorted(set(ids))):
            q = select(IdpResource.id, IdpResource.type).where(IdpResource.id.in_(chunk))
            out.update({i: t for i, t in self.s.execute(q)})
        return out

    def search(self, types: list[str], search_request: SearchRequest[Any]) -> SearchPage:
        """Filter, sort and page the resources of ``types`` as one collection."""
        scim_filter = search_request.filter
        start = search_request.start_index_0 or 0
        q = select(IdpResource).where(IdpResource.type.in_(types))
        if scim_filter is None and search_request.sort_by is None:
            # The common listing pages in SQL, in the order the general path sorts by (id).
            total = self.s.scalar(select(func.count()).select_from(q.subquery())) or 0
            q = q.order_by(IdpResource.id).offset(start)
            if search_request.count is not None:
                q = q.limit(search_request.count)
            return SearchPage(total, self.resources(self.s.scalars(q).all()))
        if (key := self._equality_key(types, scim_filter)) is not None:
            # userName/displayName eq "…" (how provisioning clients look people up) reads
            # only the matching row; the filter still decides below.
            q = q.where(IdpResource.name_key == key)
        found = self.resources(self.s.scalars(q).all())
        if scim_filter is not None:
            if not scim_filter.models and found:
                # A search at the root names no resource type: bind the filter to those found.
                models = tuple(dict.fromkeys(type(r) for r in found))
                scim_filter = parametrize(ScimFilter, Union[models])(str(scim_filter))  # noqa: UP007
            found = [r for r in found if scim_filter.match(r)]
        descending = (
            search_request.sort_by is not None
            and search_request.sort_order == SearchRequest.SortOrder.descending
        )

        def sort_key(resource: Resource[Any]) -> tuple[bool, Any, str]:
            value = search_request.sort_value(resource)
            return value is None, value if value is not None else "", cast(str, resource.id)

        found.sort(key=sort_key, reverse=descending)
        stop = None if search_request.count is None else start + search_request.count
        return SearchPage(len(found), found[start:stop])

    @staticmethod
    def _equality_key(types: list[str], scim_filter: ScimFilter[Any] | None) -> str | None:
        if len(types) != 1 or scim_filter is None:
            return None
        node = scim_filter.ast
        if not (
            isinstance(node, Comparison)
            and node.op == CompareOperator.eq
            and isinstance(node.value, str)
            and node.attr_path.sub_attr is None
        ):
            return None
        attr, uri = node.attr_path.attr.lower(), node.attr_path.uri
        if (types[0], attr, uri) in (
            (USER, "username", None),
            (USER, "username", USER_SCHEMA),
            (GROUP, "displayname", None),
            (GROUP, "displayname", GROUP_SCHEMA),
        ):
            return comparison_key(node.value)
        return None

    def user_groups(self, user_id: str) -> list[str]:
        """Display names of the groups a user is a direct member of (what is pushed)."""
        q = (
            select(IdpResource.display_name)
            .join(IdpGroupMember, IdpGroupMember.group_id == IdpResource.id)
            .where(IdpGroupMember.member_id == user_id, IdpResource.type == GROUP)
        )
        return sorted(n for n in self.s.scalars(q) if n)

    def member_ids(self, group_id: str) -> set[str]:
        q = select(IdpGroupMember.member_id).where(IdpGroupMember.group_id == group_id)
        return set(self.s.scalars(q))

    # ------------------------------------------------------------------ writes
    def create(self, type_: str, resource: Resource[Any]) -> Resource[Any]:
        data = self._data(resource)
        columns = self._columns(type_, data)
        resource_id = uuid.uuid4().hex
        self._check_unique(type_, columns["name_key"], resource_id)
        members = self._check_members(data, resource_id) if type_ == GROUP else set()
        row = IdpResource(
            id=resource_id,
            type=type_,
            version=1,
            created_at=self.now,
            updated_at=self.now,
            data=data,
            **columns,
        )
        self.s.add(row)
        self.s.flush()
        if type_ == GROUP:
            self._index_members(row.id, members)
            self.push(members)
        else:
            self.push([row.id])
        return self.resources([row])[0]

    def update(
        self, type_: str, resource: Resource[Any], expected_version: str | None = None
    ) -> Resource[Any]:
        row = self.row(type_, resource.id)
        self._check_version(row, expected_version)
        data = self._data(resource)
        if data == row.data:
            return self.resources([row])[0]  # nothing changed: same version, nothing to push
        columns = self._columns(type_, data)
        self._check_unique(type_, columns["name_key"], row.id)
        members = self._check_members(data, row.id) if type_ == GROUP else set()
        old_email, old_name = row.email, row.display_name
        old_members = self.member_ids(row.id) if type_ == GROUP else set()
        for name, value in columns.items():
            setattr(row, name, value)
        row.data, row.version, row.updated_at = data, row.version + 1, self.now
        if type_ == GROUP:
            self._index_members(row.id, members)
            # A rename changes what the group maps to for everyone in it.
            self.push(
                old_members | members if row.display_name != old_name else old_members ^ members
            )
        else:
            if old_email is not None and old_email != row.email:
                # The org's identifier is the email: the old address leaves, the new one joins.
                self.push_gone(old_email)
            self.push([row.id])
        self.s.flush()
        return self.resources([row])[0]

    def delete(self, type_: str, resource_id: str, expected_version: str | None = None) -> None:
        row = self.row(type_, resource_id)
        self._check_version(row, expected_version)
        members = self.member_ids(row.id) if type_ == GROUP else set()
        # Whatever is deleted leaves the groups it was in, as in any directory.
        for group in self.s.scalars(
            select(IdpResource)
            .join(IdpGroupMember, IdpGroupMember.group_id == IdpResource.id)
            .where(IdpGroupMember.member_id == row.id)
        ).all():
            kept = [m for m in group.data.get("members", []) if m.get("value") != row.id]
            group.data = {**group.data, "members": kept}
            group.version, group.updated_at = group.version + 1, self.now
        self.s.execute(
            delete(IdpGroupMember).where(
                (IdpGroupMember.group_id == row.id) | (IdpGroupMember.member_id == row.id)
            )
        )
        email = row.email
        self.s.delete(row)
        self.s.flush()
        if type_ == USER:
            if email is not None:
                self.push_gone(email)
        else:
            self.push(members)

    @staticmethod
    def _data(resource: Resource[Any]) -> dict[str, Any]:
        """What is stored: everything but what the server computes, and never a password
        (the sandbox has no password sign-in, and keeps no secrets it does not need)."""
        data: dict[str, Any] = resource.model_dump(mode="json")
        for key in ("id", "meta", "groups", "password"):
            data.pop(key, None)
        if data.get("members"):
            data["members"] = [{k: v for k, v in m.items() if k != "$ref"} for m in data["members"]]
        return data

    @staticmethod
    def _columns(type_: str, data: dict[str, Any]) -> dict[str, Any]:
        if type_ == USER:
            user_name = str(data["userName"])
            return {
                "user_name": user_name,
                "display_name": data.get("displayName"),
                "name_key": comparison_key(user_name),
                "email": identity_email(data),
                "active": data.get("active") is not False,  # absent means active
            }
        name = str(data.get("displayName") or "")
        return {
            "user_name": None,
            "display_name": name,
            "name_key": comparison_key(name),
            "email": None,
            "active": True,
        }

    def _check_unique(self, type_: str, name_key: str, own_id: str) -> None:
        """userName is unique (RFC 7643); so are group names here, as in Okta or Entra ID,
        because the org maps groups by name."""
        other = self.s.scalar(
            select(IdpResource.id).where(
                IdpResource.type == type_,
                IdpResource.name_key == name_key,
                IdpResource.id != own_id,
            )
        )
        if other is not None:
            what = "userName" if type_ == USER else "displayName"
            raise UniquenessException(detail=f"{what} {name_key!r} is already taken")

    @staticmethod
    def _check_version(row: IdpResource, expected_version: str | None) -> None:
        if expected_version is not None and expected_version != _version(row):
            raise PreconditionFailedException

    def _check_members(self, data: dict[str, Any], group_id: str) -> set[str]:
        ids = {str(m["value"]) for m in data.get("members") or [] if m.get("value")}
        if group_id in ids:
            raise InvalidValueException(detail="a group cannot be a member of itself")
        missing = sorted(ids - set(self._types_of(sorted(ids))))
        if missing:
            raise InvalidValueException(detail=f"no such members: {', '.join(missing[:10])}")
        return ids

    def _index_members(self, group_id: str, members: set[str]) -> None:
        self.s.execute(delete(IdpGroupMember).where(IdpGroupMember.group_id == group_id))
        self.s.add_all(IdpGroupMember(group_id=group_id, member_id=m) for m in sorted(members))
        self.s.flush()

    # ------------------------------------------------------------------ provisioning
    def push(self, ids: Iterable[str]) -> None:
        """Push each of these users (other ids are groups or gone: skipped) into the org."""
        for chunk in _chunks(sorted(set(ids))):
            rows = self.s.scalars(
                select(IdpResource)
                .where(IdpResource.id.in_(chunk), IdpResource.type == USER)
                .order_by(IdpResource.id)
            ).all()
            for row in rows:
                if row.email is None:
                    continue  # the org knows people by email only: nobody to provision
                name = row.data.get("name") or {}
                self.push_email(
                    row.email,
                    given_name=str(name.get("givenName") or ""),
                    family_name=str(name.get("familyName") or ""),
                    active=row.active,
                    groups=self.user_groups(row.id),
                )

    def push_gone(self, email: str) -> PushResult:
        """The IdP no longer knows this address: deprovision it if the IdP provisioned it."""
        return self.push_email(email, active=False, groups=[])

    def push_email(
        self,
        email: str,
        *,
        active: bool,
        groups: list[str],
        given_name: str = "",
        family_name: str = "",
    ) -> PushResult:
        """One push; a refusal of the org is recorded, never raised (the IdP change stands)."""
        try:
            with self.s.begin_nested():
                res = push_identity(
                    self.s,
                    self.now,
                    email=email,
                    given_name=given_name,
                    family_name=family_name,
                    active=active,
                    groups=groups,
                )
        except OrgError as e:
            res = PushResult(email=norm_email(email), action="error", errors=[e.message])
        if res.errors:
            self.s.add(
                IdpProvisioningError(
                    at=self.now,
                    email=res.email,
                    action=res.action,
                    trigger=self.trigger,
                    errors=list(res.errors),
                )
            )
        self.results.append(res)
        return res

    def sync(self) -> list[PushResult]:
        """Push every user; deprovision the org members the IdP provisioned but no longer has."""
        rows = self.s.execute(
            select(IdpResource.id, IdpResource.email).where(IdpResource.type == USER)
        ).all()
        self.push(r.id for r in rows)
        known = {r.email for r in rows if r.email}
        for email in idp_managed_members(self.s):
            if email not in known:
                self.push_gone(email)
        return self.results
