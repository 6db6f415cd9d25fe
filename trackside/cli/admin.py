"""Administration of a lifecycle: ESCs and their tokens, permissions, public endpoints, users.

    trackside esc create|list|token|tokens|revoke
    trackside grant|revoke SUBJECT SCOPE [--family F] [--version V] [--endpoint E]
    trackside permissions [--subject S] [--family F] [--scope S]
    trackside public-endpoints list|approve|reject
    trackside user create|list

All of it is the lifecycle's admin API: the token in use must be an admin's (or carry
`call_admin_api`); the server's 403, which names the subject, the scope and the resource, ends the
command with exit 4 like any other auth failure.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .exit_codes import CommandFailed, ExitCode
from .output import TracksideCommand, TracksideGroup
from .remotes import JsonOption, RemoteOption, connect

if TYPE_CHECKING:
    from trackside.client import LifecycleClient

# the lifecycle's scopes (DESIGN §2.5); checked here so that a typo is a usage error naming them
SCOPES = (
    "read_job",
    "deploy_job",
    "deploy_new_family",
    "delete_job",
    "call_job",
    "call_admin_api",
    "full_access",
)
SUBJECT_KINDS = ("user", "esc", "family")
SUBJECT_FORMS = "user:NAME, esc:NAME or family:NAME (a job family)"
ENDPOINT_STATUSES = ("pending", "approved", "rejected")
MAX_TOKEN_DAYS = 3650  # what the lifecycle accepts

# the fields of each object in the `--json` output, in this order
ESC_FIELDS = ("id", "name", "created_at")
TOKEN_FIELDS = ("id", "prefix", "description", "created_at", "expires_at", "last_used_at", "revoked_at")
ISSUED_TOKEN_FIELDS = ("token", "subject", *TOKEN_FIELDS)
PERMISSION_FIELDS = (
    "id",
    "subject_type",
    "subject_name",
    "scope",
    "job_family",
    "job_version",
    "endpoint",
    "created_at",
)
PUBLIC_ENDPOINT_FIELDS = (
    "id",
    "job_name",
    "job_version",
    "endpoint",
    "status",
    "decided_by",
    "decided_at",
    "created_at",
)
USER_FIELDS = ("username", "is_admin", "is_active", "created_at", "last_login_at")

STATUS_STYLES = {"STATUS": {"pending": "yellow", "approved": "green", "rejected": "red"}}

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
FamilyOption = Annotated[
    str | None,
    typer.Option(
        "--family", "-f", help="only this job family (a job's name) [default: every job]", metavar="F"
    ),
]
VersionOption = Annotated[
    str | None,
    typer.Option("--version", help="only this version of the family [default: every version]", metavar="V"),
]
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint", help="only this endpoint (a path prefix) [default: every endpoint]", metavar="E"
    ),
]
SubjectArgument = Annotated[
    str, typer.Argument(help=f"who: {SUBJECT_FORMS}", metavar="SUBJECT", show_default=False)
]
ScopeArgument = Annotated[
    str, typer.Argument(help=f"what: {', '.join(SCOPES)}", metavar="SCOPE", show_default=False)
]
EscArgument = Annotated[str, typer.Argument(help="the ESC's name", metavar="NAME", show_default=False)]


# ---- shared pieces ------------------------------------------------------------------------------


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _pick(item: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The object with exactly `fields`, in that order (missing ones are null)."""
    source = item if isinstance(item, dict) else {}
    return {field: source.get(field) for field in fields}


def _items(answer: Any) -> list[dict[str, Any]]:
    return [item for item in answer if isinstance(item, dict)] if isinstance(answer, list) else []


def _timestamp(value: Any) -> float | None:
    """Unix seconds of the API's ISO 8601 time (UTC when it names no zone)."""
    from datetime import UTC, datetime

    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _when(value: Any, never: str = "-") -> str:
    from .output import local_time

    stamp = _timestamp(value)
    return local_time(stamp) if stamp is not None else never


def _ago(value: Any, never: str = "-") -> str:
    from .output import ago

    stamp = _timestamp(value)
    return ago(stamp) if stamp is not None else never


def _confirmed(question: str, refusal: str, yes: bool) -> bool:
    """True with --yes or a "y" typed at the terminal; without a terminal, --yes is required."""
    if yes:
        return True
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandFailed(
            f"{refusal} without confirmation: stdin is not a terminal; pass --yes", ExitCode.USAGE
        )
    return bool(typer.confirm(question, default=False))


