"""signNow provider: client.py (HTTP + tokens), provider.py (the Provider), webhooks.py, errors.py."""
