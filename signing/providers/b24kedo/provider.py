"""Bitrix24 Sign for HR documents (KEDO): ``sign.b2e.document.send`` with employees as members.

Options the KEDO robot passes in ``SendSpec.options`` (all optional unless stated):

* ``company_id``            CRM "my company" id (else account credentials, else the portal's only my company)
* ``company_uuid``          HCM Link company uuid instead of ``company_id``
* ``provider_uid``          companyProviderUid (else credentials, else the only usable provider of the company)
* ``region_document_type``  default ``"12.999"``
* ``responsible_user_id``   the responsible person (default: the first assignee)
* ``member_key``            ``userId`` (default) | ``employeeId`` (Signer.user_id is the HCM employee id) |
                            ``employeeCode`` (codes in ``employee_codes``, a list parallel to ``signers``)
* ``external_date_create``  ISO 8601 (default: now)
* ``language``              document language; status names come back in ``status_language`` (default en)

Members: ``Signer.kedo_role`` (signer | assignee | reviewer | editor; an empty one falls back from
``Signer.role``: signer -> signer, approver -> reviewer) and ``Signer.user_id``.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from django.conf import settings

from b24app.rest.errors import B24Error
from signing import states
from signing.base import (
    CredentialField,
    Provider,
    ProviderError,
    SendResult,
    SendSpec,
    SignedFiles,
    SignerState,
    StatusSnapshot,
)

from .client import KedoClient, encode_file_b64, provider_error
from .names import file_name_for, title_marker
from .statuses import (
    DOC_DONE,
    DOC_OPEN,
    DOC_STOPPED,
    MEMBER_REFUSED,
    MEMBER_SIGNED,
    MEMBER_STOPPED,
    MEMBER_WAITING,
    compact_answer,
    member_status,
)

__all__ = ["KedoProvider", "file_name_for", "title_marker"]

log = logging.getLogger("b24sign.providers.b24kedo")

ROLES = ("signer", "assignee", "reviewer", "editor")
SINGLE_ROLES = ("assignee", "reviewer", "editor")  # the core keeps one member of each (the last one)
ROLE_FALLBACK = {"signer": "signer", "approver": "reviewer"}
MEMBER_KEYS = ("userId", "employeeId", "employeeCode")
DEFAULT_REGION_TYPE = "12.999"
EXTERNAL_ID_MAX = 255
MAX_FILE_SIZE = 25 * 1024 * 1024  # U-B4: no documented limit; base64 grows the call by a third
# Errors after which the document certainly was not created (anything else during send is ambiguous).
DEFINITE_SEND_ERRORS = {"QUERY_LIMIT_EXCEEDED", "RATE_LIMITED", "OPERATION_TIME_LIMIT", "expired_token",
                        "invalid_token", "NO_AUTH_FOUND"}



def _iso8601(value: str) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def _positive_int(value) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


class KedoProvider(Provider):
    code = "b24kedo"
    label = "Bitrix24 Sign (HR documents)"
    credential_fields = [
        CredentialField("company_id", "Company (CRM my company ID)", secret=False, required=False),
        CredentialField("provider_uid", "Signing provider", secret=False, required=False,
                        help="Pick from the providers Bitrix24 Sign lists for the company."),
    ]
    capabilities = frozenset()
    supported_auth = frozenset({"none"})  # signer authentication is set by the signing provider in Bitrix24
    # sign.b2e.document.send/get and company.provider.list check all three (403 ACCESS_DENIED otherwise).
    required_scopes = frozenset({"sign.b2e", "crm", "humanresources.hcmlink"})

    def client(self) -> KedoClient:
        return KedoClient(self.account.portal)

    @property
    def creds(self) -> dict:
        return dict(self.account.credentials or {})

    # -- account ---------------------------------------------------------------------------------------
    def connect(self, credentials: dict) -> dict:
        out = {}
        if credentials.get("company_id") not in (None, ""):
            company_id = _positive_int(credentials["company_id"])
            if company_id is None:
                raise ProviderError("Bitrix24 Sign: the company ID must be a number", permanent=True, code="input")
            out["company_id"] = company_id
        uid = str(credentials.get("provider_uid") or "").strip()
        if uid:
            providers = self.list_company_providers(out.get("company_id"))
            if not any(p["uid"] == uid for p in providers):
                raise ProviderError("Bitrix24 Sign: that signing provider is not available for the company",
                                    permanent=True, code="input")
            out["provider_uid"] = uid
        return out

    def test_connection(self) -> str:
        company_id = self._company_id({})
        providers = self.list_company_providers(company_id)
        usable = [p for p in providers if not p["expired"]]
        if not usable:
            raise ProviderError("Bitrix24 Sign: no usable signing provider for the company "
                                f"({len(providers)} listed, all expired)" if providers else
                                "Bitrix24 Sign: the company has no signing provider; set one up in Bitrix24 Sign",
                                permanent=True, code="no_provider")
        names = ", ".join(f"{p['name']} ({p['code']})" for p in usable)
        return f"Bitrix24 Sign is available: {len(usable)} signing provider(s) for company {company_id}: {names}."

    def list_company_providers(self, company_id: int | None = None, company_uuid: str = "") -> list[dict]:
        """For the settings UI: ``[{uid, code, name, date, expires, expired}]`` of the company."""
        if not company_uuid and not company_id:
            company_id = self._company_id({})
        now = datetime.now(timezone.utc)
        out = []
        for p in self.client().providers(company_id=company_id, company_uuid=company_uuid):
            expires = str(p.get("expires") or "")
            expired = False
            if expires and _iso8601(expires):
                exp = datetime.fromisoformat(expires.replace("Z", "+00:00"))
                expired = (exp if exp.tzinfo else exp.replace(tzinfo=timezone.utc)) < now
            out.append({"uid": str(p.get("uid", "")), "code": str(p.get("code", "")), "name": str(p.get("name", "")),
                        "date": str(p.get("date") or ""), "expires": expires, "expired": expired})
        return out

    # -- lifecycle -------------------------------------------------------------------------------------
    def validate(self, spec: SendSpec) -> None:
        """Every documented rule of ``sign.b2e.document.send`` that can be checked without a call."""
        def fail(message: str):
            raise ProviderError(f"Bitrix24 Sign: {message}", permanent=True, code="input")

        missing = self.account.portal.missing_scopes(self.required_scopes)
        if missing:
            fail(f"the app lacks the Bitrix24 permission(s) {', '.join(missing)}; an administrator adds them to "
                 "the app's scopes and opens the app again (see the settings page)")
        if spec.auth not in self.supported_auth:
            fail("signer authentication is set by the signing provider in Bitrix24, not per document")
        if spec.cc:
            fail("copies by email are not supported; add the employees as reviewers or editors")
        doc = spec.document
        if not doc.name.lower().endswith(".pdf"):
            fail(f"the document must be a PDF file named *.pdf (got {doc.name!r})")
        if (doc.content_type or "application/pdf").split(";")[0].strip().lower() != "application/pdf":
            fail(f"the document must be a PDF (got {doc.content_type})")
        try:
            with open(doc.path, "rb") as fh:
                head = fh.read(5)
        except OSError:
            fail("the document file is missing")
        if head != b"%PDF-":
            fail("the document is not a PDF")
        max_size = getattr(settings, "KEDO_MAX_FILE_SIZE", MAX_FILE_SIZE)
        if doc.size > max_size:
            fail(f"the document is {doc.size // 1024} KB; the limit is {max_size // 1024} KB")
        self._members(spec)  # roles, ids, at least one signer and one assignee
        self._responsible(spec)
        if not spec.request_id or len(str(spec.request_id)) > EXTERNAL_ID_MAX:
            fail(f"the external ID must be 1-{EXTERNAL_ID_MAX} characters")
        date = spec.options.get("external_date_create")
        if date not in (None, "") and not _iso8601(date):
            fail(f"the document date {date!r} is not ISO 8601")
        rdt = str(spec.options.get("region_document_type") or DEFAULT_REGION_TYPE).strip()
        if not re.fullmatch(r"[0-9A-Za-z._-]{1,32}", rdt):
            fail(f"the document type code {rdt!r} is not valid (use {DEFAULT_REGION_TYPE})")
        for key in ("company_id",):
            value = spec.options.get(key)
            if value not in (None, "") and _positive_int(value) is None:
                fail("the company ID must be a number")

    def send(self, spec: SendSpec) -> SendResult:
        self.validate(spec)
        resume = dict(spec.resume or {})
        if resume.get("document_uid"):
            return self._result(resume.get("response") or {"uid": resume["document_uid"]}, spec,
                                resume.get("file_name", ""))
        if resume.get("send_started"):
            raise ProviderError(
                "Bitrix24 Sign: an earlier attempt to send this document was interrupted and may have reached "
                "Bitrix24; check the HR documents in Bitrix24 Sign before sending it again",
                permanent=True, code="ambiguous_send")
        company_id = None if spec.options.get("company_uuid") else self._company_id(spec.options)
        provider_uid = self._provider_uid(spec, company_id)
        file_name = file_name_for(spec.title or spec.document.name.rsplit(".", 1)[0], spec.request_id)
        fields = {
            "company": ({"uuid": spec.options["company_uuid"]} if spec.options.get("company_uuid")
                        else {"crmId": company_id}),
            "members": self._members(spec),
            "responsible": self._responsible(spec),
            "companyProviderUid": provider_uid,
            "files": [{"fileName": file_name, "fileType": "application/pdf",
                       "fileContent": encode_file_b64(spec.document.path)}],
            "regionDocumentType": str(spec.options.get("region_document_type") or DEFAULT_REGION_TYPE).strip(),
            "externalSettings": {
                "externalId": str(spec.request_id),
                "externalDateCreate": spec.options.get("external_date_create")
                or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        }
        if spec.options.get("language"):
            fields["language"] = spec.options["language"]
        state = {"send_started": True, "file_name": file_name, "provider_uid": provider_uid}
        spec.checkpoint(dict(state))
        try:
            result = self.client().send(fields, language=spec.options.get("status_language") or "en")
        except B24Error as exc:
            if exc.permanent or exc.error in DEFINITE_SEND_ERRORS:
                spec.checkpoint({**state, "send_started": False})  # certainly not created: a retry is safe
            raise provider_error(exc) from exc
        if not isinstance(result, dict) or not result.get("uid"):
            raise ProviderError("Bitrix24 Sign: the send answer has no document uid", permanent=True,
                                code="bad_response")
        spec.checkpoint({**state, "document_uid": result["uid"], "response": compact_answer(result)})
        return self._result(result, spec, file_name)

    def status(self, request) -> StatusSnapshot:
        if not request.external_id:
            raise ProviderError("Bitrix24 Sign: the document was never created", permanent=True, code="input")
        try:
            data = self.client().get(request.external_id)
        except ProviderError as exc:
            if exc.code != "NOT_FOUND":
                raise
            # The core answers a deleted document with an empty code and "Document not found.": it will not
            # come back, so the request ends in error instead of being polled for ever.
            return StatusSnapshot(status=states.ERROR, signers=[], raw={},
                                  reason=f"{exc} (the document was deleted in Bitrix24 Sign)")
        doc_code = str((data.get("state") or {}).get("code", "")).lower()
        members = [m for m in data.get("members") or [] if isinstance(m, dict)]
        signers = self._signer_states(request, members)
        codes = {str((m.get("state") or {}).get("code", "")).lower() for m in members}
        if doc_code in DOC_DONE:
            status = states.COMPLETED
        elif codes & MEMBER_REFUSED:
            status = states.DECLINED
        elif doc_code in DOC_STOPPED:
            status = states.CANCELLED
        elif doc_code in DOC_OPEN:
            status = states.PARTIALLY_SIGNED if codes & MEMBER_SIGNED else states.SENT
        else:
            log.warning("KEDO document %s: unknown state code %r, keeping %s", request.external_id, doc_code,
                        request.status)
            status = request.status
        unknown = codes - MEMBER_SIGNED - MEMBER_REFUSED - MEMBER_STOPPED - MEMBER_WAITING - {""}
        if unknown:
            log.warning("KEDO document %s: unknown member state code(s) %s", request.external_id, sorted(unknown))
        reason = "refused by an employee" if status == states.DECLINED else \
            "stopped in Bitrix24 Sign" if status == states.CANCELLED else ""
        return StatusSnapshot(status=status, signers=signers, raw=data, reason=reason)

    def cancel(self, request, reason: str = "") -> None:
        raise ProviderError("Bitrix24 Sign has no REST method to stop an HR document; stop it in Bitrix24 Sign "
                            "(the status then changes to cancelled)", permanent=True, code="unsupported")

    def remind(self, request) -> None:
        raise ProviderError("Bitrix24 Sign has no REST method to remind employees; Bitrix24 notifies them itself",
                            permanent=True, code="unsupported")

    def signed_document(self, request) -> SignedFiles:
        st = request.provider_state or {}
        marker = title_marker(str(request.public_id))
        stem = str(st.get("file_name") or "").rsplit(".", 1)[0]

        def match(row: dict) -> bool:
            title = str(row.get("title") or "")
            return marker in title or (bool(stem) and title.rsplit(".", 1)[0] == stem)

        client = self.client()
        row = client.find_in_safe(match)
        if row is None or not row.get("file_url"):
            raise ProviderError("Bitrix24 Sign: the signed file is not in the company safe yet", code="not_ready")
        pdf, name = client.download(str(row["file_url"]))
        title = str(row.get("title") or "") or stem or "signed"
        return SignedFiles(pdf=pdf, pdf_name=name or (title if title.lower().endswith(".pdf") else f"{title}.pdf"))

    # -- helpers ---------------------------------------------------------------------------------------
    def _members(self, spec: SendSpec) -> list[dict]:
        key = spec.options.get("member_key") or "userId"
        if key not in MEMBER_KEYS:
            raise ProviderError(f"Bitrix24 Sign: member_key must be one of {', '.join(MEMBER_KEYS)}",
                                permanent=True, code="input")
        codes = spec.options.get("employee_codes") or []
        members = []
        for i, s in enumerate(spec.signers):
            role = s.kedo_role or ROLE_FALLBACK.get(s.role, "")
            who = s.name or s.email or f"participant {i + 1}"
            if role not in ROLES:
                raise ProviderError(f"Bitrix24 Sign: invalid role {role or '(none)'!r} for {who}; use signer, "
                                    "assignee, reviewer or editor", permanent=True, code="input")
            if key == "employeeCode":
                code = str(codes[i]).strip() if i < len(codes) and codes[i] is not None else ""
                if not code:
                    raise ProviderError(f"Bitrix24 Sign: no employee code for {who}", permanent=True, code="input")
                members.append({"employeeCode": code, "role": role})
            else:
                ident = _positive_int(s.user_id)
                if ident is None:
                    raise ProviderError(f"Bitrix24 Sign: {who} is not a Bitrix24 employee (no user ID); KEDO signs "
                                        "only with employees", permanent=True, code="input")
                members.append({key: ident, "role": role})
        roles = {m["role"] for m in members}
        for role in SINGLE_ROLES:
            count = sum(1 for m in members if m["role"] == role)
            if count > 1:  # the core keeps only the last one; the others would stay "pending" for ever
                raise ProviderError(f"Bitrix24 Sign takes one {role} per document (got {count}); choose one",
                                    permanent=True, code="input")
        if "signer" not in roles:
            raise ProviderError("Bitrix24 Sign: at least one employee must have the role signer", permanent=True,
                                code="input")
        if "assignee" not in roles:
            raise ProviderError("Bitrix24 Sign: at least one company representative (role assignee) is required",
                                permanent=True, code="input")
        return members

    def _responsible(self, spec: SendSpec) -> dict:
        rid = spec.options.get("responsible_user_id") or spec.options.get("responsible")
        if rid not in (None, ""):
            ident = _positive_int(rid)
            if ident is None:
                raise ProviderError("Bitrix24 Sign: the responsible person must be a Bitrix24 user ID",
                                    permanent=True, code="input")
            return {"userId": ident}
        for member in self._members(spec):
            if member["role"] == "assignee":
                return {k: v for k, v in member.items() if k != "role"}
        raise ProviderError("Bitrix24 Sign: a responsible person is required", permanent=True, code="input")

    def _company_id(self, options: dict) -> int:
        for value in (options.get("company_id"), self.creds.get("company_id")):
            if value not in (None, ""):
                ident = _positive_int(value)
                if ident is None:
                    raise ProviderError("Bitrix24 Sign: the company ID must be a number", permanent=True,
                                        code="input")
                return ident
        companies = self.client().my_companies()
        if len(companies) == 1:
            return companies[0]["id"]
        raise ProviderError("Bitrix24 Sign: choose the company (CRM \"my company\") in the settings or the robot"
                            + (f"; the portal has {len(companies)}" if companies else "; the portal has none"),
                            permanent=True, code="input")

    def _provider_uid(self, spec: SendSpec, company_id: int | None) -> str:
        for value in (spec.options.get("provider_uid"), self.creds.get("provider_uid")):
            if value and str(value).strip():
                return str(value).strip()
        usable = [p for p in self.list_company_providers(company_id, spec.options.get("company_uuid") or "")
                  if not p["expired"] and p["uid"]]
        if len(usable) == 1:
            return usable[0]["uid"]
        if not usable:
            raise ProviderError("Bitrix24 Sign: the company has no usable signing provider; set one up in Bitrix24 "
                                "Sign", permanent=True, code="no_provider")
        raise ProviderError(f"Bitrix24 Sign: the company has {len(usable)} signing providers; choose one in the "
                            "settings or the robot", permanent=True, code="input")

    def _result(self, result: dict, spec: SendSpec, file_name: str) -> SendResult:
        members = [m for m in result.get("members") or [] if isinstance(m, dict)]
        by_user = {(str((m.get("user") or {}).get("userId", "")), m.get("role")): m for m in members}
        signers = []
        for s in spec.signers:
            role = s.kedo_role or ROLE_FALLBACK.get(s.role, "")
            m = by_user.get((str(s.user_id or ""), role), {})
            code = str((m.get("state") or {}).get("code", "")).lower()
            signers.append(SignerState(email=s.email or f"user:{s.user_id}", name=s.name,
                                       external_id=str(m.get("uid", "")), status=member_status(code)))
        return SendResult(external_id=str(result["uid"]), signers=signers,
                          raw={**compact_answer(result), "file_name": file_name})

    def _signer_states(self, request, members: list[dict]) -> list[SignerState]:
        known = {}
        for row in request.signers.all():
            known.setdefault(str(row.user_id or ""), row)
            known[(str(row.user_id or ""), row.role)] = row
            if row.external_id:
                known[row.external_id] = row
        out = []
        for m in members:
            user_id = str((m.get("user") or {}).get("userId", ""))
            row = known.get(str(m.get("uid", ""))) or known.get((user_id, m.get("role"))) or known.get(user_id)
            code = str((m.get("state") or {}).get("code", "")).lower()
            out.append(SignerState(email=row.email if row else f"user:{user_id}", name=row.name if row else "",
                                   external_id=str(m.get("uid", "")), status=member_status(code)))
        return out
