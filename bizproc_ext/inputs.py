"""Resolving a "Send for e-signature" call's inputs from the CRM: signers and the document.

Reads go out as one ``batch`` (item, contact bindings, the contacts themselves through ``$result``
references, users, the file's metadata) instead of one request each; a second one only for contacts
the references could not reach (a deal with more than PREFETCH_CONTACTS, or a primary listed second).
The document is streamed to a temporary file, checked to be a PDF within the size limit, and never held
in memory whole.
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

from b24app import http
from b24app.rest import B24Client, B24Error
from signing.base import DocumentFile, ProviderError, Signer

from . import proof

log = logging.getLogger("b24sign.inputs")
NOT_DOWNLOADED = "the document could not be downloaded"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PREFETCH_CONTACTS = 5  # "all contacts": fetched in the first batch up to this many


class InputError(ProviderError):
    """The robot's settings or the CRM item cannot produce a valid request (never retried)."""

    def __init__(self, message: str):
        super().__init__(message, permanent=True, code="input")


def _norm(code: str) -> str:
    return code.replace("_", "").lower()


def find_field(item: dict, code: str):
    """A CRM field by the code a manager typed: UF_CRM_CONTRACT, ufCrmContract and ufCrm_contract all match."""
    if code in item:
        return item[code]
    want = _norm(code)
    for key, value in item.items():
        if _norm(key) == want:
            return value
    return None


def _emails(multifield) -> list[str]:
    """EMAIL multifield [{VALUE, VALUE_TYPE}], WORK first."""
    values = [e for e in (multifield or []) if isinstance(e, dict) and e.get("VALUE")]
    values.sort(key=lambda e: 0 if str(e.get("VALUE_TYPE", "")).upper() == "WORK" else 1)
    return [str(e["VALUE"]).strip() for e in values]


