"""The naive baseline for the end-to-end benchmark: one REST request per Bitrix24 method.

With ``B24SIGN_BENCH_NAIVE=1`` (bench worker processes only) every ``B24Client.batch`` runs its commands
as separate calls: the CRM reads (item, contact bindings, each contact), the progress line
(``bizproc.activity.log``) and the answer (``bizproc.event.send``) each cost one request, as a straight
"call each method" implementation would.  Results keep the batch's shape, so the pipeline is unchanged.
"""
from b24app.rest import B24Error
from b24app.rest.client import B24Client, BatchResult


def _one_by_one(self, calls, halt: bool = False, slot_taken: bool = False) -> BatchResult:
    items = list(calls.items()) if isinstance(calls, dict) else [(k, (m, p)) for k, m, p in calls]
    out = BatchResult()
    for i, (key, (method, params)) in enumerate(items):
        if "$result" in repr(params):  # a reference into another command: meaningless one call at a time
            out.errors[key] = {"error": "NOT_BATCHED", "error_description": "needs a batch"}
            continue
        try:
            if i == 0 and slot_taken:  # the caller already waited for this request's rate-limit slot
                self._require_admin_token([method])
                out.results[key] = self._send(method, params or {}, slot_taken=True).get("result")
            else:
                out.results[key] = self.call(method, params)
        except B24Error as exc:
            if exc.transient:
                raise
            out.errors[key] = {"error": exc.error, "error_description": exc.description}
            if halt:
                break
        out.requests += 1
    return out


def apply() -> None:
    B24Client.batch = _one_by_one
