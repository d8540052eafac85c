"""What the signing layer announces, for the layers above (automation, pages) to act on.

Receivers get ``request`` (a :class:`signing.models.SignatureRequest`).

- ``request_changed``: one state-machine step was taken (``old_status`` -> ``new_status``), inside the
  transaction that wrote it; receivers with outside effects defer them with ``transaction.on_commit``.
- ``signers_changed``: a signer's state moved (signed, declined) without necessarily moving the request.
- ``request_ended``: the request is terminal and its outcome should be brought back into the CRM.  Sent
  again whenever a late webhook or poll sees it terminal; finalization is idempotent.
- ``account_broken``: a provider connection stopped working (``reason``: "auth" — token refresh refused or
  repeated 401s; "callbacks" — the webhook subscription could not be made).  Sent on every occurrence;
  receivers de-duplicate.  ``account_connected``: it works again (connected or reconnected in Settings).
- ``request_finished``: the outcome is in the CRM (signed copy attached, or it could not be); whoever
  waits for this request (a workflow) can be answered now.  May be sent more than once.
"""
from django.dispatch import Signal

request_changed = Signal()   # request, old_status, new_status
signers_changed = Signal()   # request
request_ended = Signal()     # request
request_finished = Signal()  # request
account_broken = Signal()    # account, reason, message
account_connected = Signal()  # account
