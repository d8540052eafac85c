"""Cross-process coordination: named locks and leaky-bucket rate limits.

Web processes and Celery workers share these.  With ``REDIS_URL`` set they live in Redis (one Lua
script per bucket take, locks released only by their owner).  Without it (``make run`` on a laptop)
they live in files under ``COORDINATION_DIR``, guarded by ``flock``: correct across processes on one
machine, which is all the embedded mode promises.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from functools import lru_cache
from pathlib import Path

from django.conf import settings


class LockTimeout(Exception):
    """Another process held the lock for longer than we were willing to wait."""


_TAKE_LUA = """
local burst = tonumber(ARGV[1])
local drain = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
level = math.max(0, level - (now - ts) * drain / 1000.0)
if level + 1 <= burst then
  level = level + 1
  redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / drain * 1000) + 1000)
  return 0
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
return math.ceil((level + 1 - burst) / drain * 1000)
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBackend:
    def __init__(self, url: str):
        import redis  # noqa: PLC0415  (optional here: `make run` uses file locks and needs no Redis client)

        self.redis = redis.Redis.from_url(url)
        self._take = self.redis.register_script(_TAKE_LUA)
        self._release = self.redis.register_script(_RELEASE_LUA)

    def take(self, key: str, burst: float, drain: float) -> float:
        now_ms = int(time.time() * 1000)
        return self._take(keys=[f"b24sign:bucket:{key}"], args=[burst, drain, now_ms]) / 1000.0

    @contextlib.contextmanager
    def lock(self, name: str, ttl: float, wait: float):
        key, owner = f"b24sign:lock:{name}", uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while not self.redis.set(key, owner, nx=True, px=int(ttl * 1000)):
            if time.monotonic() >= deadline:
                raise LockTimeout(name)
            time.sleep(0.02)
        try:
            yield
        finally:
            self._release(keys=[key], args=[owner])

    def get(self, key: str):
        raw = self.redis.get(f"b24sign:kv:{key}")
        return json.loads(raw) if raw else None

    def set(self, key: str, value, ttl: float) -> None:
        self.redis.set(f"b24sign:kv:{key}", json.dumps(value), px=max(1, int(ttl * 1000)))


class FileBackend:
    def __init__(self, directory: str):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, key: str) -> Path:
        return self.dir / f"{kind}-{hashlib.sha1(key.encode()).hexdigest()}"

    @contextlib.contextmanager
    def _flock(self, path: Path, wait: float | None = None):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + (wait if wait is not None else 1e9)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(str(path))
                    time.sleep(0.02)
            yield fd
        finally:
            os.close(fd)  # closing drops the flock

    def take(self, key: str, burst: float, drain: float) -> float:
        with self._flock(self._path("bucket", key)) as fd:
            raw = os.pread(fd, 256, 0)
            now = time.time()
            level, ts = json.loads(raw) if raw else (0.0, now)
            level = max(0.0, level - (now - ts) * drain)
            wait = 0.0
            if level + 1 <= burst:
                level += 1
            else:
                wait = (level + 1 - burst) / drain
            data = json.dumps([level, now]).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return wait

    @contextlib.contextmanager
    def lock(self, name: str, ttl: float, wait: float):
        with self._flock(self._path("lock", name), wait):
            yield

    def get(self, key: str):
        path = self._path("kv", key)
        try:
            value, expires = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return value if expires > time.time() else None

    def set(self, key: str, value, ttl: float) -> None:
        path = self._path("kv", key)
        tmp = path.with_suffix(".tmp" + uuid.uuid4().hex[:6])
        tmp.write_text(json.dumps([value, time.time() + ttl]))
        tmp.replace(path)


@lru_cache(maxsize=2)
def _backend(redis_url: str, directory: str):
    return RedisBackend(redis_url) if redis_url else FileBackend(directory)


def backend() -> RedisBackend | FileBackend:
    return _backend(settings.REDIS_URL, settings.COORDINATION_DIR)


def lock(name: str, ttl: float = 30.0, wait: float = 30.0):
    """``with lock("refresh:42"):`` — exclusive across every web and worker process."""
    return backend().lock(name, ttl, wait)


def take(key: str, burst: float, drain: float) -> float:
    """Take one unit from the leaky bucket ``key``; returns 0, or the seconds to wait before trying again."""
    return backend().take(key, burst, drain)


def remember(key: str, value, ttl: float) -> None:
    backend().set(key, value, ttl)


def recall(key: str):
    return backend().get(key)