# ---- ESCs ----------------------------------------------------------------------------------------


def create_esc(name: EscArgument, remote: RemoteOption = None) -> None:
    """Create an ESC (external service consumer): a client system calling jobs with its own token.

    A new ESC may do nothing: give it a token and grant it `call_job` on the jobs it may call.

    Example:
      trackside esc create billing
      trackside esc token billing --expires-in 90d
      trackside grant esc:billing call_job --family adder
    """
    with connect(remote) as client:
        esc = client.request("POST", "/escs", json={"name": name})
    created = esc.get("name", name) if isinstance(esc, dict) else name
    typer.echo(f"Created ESC {created}.")
    typer.echo(
        f"Next: `trackside esc token {created}` for its token, and "
        f"`trackside grant esc:{created} call_job --family JOB` for each job it may call."
    )


def list_escs(remote: RemoteOption = None, as_json: JsonOption = False) -> None:
    """List the ESCs.

    JSON shape: a list of {"id", "name", "created_at" (ISO 8601)}

    Example:
      trackside esc list --json | jq -r '.[].name'
    """
    with connect(remote) as client:
        escs = _items(client.request("GET", "/escs"))
        base = client.remote.base
    if as_json:
        from .output import print_json

        print_json([_pick(esc, ESC_FIELDS) for esc in escs])
        return
    from .output import print_table, say

    if not escs:
        say(f"No ESCs on {base} yet; create one with `trackside esc create NAME`.")
        return
    print_table(["NAME", "CREATED"], [[str(esc.get("name")), _when(esc.get("created_at"))] for esc in escs])


_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}


