from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"
    label = "b24sign_bench"

    def ready(self):
        import os

        if os.environ.get("B24SIGN_BENCH_NAIVE") == "1":
            from .naive import apply

            apply()
        if os.environ.get("B24SIGN_BENCH_BEFORE") == "1":
            from .before import apply as before

            before()
