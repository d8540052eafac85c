"""The demo's second scene: a contract generated from a signNow template, two roles mapped to the deal's
people, one text field prefilled from the deal and visible in the signed PDF on the timeline."""
from __future__ import annotations

TEMPLATE_FIELDS = [{"type": "signature", "role": "Customer", "name": "customer_signature"},
                   {"type": "signature", "role": "Provider", "name": "provider_signature"},
                   {"type": "text", "role": "Provider", "name": "Amount"}]


def play(trace, procs, emu, signnow, wait_for, failed) -> None:
    from signing.models import SignatureRequest

    template_id = signnow.add_template("Service agreement", TEMPLATE_FIELDS)
    trace("scene 2", f"signNow template \"Service agreement\" ({template_id}): roles Customer, Provider; "
          "text field Amount")
    crm = emu.crm
    clara = crm.add_contact("Clara", "Client", emails=["clara@client.test"])
    deal = crm.add_deal("Service agreement with Client GmbH", contact_ids=[clara], opportunity=12500)
    props = {"provider": "default", "document_source": "field", "signer_contacts": "none", "wait": "Y",
             "provider_template_id": template_id, "template_roles": "Customer=primary_contact\nProvider=user_2",
             "prefill_fields": "Amount=OPPORTUNITY", "subject": "Please sign: service agreement"}
    wf = emu.start_robot("b24sign_send", document_id=("crm", "CCrmDocumentDeal", f"DEAL_{deal}"),
                         properties=props, user_id=2)
    trace("robot call", f"DEAL_{deal}: template roles Customer=primary_contact, Provider=user_2; "
          f"prefill Amount=OPPORTUNITY -> {wf.response_status}")
    req = wait_for("the worker to send the template", lambda: procs.check_alive() or SignatureRequest.objects.filter(
        entity_id=deal, send_phase="sent").first(), 45)
    wanted = ("/copy", "/prefill-texts", f"{req.external_id}/invite")
    calls = [f"{c['method']} {c['path']} -> {c['status']} {c.get('json') or ''}"[:110] for c in signnow.calls
             if c["path"].endswith(wanted)]
    trace("provider send", f"signNow document {req.external_id} made from the template", *calls)
    for email in ("clara@client.test", "maria@acme.test"):
        signnow.sign(req.external_id, email)
        trace("signer signs", email)
    wait_for("the second workflow's answer", lambda: procs.check_alive() or wf.answers, 45)
    comments = crm.comments_for("deal", deal)
    pdf = comments[0]["files"][0][1] if comments and comments[0]["files"] else b""
    visible = b"Amount: 12500" in pdf
    trace("timeline", f"signed PDF on DEAL_{deal} ({len(pdf)} bytes); prefilled \"Amount: 12500\" "
          f"{'is' if visible else 'is NOT'} in it", f"answer: status={wf.return_values.get('status')}")
    if wf.return_values.get("status") != "completed" or not visible:
        raise failed(f"scene 2: unexpected outcome {wf.return_values}, prefilled field visible={visible}")
