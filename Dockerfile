FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# gunicorn's workers: (2 x cores) + 1 for 2 cores. A robot call waits on PostgreSQL's commit (fsync), so more sync
# workers than cores keep the CPU busy meanwhile (BENCHMARKS.md, handler). Override per machine.
ENV WEB_CONCURRENCY=5
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# PYTHONDONTWRITEBYTECODE keeps the image read-only: compile once here, or every worker compiles every module it imports
RUN python -m compileall -q /app
RUN useradd --create-home b24sign && mkdir -p /app/var /data && chown -R b24sign /app/var /data
USER b24sign
RUN DEBUG=1 python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--timeout", "30"]