class Resolver:
    def __init__(self, call, client: B24Client | None = None):
        self.call = call
        self.props = call.properties
        self.client = client or B24Client(call.portal)
        self.entity = call.entity
        self.item: dict = {}
        self.reads: dict = {}

    def read_crm(self) -> None:
        """Everything from the CRM in one batch (plus one for contacts)."""
        props, calls, speculative = self.props, {}, {}
        if self.entity:
            calls["item"] = ("crm.item.get", {"entityTypeId": self.entity[0], "id": self.entity[1]})
            mode = props.get("signer_contacts")
            if mode in ("primary", "all"):
                # The contacts themselves in the same batch, through $result references (Bitrix24
                # resolves them server-side): one request fewer per call.  A reference past the end
                # fails inside the batch, and the batch halts there (halt=1, for the proof): so these
                # go last, and contact_signers() fetches whatever is still missing.
                if self.entity[0] == 2:
                    calls["contacts"] = ("crm.deal.contact.items.get", {"id": self.entity[1]})
                    ref = "$result[contacts][{}][CONTACT_ID]"
                else:
                    ref = "$result[item][item][contactIds][{}]"
                for i in range(1 if mode == "primary" else PREFETCH_CONTACTS):
                    speculative[f"contact{i}"] = ("crm.contact.get", {"id": ref.format(i)})
        source = props.get("document_source")
        if source == "disk" and props.get("document_id"):
            calls["disk"] = ("disk.file.get", {"id": props["document_id"]})
        elif source == "docgen" and props.get("document_id"):
            calls["docgen"] = ("crm.documentgenerator.document.get", {"id": props["document_id"]})
        users = [u for key in ("signer_users", "signers", "assignee", "reviewers", "editors", "responsible",
                               "notify_user")
                 for u in _as_list(props.get(key))]
        if users:
            calls["users"] = ("user.get", {"filter": {"ID": sorted(set(users))}})
        calls.update(speculative)
        result = proof.first_request(self.call, self.client, calls)
        for key, err in result.errors.items():
            if key in ("disk", "docgen") and err.get("error") == "ACCESS_DENIED":
                what = "Drive file" if key == "disk" else "generated document"
                raise InputError(f"the user this rule runs as cannot read the {what} {props.get('document_id')}")
            if key in ("item", "disk", "docgen"):
                raise InputError(f"cannot read {key}: {err.get('error_description') or err.get('error')}")
        self.reads = result.results
        item = self.reads.get("item") or {}
        self.item = item.get("item", item) if isinstance(item, dict) else {}

    # -- signers -----------------------------------------------------------------------------------
    def users(self) -> dict[int, dict]:
        return {int(u["ID"]): u for u in (self.reads.get("users") or []) if str(u.get("ID", "")).isdigit()}

    def user_signer(self, user_id: int, *, email_required: bool = True, **extra) -> Signer:
        user = self.users().get(int(user_id))
        if not user:
            raise InputError(f"employee user_{user_id} cannot be read (deleted, or not visible to the app)")
        email = str(user.get("EMAIL") or "").strip()
        if not email and email_required:
            raise InputError(f"employee user_{user_id} has no email address")
        name = " ".join(x for x in (user.get("NAME"), user.get("LAST_NAME")) if x)
        # KEDO identifies members by user id only; "user:<id>" is how its rows are named without an email.
        return Signer(email=email or f"user:{int(user_id)}", name=name, user_id=int(user_id),
                      phone=str(user.get("PERSONAL_MOBILE") or user.get("WORK_PHONE") or ""), **extra)

    def check_notify_user(self) -> None:
        """The user the robot names to hear the outcome must exist now: a notice to nobody would be lost
        silently, weeks later (read in the first batch with the signers)."""
        user_id = self.props.get("notify_user")
        if user_id and int(user_id) not in self.users():
            raise InputError(f"the user to notify, user_{user_id}, cannot be read (deleted, or not visible to "
                             "the app)")

    def contact_signers(self) -> list[Signer]:
        mode = self.props.get("signer_contacts")
        if mode not in ("primary", "all") or not self.entity:
            return []
        if self.entity[0] == 2:
            links = sorted(self.reads.get("contacts") or [],
                           key=lambda c: (str(c.get("IS_PRIMARY")) != "Y", int(c.get("SORT") or 0)))
            ids = [int(c["CONTACT_ID"]) for c in links if str(c.get("CONTACT_ID", "")).isdigit()]
        else:
            ids = [int(x) for x in _as_list(self.item.get("contactIds")) if str(x).isdigit()] or \
                ([int(self.item["contactId"])] if str(self.item.get("contactId") or "").isdigit()
                 and int(self.item["contactId"]) else [])
        if mode == "primary":
            ids = ids[:1]
        if not ids:
            raise InputError("the CRM item has no contact to sign")
        known = {}
        for key, value in self.reads.items():
            if key.startswith("contact") and key != "contacts" and isinstance(value, dict) \
                    and str(value.get("ID", "")).isdigit():
                known[int(value["ID"])] = value
        missing = [cid for cid in ids if cid not in known]
        if missing:
            fetched = self.client.batch({f"c{cid}": ("crm.contact.get", {"id": cid}) for cid in missing})
            known.update({cid: fetched.results.get(f"c{cid}") or {} for cid in missing})
        signers = []
        for cid in ids:
            contact = known.get(cid) or {}
            emails = _emails(contact.get("EMAIL"))
            if not emails:
                raise InputError(f"contact {cid} has no email address")
            phones = [str(p.get("VALUE")) for p in contact.get("PHONE") or [] if isinstance(p, dict)]
            name = " ".join(x for x in (contact.get("NAME"), contact.get("LAST_NAME")) if x)
            signers.append(Signer(email=emails[0], name=name, phone=phones[0] if phones else ""))
        return signers

    def signers(self, extra: list[Signer] = ()) -> list[Signer]:
        """``extra``: signers found elsewhere (bizproc_ext.signer_fields: the item's own fields), listed last."""
        props = self.props
        signers: list[Signer] = []
        for email in _as_list(props.get("signer_emails")):
            for part in re.split(r"[,;\s]+", str(email)):
                if part:
                    if not EMAIL.match(part):
                        raise InputError(f"{part!r} is not an email address")
                    signers.append(Signer(email=part))
        signers += [self.user_signer(u) for u in _as_list(props.get("signer_users"))]
        signers += self.contact_signers()
        signers += list(extra)
        unique, seen = [], set()
        for s in signers:
            if s.email.lower() not in seen:
                seen.add(s.email.lower())
                unique.append(s)
        if not unique:
            raise InputError("no signers: set emails, employees, contacts or signer fields in the robot's settings")
        parallel = props.get("signing_order") == "parallel"
        for i, s in enumerate(unique, start=1):
            s.order = 1 if parallel else i
        return unique

    def kedo_members(self) -> list[Signer]:
        props = self.props
        members = []
        for key, role in (("signers", "signer"), ("assignee", "assignee"), ("reviewers", "reviewer"),
                          ("editors", "editor")):
            members += [self.user_signer(u, email_required=False, kedo_role=role, role=role)
                        for u in _as_list(props.get(key))]
        return members

    # -- document ----------------------------------------------------------------------------------
    def title(self) -> str:
        return str(self.item.get("title") or self.item.get("TITLE") or "Document")

    def document_url(self) -> tuple[str, str, bool]:
        """(url, file name, is portal link).  Portal links carry their own auth and must not be logged."""
        props = self.props
        source = props.get("document_source") or "field"
        if source == "field":
            code = props.get("document_field")
            if not code:
                raise InputError("choose the CRM file field that holds the document")
            value = find_field(self.item, code)
            if isinstance(value, list):
                value = value[0] if value else None
            if not isinstance(value, dict) or not (value.get("urlMachine") or value.get("url")):
                raise InputError(f"the field {code} holds no file")
            return self._portal_link(str(value.get("urlMachine") or value["url"])), f"{self.title()}.pdf", True
        if source == "disk":
            info = self.reads.get("disk") or {}
            if not info.get("DOWNLOAD_URL"):
                raise InputError("the Drive file cannot be read")
            return self._portal_link(str(info["DOWNLOAD_URL"])), str(info.get("NAME") or "document.pdf"), True
        if source in ("docgen", "template"):  # template: bizproc_ext.sources put the generated one here
            doc = (self.reads.get("docgen") or {}).get("document") or self.reads.get("docgen") or {}
            url = doc.get("pdfUrlMachine") or doc.get("pdfUrl")
            if not url:
                # PDF conversion is asynchronous: a transient error, so the task retries shortly
                raise ProviderError("the generated document's PDF is not ready yet", code="docgen_pending",
                                    retry_after=20)
            return self._portal_link(str(url)), f"{doc.get('title') or self.title()}.pdf", True
        if source == "url":
            url = str(props.get("document_url") or "")
            scheme = urlsplit(url).scheme
            if scheme != "https" and not (settings.ALLOW_HTTP_PORTALS and scheme == "http"):
                raise InputError(f"{NOT_DOWNLOADED} (the link must be a public https:// address)")
            # The address is checked (and pinned) by http.fetch, once, right before it connects.
            return url, Path(urlsplit(url).path).name or "document.pdf", False
        raise InputError(f"unknown document source {source!r}")

    def _portal_link(self, url: str) -> str:
        """A file link Bitrix24 gave us: https on the portal's own host, or refused (it carries auth)."""
        endpoint = urlsplit(self.call.portal.client_endpoint)
        full = urljoin(f"{endpoint.scheme}://{endpoint.netloc}/", url)
        parts = urlsplit(full)
        secure = parts.scheme == "https" or (settings.ALLOW_HTTP_PORTALS and parts.scheme == "http")
        if not secure or parts.netloc.lower() != endpoint.netloc.lower():
            log.warning("robot call %s: file link not on the portal's host refused: %s", self.call.pk,
                        http.redact(full))
            raise InputError(f"{NOT_DOWNLOADED} (the file link is not on this portal)")
        return full

    def download(self, directory: str | None = None) -> DocumentFile:
        """Stream the document to a temporary file.  What goes back to the workflow never names a host,
        a port or a status (that would make the robot a port scanner): the details go to our log."""
        url, name, portal_link = self.document_url()
        if not name.lower().endswith(".pdf"):
            name = f"{name.rsplit('.', 1)[0]}.pdf"
        limit = settings.B24_DOCUMENT_MAX_BYTES
        headers = {"Accept": "application/pdf, */*", "Accept-Language": "en"}
        trusted = ""
        if portal_link:  # Bitrix24 file links want browser-like headers (spec §7.4)
            headers["Referer"] = f"{self.call.portal.base_url}/"
            trusted = urlsplit(self.call.portal.client_endpoint).netloc

        def refuse(reason: str, detail: str) -> InputError:
            log.info("robot call %s: download of %s failed: %s", self.call.pk, http.redact(url), detail)
            return InputError(reason if portal_link else NOT_DOWNLOADED)

        tmp = tempfile.NamedTemporaryFile(prefix="b24sign-", suffix=".pdf", delete=False, dir=directory)
        size = 0
        try:
            with http.fetch(url, headers=headers, timeout=(5, 120), trusted_netloc=trusted) as resp:
                if resp.status_code in (401, 403, 404) or 300 <= resp.status_code < 400:
                    raise refuse(NOT_DOWNLOADED, f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    log.info("robot call %s: download failed: HTTP %s", self.call.pk, resp.status_code)
                    raise ProviderError(NOT_DOWNLOADED, code="download")
                for chunk in resp.iter_content(chunk_size=256 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise refuse(f"the document is larger than {limit // (1024 * 1024)} MB", "too large")
                    tmp.write(chunk)
            tmp.close()
            with open(tmp.name, "rb") as fh:
                if not fh.read(5).startswith(b"%PDF-"):
                    raise refuse("the document is not a PDF", "not a PDF")
            if size == 0:
                raise refuse("the document is empty", "empty")
        except http.UnsafeURL as exc:
            Path(tmp.name).unlink(missing_ok=True)
            raise refuse(NOT_DOWNLOADED, f"refused: {exc}") from None
        except requests.RequestException as exc:
            Path(tmp.name).unlink(missing_ok=True)
            log.info("robot call %s: download failed: %s", self.call.pk, exc.__class__.__name__)
            raise ProviderError(NOT_DOWNLOADED, code="download") from exc
        except Exception:
            Path(tmp.name).unlink(missing_ok=True)
            raise
        return DocumentFile(name=name, path=Path(tmp.name), size=size)


def _as_list(value) -> list:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]


__all__ = ["Resolver", "InputError", "B24Error"]