def expiry_body(text: str | None) -> dict[str, Any]:
    """The expiry fields of a token request for `--expires-in` (`90d`, `12h`, `30m`, `2w`)."""
    if text is None:
        return {}
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise CommandFailed(
            f"--expires-in: not a duration: {text!r} (a positive number and a unit: 30m, 12h, 90d or 2w)",
            ExitCode.USAGE,
        )
    count, unit = int(match.group(1)), match.group(2)
    minutes = count * _UNIT_MINUTES[unit]
    if minutes > MAX_TOKEN_DAYS * _UNIT_MINUTES["d"]:
        raise CommandFailed(f"--expires-in: at most {MAX_TOKEN_DAYS} days, not {text!r}", ExitCode.USAGE)
    if unit in ("d", "w"):
        return {"expires_in_days": minutes // _UNIT_MINUTES["d"]}  # counted on the server's clock
    from datetime import UTC, datetime, timedelta

    return {"expires_at": (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()}


def issue_esc_token(
    name: EscArgument,
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="valid for this long: 30m, 12h, 90d, 2w [default: no expiry, or your own token's]",
            metavar="DURATION",
            show_default=False,
        ),
    ] = None,
    description: Annotated[
        str, typer.Option("--description", "-d", help="what the token is for (shown in `esc tokens`)")
    ] = "",
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token for an ESC and print it.

    The token is shown this once: the platform keeps only a hash. It goes to stdout alone (the
    explanation to stderr), so `TOKEN=$(trackside esc token NAME)` captures just the token. It
    never outlives the token that creates it. The ESC sends it in the X-Racetrack-Auth header.

    JSON shape:
      {"token", "subject", "id", "prefix", "description",
       "created_at", "expires_at", "last_used_at", "revoked_at" (ISO 8601 or null)}

    Examples:
      trackside esc token billing --expires-in 90d --description "billing prod"
      trackside esc token billing --json | jq -r .token
    """
    body: dict[str, Any] = {"description": description, **expiry_body(expires_in)}
    with connect(remote) as client:
        issued = client.request("POST", f"/escs/{_segment(name)}/tokens", json=body)
    if not isinstance(issued, dict) or not isinstance(issued.get("token"), str):
        raise CommandFailed(f"the lifecycle answered without a token for ESC {name}")
    if as_json:
        from .output import print_json

        print_json(_pick(issued, ISSUED_TOKEN_FIELDS))
        return
    from .output import styled

    expiry = _when(issued.get("expires_at"), never="never")
    sys.stderr.write(
        f"New token of {issued.get('subject') or 'ESC ' + name} (token id {issued.get('id')}, "
        f"expires {expiry}):\n"
    )
    sys.stderr.flush()
    typer.echo(issued["token"])
    sys.stderr.write(
        styled(
            "It is shown only this once: store it now (the platform keeps only a hash).", "bold", sys.stderr
        )
        + "\n"
    )


def list_esc_tokens(
    name: EscArgument,
    active: Annotated[bool, typer.Option("--active", help="leave out revoked tokens")] = False,
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """List an ESC's tokens (their first characters, never the secret).

    Revoked tokens are listed too unless --active; expired ones stay listed with their expiry.

    JSON shape: a list of
      {"id", "prefix", "description", "created_at", "expires_at", "last_used_at",
       "revoked_at" (ISO 8601 or null)}

    Example:
      trackside esc tokens billing
    """
    with connect(remote) as client:
        tokens = _items(
            client.request("GET", f"/escs/{_segment(name)}/tokens", params={"include_revoked": not active})
        )
    if as_json:
        from .output import print_json

        print_json([_pick(token, TOKEN_FIELDS) for token in tokens])
        return
    from .output import print_table, say

    if not tokens:
        which = "active tokens" if active else "tokens"
        say(f"ESC {name} has no {which}; create one with `trackside esc token {name}`.")
        return
    print_table(
        ["ID", "PREFIX", "DESCRIPTION", "CREATED", "EXPIRES", "LAST USED", "REVOKED"],
        [
            [
                str(token.get("id")),
                f"{token.get('prefix')}…",
                str(token.get("description") or "-"),
                _when(token.get("created_at")),
                _when(token.get("expires_at"), never="never"),
                _ago(token.get("last_used_at"), never="never"),
                _when(token.get("revoked_at")),
            ]
            for token in tokens
        ],
    )


def delete_esc(name: EscArgument, yes: YesOption = False, remote: RemoteOption = None) -> None:
    """Delete an ESC: its permissions go, its tokens stop working at once.

    Asks for confirmation unless --yes; without a terminal to ask on, --yes is required.

    Example:
      trackside esc revoke billing --yes
    """
    with connect(remote) as client:
        # not found → exit 3 before asking anything
        tokens = _items(client.request("GET", f"/escs/{_segment(name)}/tokens"))
        question = f"Delete ESC {name} from {client.remote.base}, with its permissions and {len(tokens)} active token(s)?"
        if not _confirmed(question, f"not deleting ESC {name}", yes):
            raise CommandFailed(f"not deleted: ESC {name} is still there")
        client.request("DELETE", f"/escs/{_segment(name)}")
    typer.echo(f"Deleted ESC {name}: its tokens no longer work.")


# ---- permissions ---------------------------------------------------------------------------------


class SubjectName:
    """`esc:billing` → kind "esc", name "billing". (Plain classes here: a dataclass costs
    milliseconds at import, and every `trackside` command imports this module.)"""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> SubjectName:
        kind, colon, name = text.strip().partition(":")
        if not colon:
            raise CommandFailed(
                f"subject {text!r} does not say what it is: write {SUBJECT_FORMS}, e.g. user:{text.strip()}",
                ExitCode.USAGE,
            )
        if kind.lower() not in SUBJECT_KINDS or not name.strip():
            raise CommandFailed(f"not a subject: {text!r} (expected {SUBJECT_FORMS})", ExitCode.USAGE)
        return cls(kind.lower(), name.strip())


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise CommandFailed(f"not a scope: {scope!r} (scopes: {', '.join(SCOPES)})", ExitCode.USAGE)
    return scope


def normalize_endpoint(endpoint: str | None) -> str | None:
    """As the lifecycle stores it: `api/v1/perform/` → `/api/v1/perform`."""
    return None if endpoint is None else "/" + endpoint.strip().strip("/")


def describe_resource(family: str | None, version: str | None, endpoint: str | None) -> str:
    resource = (
        "every job"
        if family is None
        else f"job family {family}"
        if version is None
        else f"{family} {version}"
    )
    return resource if endpoint is None else f"endpoint {endpoint} of {resource}"


class PermissionSpec:
    """A permission as the command line names it, checked locally."""

    def __init__(
        self, subject: SubjectName, scope: str, family: str | None, version: str | None, endpoint: str | None
    ) -> None:
        self.subject = subject
        self.scope = scope
        self.family = family
        self.version = version
        self.endpoint = endpoint

    @classmethod
    def of(
        cls, subject: str, scope: str, family: str | None, version: str | None, endpoint: str | None
    ) -> PermissionSpec:
        parsed = SubjectName.parse(subject)
        check_scope(scope)
        if version is not None and family is None:
            raise CommandFailed("--version needs --family: a version of which job?", ExitCode.USAGE)
        for option, value in (("--family", family), ("--version", version), ("--endpoint", endpoint)):
            if value is not None and not value.strip():
                raise CommandFailed(f"{option} is empty", ExitCode.USAGE)
        return cls(parsed, scope, family, version, normalize_endpoint(endpoint))

    def describe(self) -> str:
        return f"{self.subject} {self.scope} on {self.resource()}"

    def resource(self) -> str:
        return describe_resource(self.family, self.version, self.endpoint)

    def matches(self, permission: dict[str, Any]) -> bool:
        return (
            permission.get("scope") == self.scope
            and permission.get("job_family") == self.family
            and permission.get("job_version") == self.version
            and permission.get("endpoint") == self.endpoint
        )

    def is_family_call(self) -> bool:
        """`family:A call_job --family B`: A's jobs may call every version of B. It has a route of
        its own (`/families/A/can-call/B`) that creates families not deployed yet (a job whose
        input example calls B needs the grant before its first deploy) and that deployers of A
        who may call B can use too, not only admins."""
        return (
            self.subject.kind == "family"
            and self.scope == "call_job"
            and self.family is not None
            and self.version is None
            and self.endpoint is None
        )

    def can_call_path(self) -> str:
        return f"/families/{_segment(self.subject.name)}/can-call/{_segment(self.family or '')}"


def _permissions_of(client: LifecycleClient, subject: SubjectName) -> list[dict[str, Any]]:
    """The subject's permissions; its absence is the server's 404 (exit 3, naming it)."""
    return _items(
        client.request(
            "GET", "/permissions", params={"subject_type": subject.kind, "subject_name": subject.name}
        )
    )


def _held(client: LifecycleClient, spec: PermissionSpec) -> list[dict[str, Any]] | None:
    """The subject's permissions; None where a family call grant cannot see them (a family not
    deployed yet, or a deployer who may not list permissions) and goes through can-call alone."""
    from trackside.client import RemoteError

    try:
        return _permissions_of(client, spec.subject)
    except RemoteError as e:
        if spec.is_family_call() and e.status in (403, 404):
            return None
        raise


def grant(
    subject: SubjectArgument,
    scope: ScopeArgument,
    family: FamilyOption = None,
    version: VersionOption = None,
    endpoint: EndpointOption = None,
    remote: RemoteOption = None,
) -> None:
    """Grant a subject a scope, on every job or on one family, version or endpoint.

    SUBJECT is user:NAME, esc:NAME or family:NAME (the jobs of a family, calling with their own
    token); a bare NAME is refused, since a user and an ESC may share a name. Granting what the
    subject has already changes nothing.

    Scopes: read_job, deploy_job, deploy_new_family, delete_job, call_job, call_admin_api,
    full_access.

    `family:A call_job --family B` (A's jobs may call B) also works before A or B is deployed,
    and for a deployer of A who may call B, not only for admins.

    Examples:
      trackside grant esc:billing call_job --family adder
      trackside grant user:alice deploy_job --family adder
      trackside grant esc:reports call_job --family adder --version 1.2.0 --endpoint /api/v1/perform
      trackside grant family:chain call_job --family adder
    """
    spec = PermissionSpec.of(subject, scope, family, version, endpoint)
    with connect(remote) as client:
        held = _held(client, spec)
        existing = next((p for p in held or () if spec.matches(p)), None)
        if existing is not None:
            typer.echo(
                f"{spec.subject} already has {spec.scope} on {spec.resource()} "
                f"(permission {existing.get('id')}); nothing changed."
            )
            return
        if spec.is_family_call():
            granted = client.request("POST", spec.can_call_path())
        else:
            granted = client.request(
                "POST",
                "/permissions",
                json={
                    "subject_type": spec.subject.kind,
                    "subject_name": spec.subject.name,
                    "scope": spec.scope,
                    "job_family": spec.family,
                    "job_version": spec.version,
                    "endpoint": spec.endpoint,
                },
            )
    number = granted.get("id") if isinstance(granted, dict) else "?"
    typer.echo(f"Granted {spec.describe()} (permission {number}).")


def revoke(
    subject: SubjectArgument,
    scope: ScopeArgument,
    family: FamilyOption = None,
    version: VersionOption = None,
    endpoint: EndpointOption = None,
    remote: RemoteOption = None,
) -> None:
    """Take back a permission granted with the same SUBJECT, SCOPE and options.

    The options must be those of the grant: `revoke esc:billing call_job` takes back a grant
    on every job, not one on --family adder (see `trackside permissions --subject esc:billing`).
    Exit 3 when the subject has no such permission.

    Examples:
      trackside revoke esc:billing call_job --family adder
      trackside revoke user:alice deploy_job --family adder
      trackside revoke family:chain call_job --family adder
    """
    spec = PermissionSpec.of(subject, scope, family, version, endpoint)
    with connect(remote) as client:
        held = _held(client, spec)
        if held is None:  # a deployer's family call grant: can-call names what is missing (exit 3)
            revoked = client.request("DELETE", spec.can_call_path())
            numbers = [revoked.get("id") if isinstance(revoked, dict) else "?"]
        else:
            matching = [p for p in held if spec.matches(p)]
            if not matching:
                raise CommandFailed(_no_such_permission(spec, held), ExitCode.NOT_FOUND)
            for permission in matching:
                client.request("DELETE", f"/permissions/{permission.get('id')}")
            numbers = [p.get("id") for p in matching]
    typer.echo(f"Revoked {spec.describe()} (permission {', '.join(str(n) for n in numbers)}).")


def _no_such_permission(spec: PermissionSpec, held: list[dict[str, Any]]) -> str:
    """What the subject has of the scope instead, so that the right options are easy to find."""
    same_scope = [
        describe_resource(p.get("job_family"), p.get("job_version"), p.get("endpoint"))
        for p in held
        if p.get("scope") == spec.scope
    ]
    has = (
        f"its {spec.scope} permissions: {'; '.join(same_scope)}"
        if same_scope
        else f"it has no {spec.scope} permission at all"
    )
    return f"{spec.subject} has no {spec.scope} permission on {spec.resource()} ({has})"


def list_permissions(
    subject: Annotated[
        str | None,
        typer.Option("--subject", "-s", help=f"only this subject: {SUBJECT_FORMS}", metavar="SUBJECT"),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            "-f",
            help="only what applies to this job family (theirs and every job's)",
            metavar="F",
        ),
    ] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="only this scope", metavar="SCOPE")] = None,
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """List permissions: who may do what on which jobs.

    In the table `*` means every job family, version or endpoint. With --family F the list holds
    the permissions that apply to F: the ones naming F and the ones on every job.

    JSON shape: a list of
      {"id", "subject_type": "user|esc|family", "subject_name", "scope",
       "job_family", "job_version", "endpoint" (null: every one), "created_at" (ISO 8601)}

    Examples:
      trackside permissions --subject esc:billing
      trackside permissions --family adder --scope call_job --json
    """
    parsed = SubjectName.parse(subject) if subject is not None else None
    if scope is not None:
        check_scope(scope)
    with connect(remote) as client:
        if parsed is not None:
            permissions = _permissions_of(client, parsed)
        else:
            permissions = _items(client.request("GET", "/permissions"))
    if family is not None:
        permissions = [p for p in permissions if p.get("job_family") in (None, family)]
    if scope is not None:
        permissions = [p for p in permissions if p.get("scope") == scope]
    if as_json:
        from .output import print_json

        print_json([_pick(p, PERMISSION_FIELDS) for p in permissions])
        return
    from .output import print_table, say

    if not permissions:
        say("No permissions match.")
        return
    print_table(
        ["ID", "SUBJECT", "SCOPE", "FAMILY", "VERSION", "ENDPOINT", "GRANTED"],
        [
            [
                str(p.get("id")),
                f"{p.get('subject_type')}:{p.get('subject_name')}",
                str(p.get("scope")),
                p.get("job_family") or "*",
                p.get("job_version") or "*",
                p.get("endpoint") or "*",
                _when(p.get("created_at")),
            ]
            for p in permissions
        ],
    )


# ---- public endpoints ----------------------------------------------------------------------------

RequestArgument = Annotated[
    int, typer.Argument(help="the request's ID (see `public-endpoints list`)", metavar="ID", min=1)
]


def list_public_endpoints(
    job: Annotated[str | None, typer.Option("--job", help="only this job", metavar="NAME")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="only this exact version", metavar="V")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="only pending, approved or rejected ones", metavar="STATUS"),
    ] = None,
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the public endpoints that deployed manifests ask for, and what became of them.

    A job version's `public_endpoints` are requested when it is deployed; once an admin approves
    one, anyone may call it (a path prefix) without a token. Decisions are per version.

    JSON shape: a list of
      {"id", "job_name", "job_version", "endpoint", "status": "pending|approved|rejected",
       "decided_by", "decided_at", "created_at" (ISO 8601 or null), "url"}

    Examples:
      trackside public-endpoints list --status pending
      trackside public-endpoints list --job adder --json
    """
    if status is not None and status not in ENDPOINT_STATUSES:
        raise CommandFailed(
            f"--status: not a status: {status!r} (expected {', '.join(ENDPOINT_STATUSES)})", ExitCode.USAGE
        )
    params = {
        key: value
        for key, value in (("job_name", job), ("job_version", version), ("status", status))
        if value is not None
    }
    with connect(remote) as client:
        requests = _items(client.request("GET", "/public-endpoints", params=params))
        urls = [_endpoint_url(client, r) for r in requests]
    if as_json:
        from .output import print_json

        print_json(
            [{**_pick(r, PUBLIC_ENDPOINT_FIELDS), "url": url} for r, url in zip(requests, urls, strict=True)]
        )
        return
    from .output import print_table, say

    if not requests:
        say("No public endpoint requests match." if params else "No job asks for a public endpoint.")
        return
    print_table(
        ["ID", "JOB", "VERSION", "ENDPOINT", "STATUS", "DECIDED BY", "REQUESTED"],
        [
            [
                str(r.get("id")),
                str(r.get("job_name")),
                str(r.get("job_version")),
                str(r.get("endpoint")),
                str(r.get("status")),
                str(r.get("decided_by") or "-"),
                _when(r.get("created_at")),
            ]
            for r in requests
        ],
        STATUS_STYLES,
    )


def _endpoint_url(client: LifecycleClient, request: dict[str, Any]) -> str:
    return client.job_url(
        str(request.get("job_name")), str(request.get("job_version")), str(request.get("endpoint"))
    )


def _decide(request_id: int, approve: bool, remote: str | None) -> None:
    action = "approve" if approve else "reject"
    with connect(remote) as client:
        decided = client.request("POST", f"/public-endpoints/{request_id}/{action}")
        if not isinstance(decided, dict):
            raise CommandFailed(f"the lifecycle answered the {action} of request {request_id} without it")
        url = _endpoint_url(client, decided)
    what = f"endpoint {decided.get('endpoint')} of {decided.get('job_name')} {decided.get('job_version')}"
    if approve:
        typer.echo(f"Approved {what} (request {request_id}): anyone may call {url} without a token.")
    else:
        typer.echo(f"Rejected {what} (request {request_id}): calls to {url} need a token.")


def approve_public_endpoint(request_id: RequestArgument, remote: RemoteOption = None) -> None:
    """Approve a public endpoint request: the endpoint is callable without a token.

    Approving one that was rejected reverses the decision.

    Example:
      trackside public-endpoints list --status pending
      trackside public-endpoints approve 3
    """
    _decide(request_id, True, remote)


def reject_public_endpoint(request_id: RequestArgument, remote: RemoteOption = None) -> None:
    """Reject a public endpoint request: the endpoint keeps needing a token.

    Rejecting one that was approved takes the approval back.

    Example:
      trackside public-endpoints reject 3
    """
    _decide(request_id, False, remote)


# ---- users ---------------------------------------------------------------------------------------


def _new_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        password = line.rstrip("\r\n")
        if not password:
            raise CommandFailed(
                "no password on stdin (--password-stdin reads its first line)", ExitCode.USAGE
            )
        return password
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandFailed(
            "no terminal to ask for the password on: pipe it to stdin with --password-stdin", ExitCode.USAGE
        )
    password = str(
        typer.prompt(f"Password for {username}", hide_input=True, confirmation_prompt="Repeat the password")
    )
    if not password:
        raise CommandFailed("the password is empty", ExitCode.USAGE)
    return password


def create_user(
    username: Annotated[
        str, typer.Argument(help="the new user's name", metavar="USERNAME", show_default=False)
    ],
    admin: Annotated[bool, typer.Option("--admin", help="make the user an administrator")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin's first line (for scripts)")
    ] = False,
    remote: RemoteOption = None,
) -> None:
    """Create a user who logs in with a password.

    The password is asked for twice, hidden, unless --password-stdin. A new user gets the
    platform's default permissions; --admin makes them an administrator.

    Examples:
      trackside user create alice
      printf '%s\\n' "$PASSWORD" | trackside user create ci-bot --password-stdin
      trackside login --username alice
    """
    with connect(remote) as client:
        # the checks the server would make after the password was typed, made before it is asked for
        known = {user.get("username") for user in _items(client.request("GET", "/users"))}
        if username in known:
            raise CommandFailed(f"user {username} already exists")
        password = _new_password(username, password_stdin)
        client.request("POST", "/users", json={"username": username, "password": password, "is_admin": admin})
        base = client.remote.base
    role = " (admin)" if admin else ""
    typer.echo(
        f"Created user {username}{role}. They log in with: trackside login --username {username} --remote {base}"
    )


def list_users(remote: RemoteOption = None, as_json: JsonOption = False) -> None:
    """List the users.

    JSON shape: a list of
      {"username", "is_admin", "is_active", "created_at", "last_login_at" (ISO 8601 or null)}

    Example:
      trackside user list --json | jq -r '.[] | select(.is_admin) | .username'
    """
    with connect(remote) as client:
        users = _items(client.request("GET", "/users"))
    if as_json:
        from .output import print_json

        print_json([_pick(user, USER_FIELDS) for user in users])
        return
    from .output import print_table

    print_table(
        ["USERNAME", "ADMIN", "ACTIVE", "CREATED", "LAST LOGIN"],
        [
            [
                str(user.get("username")),
                "yes" if user.get("is_admin") else "no",
                "yes" if user.get("is_active") else "no",
                _when(user.get("created_at")),
                _ago(user.get("last_login_at"), never="never"),
            ]
            for user in users
        ],
    )


# ---- registration --------------------------------------------------------------------------------


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(cls=TracksideGroup, help=help_text, no_args_is_help=True)


def register(app: typer.Typer) -> None:
    esc_app = _group(
        "ESCs (external service consumers): client systems that call jobs with their own tokens.\n\n"
        "Examples:\n"
        "  trackside esc create billing\n"
        "  trackside esc token billing --expires-in 90d\n"
        "  trackside grant esc:billing call_job --family adder"
    )
    esc_app.command("create", cls=TracksideCommand)(create_esc)
    esc_app.command("list", cls=TracksideCommand)(list_escs)
    esc_app.command("token", cls=TracksideCommand)(issue_esc_token)
    esc_app.command("tokens", cls=TracksideCommand)(list_esc_tokens)
    esc_app.command("revoke", cls=TracksideCommand)(delete_esc)
    app.add_typer(esc_app, name="esc")

    app.command(cls=TracksideCommand)(grant)
    app.command(cls=TracksideCommand)(revoke)
    app.command("permissions", cls=TracksideCommand)(list_permissions)

    endpoints_app = _group(
        "Public endpoints: job endpoints callable without a token once an admin approves them.\n\n"
        "Examples:\n"
        "  trackside public-endpoints list --status pending\n"
        "  trackside public-endpoints approve 3"
    )
    endpoints_app.command("list", cls=TracksideCommand)(list_public_endpoints)
    endpoints_app.command("approve", cls=TracksideCommand)(approve_public_endpoint)
    endpoints_app.command("reject", cls=TracksideCommand)(reject_public_endpoint)
    app.add_typer(endpoints_app, name="public-endpoints")

    user_app = _group(
        "Users: people who log in with a password.\n\n"
        "Examples:\n"
        "  trackside user create alice\n"
        "  trackside user list"
    )
    user_app.command("create", cls=TracksideCommand)(create_user)
    user_app.command("list", cls=TracksideCommand)(list_users)
    app.add_typer(user_app, name="user")
