"""The robot catalogue: every automation rule b24sign offers, declared once.

``bizproc.robot.add`` / ``bizproc.robot.update`` payloads, the handler's property parsing and the
settings slider all derive from these declarations.  Bump ``CATALOGUE_VERSION`` when a robot changes
so portals re-register it (Settings -> Robots shows the version each portal has).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from signing.registry import all_providers

CATALOGUE_VERSION = 4  # 4: notify_user

# Where the robots are offered: deals, leads, smart processes and (smart) invoices.
CRM_DOCUMENT_TYPES = [
    ["crm", "CCrmDocumentDeal"],
    ["crm", "CCrmDocumentLead"],
    ["crm", "Bitrix\\Crm\\Integration\\BizProc\\Document\\Dynamic"],
    ["crm", "Bitrix\\Crm\\Integration\\BizProc\\Document\\SmartInvoice"],
]

T = dict[str, str]  # a localized text: {"en": ..., "ru": ..., "de": ...}


def t(en: str, ru: str, de: str) -> T:
    return {"en": en, "ru": ru, "de": de}


@dataclass(frozen=True)
class Prop:
    name: T
    type: str = "string"  # bool date datetime double int select string text user
    required: bool = False
    multiple: bool = False
    default: object = None
    options: dict[str, T] | None = None  # select: option key -> localized label
    description: T | None = None
    secret: bool = False  # sealed at rest in the call row, erased once sent (bizproc_ext.secrets)

    def payload(self, lang: str) -> dict:
        data: dict = {"Name": self.name, "Type": self.type,
                      "Required": "Y" if self.required else "N", "Multiple": "Y" if self.multiple else "N"}
        if self.description:
            data["Description"] = self.description
        if self.default is not None:
            data["Default"] = self.default
        if self.options:
            # Options take plain strings (no per-language objects): use the portal's language.
            data["Options"] = {k: label.get(lang) or label["en"] for k, label in self.options.items()}
        return data


@dataclass(frozen=True)
class Robot:
    code: str
    name: T
    description: T
    properties: dict[str, Prop]
    return_properties: dict[str, Prop]
    use_placement: bool = True
    # The workflow waits for our answer, and the call's event_token is what proves it (proof.py); a
    # call that arrives with use_subscription other than "Y" for such a robot is refused at the handler.
    use_subscription: bool = True

    def handler_url(self) -> str:
        return f"{settings.APP_BASE_URL}/bizproc/robots/{self.code}/"

    def placement_url(self) -> str:
        return f"{settings.APP_BASE_URL}/bizproc/settings/{self.code}/"

    def payload(self, lang: str = "en", auth_user_id: int | None = None) -> dict:
        """Fields for bizproc.robot.add (and FIELDS of bizproc.robot.update)."""
        data = {
            "CODE": self.code,
            "HANDLER": self.handler_url(),
            # Always explicit: the core waits only when USE_SUBSCRIPTION is exactly "Y" (spec §4.2).
            "USE_SUBSCRIPTION": "Y" if self.use_subscription else "N",
            "NAME": self.name,
            "DESCRIPTION": self.description,
            "RETURN_PROPERTIES": {k: p.payload(lang) for k, p in self.return_properties.items()},
            "FILTER": {"INCLUDE": CRM_DOCUMENT_TYPES},
            "USE_PLACEMENT": "Y" if self.use_placement else "N",
        }
        if self.properties:  # an empty PROPERTIES object is rejected: "Wrong property key (0)!"
            data["PROPERTIES"] = {k: p.payload(lang) for k, p in self.properties.items()}
        if self.use_placement:
            data["PLACEMENT_HANDLER"] = self.placement_url()
        if auth_user_id:
            data["AUTH_USER_ID"] = auth_user_id
        return data


# --- shared property blocks ------------------------------------------------------------------------
APP_DEFAULT = t("Empty: the default from b24sign's settings", "Пусто: значение из настроек b24sign",
                "Leer: Standardwert aus den b24sign-Einstellungen")
DOCUMENT_SOURCES = {
    "field": t("CRM file field", "Поле-файл CRM", "CRM-Dateifeld"),
    "disk": t("Bitrix24 Drive file", "Файл на Диске", "Datei auf Drive"),
    "docgen": t("Document generator document", "Документ из генератора", "Dokument aus dem Generator"),
    "url": t("Link (https)", "Ссылка (https)", "Link (https)"),
    "template": t("Document template (generated for the item)", "Шаблон документа (сформировать по элементу)",
                  "Dokumentvorlage (für das Element erstellt)"),
}

DOCUMENT_PROPS: dict[str, Prop] = {
    "document_source": Prop(t("Document source", "Источник документа", "Dokumentquelle"), "select",
                            required=True, default="field", options=DOCUMENT_SOURCES),
    "document_field": Prop(t("File field", "Поле с файлом", "Dateifeld"),
                           description=t("Code of the CRM file field, e.g. UF_CRM_CONTRACT",
                                         "Код поля-файла CRM, например UF_CRM_CONTRACT",
                                         "Code des CRM-Dateifelds, z. B. UF_CRM_CONTRACT")),
    "document_id": Prop(t("Drive file or generated document ID", "ID файла на Диске или документа",
                          "ID der Drive-Datei oder des Dokuments"), "string"),
    "document_url": Prop(t("Document link", "Ссылка на документ", "Dokument-Link")),
    "template_id": Prop(t("Document template", "Шаблон документа", "Dokumentvorlage"),
                        description=t("ID of the document generator template", "ID шаблона генератора документов",
                                      "ID der Vorlage des Dokumentgenerators")),
    "template_values": Prop(t("Template: extra values", "Шаблон: дополнительные значения",
                              "Vorlage: zusätzliche Werte"), "text",
                            description=t("Name=value, one per line", "Имя=значение, по одному в строке",
                                          "Name=Wert, einer pro Zeile")),
}

RESULT_PROPS: dict[str, Prop] = {
    "request_id": Prop(t("Signature request ID", "ID запроса на подпись", "ID der Signaturanfrage")),
    "status": Prop(t("Status", "Статус", "Status")),
    "signers_status": Prop(t("Signers' status", "Статус подписантов", "Status der Unterzeichner"), "text"),
    "signed_file_url": Prop(t("Signed document link", "Ссылка на подписанный документ",
                              "Link zum signierten Dokument")),
    "error": Prop(t("Error", "Ошибка", "Fehler"), "text"),
}

# No double sends at business level (bizproc_ext/duplicates.py).
IF_OPEN_EXISTS_PROP = Prop(
    t("If an open request exists for this item (same document)",
      "Если по элементу уже есть незавершённый запрос (тот же документ)",
      "Wenn für das Element eine offene Anfrage besteht (gleiches Dokument)"),
    "select", default="return",
    options={"return": t("Return it, send nothing", "Вернуть его, ничего не отправлять",
                         "Diese zurückgeben, nichts senden"),
             "replace": t("Cancel it and send again", "Отменить его и отправить заново",
                          "Stornieren und neu senden"),
             "another": t("Send another one", "Отправить ещё один", "Eine weitere senden")})
OPEN_REQUEST_RESULT = Prop(t("Open request found", "Найден незавершённый запрос", "Offene Anfrage gefunden"),
                           description=t("none, returned, replaced or another",
                                         "none, returned, replaced или another",
                                         "none, returned, replaced oder another"))

# Provider templates with role mapping and prefill (bizproc_ext/roles.py); signNow only for now.
PROVIDER_TEMPLATE_PROPS: dict[str, Prop] = {
    "provider_template_id": Prop(
        t("Provider template (instead of the document)", "Шаблон сервиса подписи (вместо документа)",
          "Vorlage des Anbieters (statt des Dokuments)"),
        description=t("signNow template ID from the connected account", "ID шаблона signNow из подключённого "
                      "аккаунта", "ID der signNow-Vorlage aus dem verbundenen Konto")),
    "template_roles": Prop(
        t("Template roles", "Роли шаблона", "Rollen der Vorlage"), "text",
        description=t("Role=source per line: primary_contact, all_contacts, company_contact, user_N, email:…, "
                      "field:CODE", "Роль=источник в строке: primary_contact, all_contacts, company_contact, "
                      "user_N, email:…, field:КОД", "Rolle=Quelle pro Zeile: primary_contact, all_contacts, "
                      "company_contact, user_N, email:…, field:CODE")),
    "prefill_fields": Prop(
        t("Prefill template fields", "Заполнить поля шаблона", "Vorlagenfelder vorbelegen"), "text",
        description=t("template field=CRM field per line", "поле шаблона=поле CRM в строке",
                      "Vorlagenfeld=CRM-Feld pro Zeile")),
    "text_tags": Prop(
        t("The PDF has text tags ({{t:s;r:y;o:\"Signer 1\";}})",
          "В PDF есть текстовые теги ({{t:s;r:y;o:\"Signer 1\";}})",
          "Das PDF hat Text-Tags ({{t:s;r:y;o:\"Signer 1\";}})"), "bool", default="N"),
}

# Who hears the outcome (crmcard's notification); "user_N" like every user property (parsing.parse_user).
NOTIFY_USER_PROP = Prop(
    t("Notify this user", "Уведомить этого пользователя", "Diesen Benutzer benachrichtigen"), "user",
    description=t("When the request is signed, declined, expired or failed. Empty: the item's responsible",
                  "Когда документ подписан, отклонён, истёк или не подписан. Пусто: ответственный за элемент",
                  "Wenn signiert, abgelehnt, abgelaufen oder fehlgeschlagen. Leer: der Verantwortliche"))
WAIT_PROP = Prop(t("Wait until the signing ends", "Ждать завершения подписания", "Bis zum Ende der Signatur warten"),
                 "bool", default="Y")
REQUEST_ID_PROP = Prop(t("Signature request ID", "ID запроса на подпись", "ID der Signaturanfrage"),
                       required=True)


def _provider_options() -> dict[str, T]:
    options = {"default": t("Default provider (app settings)", "Провайдер по умолчанию (настройки)",
                            "Standardanbieter (Einstellungen)")}
    for p in all_providers().values():
        if p.via_robot == "send":
            options[p.code] = {"en": p.label, "ru": p.label, "de": p.label}
    return options


def _send_robot() -> Robot:
    return Robot(
        code="b24sign_send",
        name=t("Send for e-signature", "Отправить на электронную подпись", "Zur E-Signatur senden"),
        description=t("Sends a document from the CRM item to the signers through the connected e-signature "
                      "provider and returns the outcome.",
                      "Отправляет документ из элемента CRM подписантам через подключённый сервис "
                      "электронной подписи и возвращает результат.",
                      "Sendet ein Dokument aus dem CRM-Element über den verbundenen E-Signatur-Anbieter an "
                      "die Unterzeichner und gibt das Ergebnis zurück."),
        properties={
            "provider": Prop(t("Provider", "Провайдер", "Anbieter"), "select", default="default",
                             options=_provider_options()),
            **DOCUMENT_PROPS,
            "signer_emails": Prop(t("Signers: emails", "Подписанты: e-mail", "Unterzeichner: E-Mails"),
                                  multiple=True),
            "signer_users": Prop(t("Signers: employees", "Подписанты: сотрудники", "Unterzeichner: Mitarbeiter"),
                                 "user", multiple=True),
            "signer_contacts": Prop(t("Signers: the item's contacts", "Подписанты: контакты элемента",
                                      "Unterzeichner: Kontakte des Elements"), "select", default="none",
                                    options={"none": t("None", "Нет", "Keine"),
                                             "primary": t("Primary contact", "Основной контакт", "Hauptkontakt"),
                                             "all": t("All contacts", "Все контакты", "Alle Kontakte")}),
            "signer_fields": Prop(t("Signers: the item's fields", "Подписанты: поля элемента",
                                    "Unterzeichner: Felder des Elements"), multiple=True,
                                  description=t("user:FIELD, contact:FIELD or email:FIELD (employee, contact or "
                                                "e-mail fields of the item)",
                                                "user:ПОЛЕ, contact:ПОЛЕ или email:ПОЛЕ (поля-сотрудники, контакты "
                                                "или e-mail элемента)",
                                                "user:FELD, contact:FELD oder email:FELD (Mitarbeiter-, Kontakt- "
                                                "oder E-Mail-Felder)")),
            "signing_order": Prop(t("Signing order", "Порядок подписания", "Reihenfolge"), "select",
                                  default="sequential",
                                  options={"sequential": t("One after another", "По очереди", "Nacheinander"),
                                           "parallel": t("All at once", "Одновременно", "Alle gleichzeitig")}),
            "cc_emails": Prop(t("Copy to (emails)", "Копия (e-mail)", "Kopie an (E-Mails)"), multiple=True),
            "subject": Prop(t("Email subject", "Тема письма", "Betreff")),
            "message": Prop(t("Message to signers", "Сообщение подписантам", "Nachricht an Unterzeichner"), "text"),
            # No defaults here: empty means "the portal's defaults" (b24sign settings page).
            "expiry_days": Prop(t("Expires after (days)", "Срок действия (дней)", "Ablauf nach (Tagen)"), "int",
                                description=APP_DEFAULT),
            "reminder_days": Prop(t("Remind every (days)", "Напоминать каждые (дней)", "Erinnern alle (Tage)"),
                                  "int", description=APP_DEFAULT),
            "signer_auth": Prop(t("Signer authentication", "Проверка подписанта", "Authentifizierung"), "select",
                                default="none",
                                options={"none": t("None", "Нет", "Keine"),
                                         "password": t("Password / access code", "Пароль / код доступа",
                                                       "Passwort / Zugangscode"),
                                         "sms": t("SMS code", "Код по SMS", "SMS-Code"),
                                         "email_otp": t("Email code", "Код по e-mail", "E-Mail-Code")}),
            "signer_auth_secret": Prop(t("Password / access code", "Пароль / код доступа",
                                         "Passwort / Zugangscode"), secret=True),
            **PROVIDER_TEMPLATE_PROPS,
            "extra_documents": Prop(t("More documents in the same request", "Ещё документы в том же запросе",
                                      "Weitere Dokumente in derselben Anfrage"), multiple=True,
                                    description=t("field:CODE, disk:ID or docgen:ID; up to 10 documents in all "
                                                  "(signNow document group)",
                                                  "field:КОД, disk:ID или docgen:ID; всего до 10 документов "
                                                  "(группа документов signNow)",
                                                  "field:CODE, disk:ID oder docgen:ID; bis zu 10 Dokumente "
                                                  "(signNow-Dokumentgruppe)")),
            "delivery": Prop(t("How signers get the document", "Как подписанты получат документ",
                               "Wie Unterzeichner das Dokument erhalten"), "select", default="email",
                             options={"email": t("E-mail from the provider", "Письмо от сервиса подписи",
                                                 "E-Mail vom Anbieter"),
                                      "link": t("I send the link myself (signing_links)",
                                                "Я отправлю ссылку сам (signing_links)",
                                                "Ich sende den Link selbst (signing_links)")}),
            "if_open_exists": IF_OPEN_EXISTS_PROP,
            "notify_user": NOTIFY_USER_PROP,
            "wait": WAIT_PROP,
        },
        return_properties={**RESULT_PROPS, "open_request": OPEN_REQUEST_RESULT,
                           "signing_links": Prop(t("Signing links", "Ссылки для подписания", "Signatur-Links"),
                                                 "text", description=t("email: link, one per line; they expire",
                                                                       "e-mail: ссылка, по строке; истекают",
                                                                       "E-Mail: Link pro Zeile; sie laufen ab"))},
    )


def _kedo_robot() -> Robot:
    return Robot(
        code="b24sign_kedo_send",
        name=t("Send HR document via Bitrix24 Sign", "Отправить кадровый документ через Подпись Битрикс24",
               "HR-Dokument über Bitrix24 Sign senden"),
        description=t("Sends a PDF to employees for signing with Bitrix24 Sign for HR documents (KEDO).",
                      "Отправляет PDF сотрудникам на подпись через КЭДО Битрикс24.",
                      "Sendet ein PDF zur Unterschrift an Mitarbeiter über Bitrix24 Sign für HR-Dokumente."),
        properties={
            **DOCUMENT_PROPS,
            "title": Prop(t("Document title", "Название документа", "Dokumenttitel")),
            "signers": Prop(t("Employees who sign", "Сотрудники-подписанты", "Unterzeichnende Mitarbeiter"),
                            "user", required=True, multiple=True),
            "assignee": Prop(t("Company signer", "Подписант от компании", "Unterzeichner der Firma"), "user",
                             required=True),
            # Bitrix24 Sign keeps one member per role besides signers (the last one sent): single values.
            # The keys keep their old plural names so saved rules still carry their value.
            "reviewers": Prop(t("Reviewer", "Согласующий", "Prüfer"), "user"),
            "editors": Prop(t("Editor", "Редактор", "Bearbeiter"), "user"),
            "responsible": Prop(t("Responsible", "Ответственный", "Verantwortlich"), "user"),
            "company_id": Prop(t("Company (my company ID)", "Компания (ID моей компании)", "Firma (ID)"), "int"),
            "provider_uid": Prop(t("Signing provider UID", "UID провайдера подписи", "UID des Signaturanbieters")),
            "region_document_type": Prop(t("Document type code", "Код типа документа", "Dokumenttyp-Code"),
                                         default="12.999"),
            "notify_user": NOTIFY_USER_PROP,
            "wait": WAIT_PROP,
        },
        return_properties=RESULT_PROPS,
    )


def _by_id_robot(code: str, name: T, description: T, extra: dict[str, Prop] | None = None,
                 returns: tuple[str, ...] = ("status", "signers_status", "signed_file_url", "error")) -> Robot:
    return Robot(code=code, name=name, description=description,
                 properties={"request_id": REQUEST_ID_PROP, **(extra or {})},
                 return_properties={k: RESULT_PROPS[k] for k in returns}, use_placement=False)


def catalogue() -> dict[str, Robot]:
    """Every robot, by CODE.  Built once per provider set (the send robot's provider options depend on
    settings); the robot handler looks it up on every call."""
    extra = getattr(settings, "SIGNING_EXTRA_PROVIDERS", {}) or {}
    return _catalogue(tuple(sorted((k, tuple(v)) for k, v in extra.items())))


@lru_cache(maxsize=8)
def _catalogue(extra_providers: tuple) -> dict[str, Robot]:
    robots = [
        _send_robot(),
        _kedo_robot(),
        _by_id_robot("b24sign_status", t("Get signature status", "Получить статус подписания",
                                         "Signaturstatus abrufen"),
                     t("Returns the current status of a signature request.",
                       "Возвращает текущий статус запроса на подпись.",
                       "Gibt den aktuellen Status einer Signaturanfrage zurück.")),
        _by_id_robot("b24sign_remind", t("Remind signers", "Напомнить подписантам", "Unterzeichner erinnern"),
                     t("Sends a reminder to everyone who has not signed yet.",
                       "Отправляет напоминание всем, кто ещё не подписал.",
                       "Erinnert alle, die noch nicht unterschrieben haben."),
                     returns=("status", "error")),
        _by_id_robot("b24sign_cancel", t("Cancel signature request", "Отменить запрос на подпись",
                                         "Signaturanfrage stornieren"),
                     t("Cancels a signature request that is still open.",
                       "Отменяет незавершённый запрос на подпись.",
                       "Storniert eine noch offene Signaturanfrage."),
                     extra={"reason": Prop(t("Reason", "Причина", "Grund"), "text")},
                     returns=("status", "error")),
    ]
    return {r.code: r for r in robots}
