"""signNow provider: provider.py (the Provider), invites.py, replace.py, documents.py, client.py (HTTP + tokens),
webhooks.py, errors.py."""
