import pytest


@pytest.mark.django_db
def test_health_check_answers_over_plain_http_even_with_ssl_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz/", HTTP_HOST="localhost").status_code == 200
    assert client.get("/b24/events/", HTTP_HOST="localhost").status_code == 301  # everything else goes https


def test_collected_static_files_are_served_without_debug(client, settings, tmp_path):
    (tmp_path / "b24sign").mkdir()
    (tmp_path / "b24sign" / "app.css").write_text("body{}")
    settings.STATIC_ROOT = str(tmp_path)
    response = client.get("/static/b24sign/app.css")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"body{}"
