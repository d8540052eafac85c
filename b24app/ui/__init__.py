"""The pages a portal shows in its app slider: dashboard, request detail and settings (see auth.py)."""
