"""Customers, admins and door staff, and how their passwords are kept."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import CheckConstraint, DateTime, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from models.database import db, new_id, utc_now
from models.errors import AlreadyExists

# Argon2id with OWASP's first recommendation (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
# The library's defaults (RFC 9106 "low memory": m=64 MiB, t=3, p=4) cost 64 MiB per hash, and
# gunicorn runs 2 workers x 8 threads in a pod limited to 512 Mi: a login rush measured 1.2 GiB
# (docs/benchmarks.md, "Logins"). Hashes made with the old parameters still verify (each hash
# carries its own) and are rehashed with these at the next successful login.
HASH_PARAMETERS = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}
# At most this many hashes or verifications at once per process, on as many threads of their
# own; the other logins wait for a slot. Memory: API workers x this x memory_cost on top of the
# processes' base RSS (about 100 MiB per worker). Default 1: in the pod (2 workers, 512 Mi) a
# 32-way login rush peaked at 263 MiB, and at 381 MiB while every login still verified an old
# 64 MiB hash and rehashed it; 2 slots gave no more logins/s (a hash is pure CPU, and the pod
# scales out on CPU) but 481 MiB during that migration, too near the limit.
# Own threads, not a semaphore around the request threads: glibc gives each thread its own
# malloc arena and keeps a freed 19 MiB block there (below its mmap threshold), so 8 request
# threads that ever hashed would hold 8 x 19 MiB for good (measured: 470 MiB peak with a
# semaphore of 2); N hashing threads hold at most N.
PASSWORD_HASH_CONCURRENCY = int(os.environ.get("PASSWORD_HASH_CONCURRENCY", "1"))


class BoundedHasher:
    """A PasswordHasher whose hash and verify run on `concurrency` threads of their own, so at
    most that many at a time in this process, whatever the number of request threads."""

    def __init__(self, hasher: PasswordHasher, concurrency: int):
        if concurrency < 1:
            raise ValueError("PASSWORD_HASH_CONCURRENCY must be at least 1")
        self.hasher, self.concurrency = hasher, concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # A forked child (a gunicorn worker of a preloaded app) has none of the parent's threads.
        os.register_at_fork(after_in_child=self._forget_pool)

    def _forget_pool(self) -> None:
        self._pool, self._pool_lock = None, threading.Lock()

    def _run(self, method: str, *args):
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="password-hash")
        return self._pool.submit(lambda: getattr(self.hasher, method)(*args)).result()

    def hash(self, password: str) -> str:
        return self._run("hash", password)

    def verify(self, password_hash: str, password: str) -> bool:
        return self._run("verify", password_hash, password)

    def check_needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)  # parses the hash: no memory, no slot


_hasher = BoundedHasher(PasswordHasher(**HASH_PARAMETERS), PASSWORD_HASH_CONCURRENCY)
# Verifying against this when the email is unknown keeps login time the same either way. Made
# on the importing thread: no hashing thread is started at import (before a fork).
_DUMMY_HASH = _hasher.hasher.hash("not-a-real-password")


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"
    STAFF = "staff"  # door staff: check tickets in (SPEC §10)


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('customer', 'admin', 'staff')", name="role_known"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.CUSTOMER)
    # The language of the customer's mail (SPEC §12): ko or en.
    locale: Mapped[str] = mapped_column(String(8), default="ko", server_default="ko")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def set_password(self, password: str) -> None:
        self.password_hash = _hasher.hash(password)

    def check_password(self, password: str) -> bool:
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerifyMismatchError, InvalidHashError):
            return False


def normalize_email(email: str) -> str:
    return email.strip().lower()


def register(email: str, password: str, name: str, role: Role = Role.CUSTOMER, locale: str = "ko") -> User:
    """Add a user to the session; the caller commits. Refuses an email already taken."""
    email = normalize_email(email)
    if db.session.scalar(select(User.id).where(User.email == email)):
        raise AlreadyExists("this email is already registered")
    user = User(email=email, name=name, role=role, locale=locale)
    user.set_password(password)
    db.session.add(user)
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password, or None. A hash made with other parameters than
    HASH_PARAMETERS is replaced by a new one (the caller commits)."""
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerifyMismatchError:
            pass
        return None
    if not user.check_password(password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.set_password(password)
    return user
