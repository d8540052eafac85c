"""The one exception every Bitrix24 call raises, carrying Bitrix24's own error code and text."""
from __future__ import annotations

# Codes after which a retry of the same call cannot help (spec §2.5, b24jssdk "hard" codes).
PERMANENT = {
    "NO_AUTH_FOUND", "ACCESS_DENIED", "insufficient_scope", "INVALID_CREDENTIALS", "user_access_error",
    "WRONG_AUTH_TYPE", "OVERLOAD_LIMIT", "PORTAL_DELETED", "method_confirm_waiting", "invalid_grant",
    "invalid_client", "PAYMENT_REQUIRED", "NOT_INSTALLED", "ERROR_METHOD_NOT_FOUND", "BAD_REQUEST",
    "ERROR_ACTIVITY_VALIDATION_FAILURE", "ERROR_WRONG_HANDLER_URL", "ERROR_UNSUPPORTED_PROTOCOL",
    "ERROR_BATCH_LENGTH_EXCEEDED", "ERROR_BATCH_METHOD_NOT_ALLOWED", "ERROR_EMPTY_LOG_MESSAGE",
    "ERROR_ACTIVITY_NOT_FOUND", "ERROR_ACTIVITY_ALREADY_INSTALLED", "NOT_FOUND", "WORKFLOW_NOT_FOUND",
}


# Many core RestExceptions carry no code: ``{"error": "", "error_description": "Document not found."}``
# (HTTP 400).  Such answers are named by their method and text; the first matching pattern wins.
EMPTY_CODE_RULES = (
    ("bizproc.", ("бизнес-процесс не найден", "workflow not found", "workflow is not found"), "WORKFLOW_NOT_FOUND"),
    ("", ("not found", "не найден"), "NOT_FOUND"),
    ("", ("access denied", "доступ запрещен"), "ACCESS_DENIED"),
)


def classify_empty_code(method: str, description: str, status: int | None) -> str:
    """A code for an error answer whose ``error`` is empty: by method and text, else ``HTTP_<status>``."""
    text = (description or "").lower()
    for prefix, needles, code in EMPTY_CODE_RULES:
        if method.startswith(prefix) and any(n in text for n in needles):
            return code
    if method.startswith("sign.b2e.") and status == 400:
        return "BAD_REQUEST"  # sign's request validation: the same call fails again
    return f"HTTP_{status}" if status else "ERROR"


class B24Error(Exception):
    """A Bitrix24 REST or OAuth error.

    ``error`` and ``description`` are Bitrix24's ``error`` / ``error_description``; ``retry_after`` is set
    when waiting (rate limit, operating budget) is the cure, so Celery tasks can retry with a countdown.
    """

    def __init__(self, error: str, description: str = "", *, status: int | None = None,
                 method: str = "", retry_after: float | None = None):
        self.error = error
        self.description = description
        self.status = status
        self.method = method
        self.retry_after = retry_after
        super().__init__(f"{method + ': ' if method else ''}{error}: {description}".rstrip(": "))

    @property
    def permanent(self) -> bool:
        return self.error in PERMANENT

    @property
    def transient(self) -> bool:
        return not self.permanent


class NeedsReinstall(B24Error):
    """The portal's refresh token was rejected: an admin must open the app again."""
