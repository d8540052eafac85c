"""Re-encrypt every secret under the first key of FIELD_ENCRYPTION_KEYS (after prepending a new one)."""
from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from b24app.crypto import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt all encrypted fields with the current first key."

    def handle(self, *args, **options):
        total = 0
        for model in apps.get_models():
            fields = [f.name for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            with transaction.atomic():
                for row in model.objects.select_for_update().only("pk", *fields).iterator():
                    row.save(update_fields=fields)  # decrypts with any key, encrypts with the first
                    total += 1
        self.stdout.write(self.style.SUCCESS(f"re-encrypted {total} rows"))
