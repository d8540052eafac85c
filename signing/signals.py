"""What the signing layer announces, for the layers above (automation, pages) to act on.

Receivers get ``request`` (a :class:`signing.models.SignatureRequest`).

- ``request_changed``: one state-machine step was taken (``old_status`` -> ``new_status``), inside the
  transaction that wrote it; receivers with outside effects defer them with ``transaction.on_commit``.
- ``request_sent``: the send is recorded (``external_id`` set, ``sent``), inside its transaction; callbacks
  that arrived while it ran are replayed after commit (``signing.receivers``).
- ``signers_changed``: a signer's state moved (viewed, signed, declined) without necessarily moving the request.
- ``request_ended``: the request is terminal and its outcome should be brought back into the CRM.  Sent
  again whenever a late webhook or poll sees it terminal; finalization is idempotent.
- ``account_broken``: a provider connection stopped working (``reason``: "auth" — token refresh refused or
  repeated 401s; "callbacks" — the webhook subscription could not be made).  Sent on every occurrence;
  receivers de-duplicate.  ``account_connected``: it works again (connected or reconnected in Settings).
- ``callbacks_lost``: the periodic check found a webhook subscription we had made gone at the provider
  (``lost_at``: when this loss was first seen, the same on every announcement of it; ``restored``: whether
  the check subscribed again; ``message``: why not).  Sent after the restore attempt; receivers de-duplicate
  by ``lost_at``.
- ``request_finished``: the outcome is in the CRM (signed copy attached, or it could not be); whoever
  waits for this request (a workflow) can be answered now.  May be sent more than once.
"""
from django.dispatch import Signal

request_changed = Signal()   # request, old_status, new_status
request_sent = Signal()      # request
signers_changed = Signal()   # request
request_ended = Signal()     # request
request_finished = Signal()  # request
account_broken = Signal()    # account, reason, message
account_connected = Signal()  # account
callbacks_lost = Signal()    # account, lost_at, restored, events, message
