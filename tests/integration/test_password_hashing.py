"""Password hashing under a login rush (issue 10, part 2): at most PASSWORD_HASH_CONCURRENCY
hashes at a time per process, counted inside the bounded section; hashes made with the old
parameters still verify and are replaced at the next login."""
import secrets
import threading

from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import select, update

from models.users import HASH_PARAMETERS


class CountingHasher:
    """Stands in for the real hasher inside the bound: counts the calls in progress, and holds
    each one until every thread has entered or a while has passed. Without a bound all threads
    meet inside; with one, no more than the bound ever do. The assertions are on counts only."""

    def __init__(self, real: PasswordHasher, threads: int):
        self.real, self.threads = real, threads
        self.lock = threading.Lock()
        self.active = self.peak = self.entered = 0
        self.everyone_in = threading.Event()

    def _counted(self, call):
        with self.lock:
            self.active += 1
            self.entered += 1
            self.peak = max(self.peak, self.active)
            if self.entered == self.threads:
                self.everyone_in.set()
        try:
            self.everyone_in.wait(0.3)  # only how long a bounded run takes depends on this
            return call()
        finally:
            with self.lock:
                self.active -= 1

    def verify(self, password_hash, password):
        return self._counted(lambda: self.real.verify(password_hash, password))

    def hash(self, password):
        return self._counted(lambda: self.real.hash(password))

    def check_needs_rehash(self, password_hash):
        return self.real.check_needs_rehash(password_hash)


def make_customer(app, password_hash: str | None = None) -> str:
    from models import db
    from models.users import User, register
    email = f"hash-{secrets.token_hex(6)}@example.com"
    with app.app_context():
        user = register(email, "password-1", "H")
        db.session.commit()
        if password_hash:
            db.session.execute(update(User).where(User.id == user.id).values(password_hash=password_hash))
            db.session.commit()
        db.session.remove()
    return email


def stored_hash(app, email: str) -> str:
    from models import db
    from models.users import User
    with app.app_context():
        value = db.session.scalar(select(User.password_hash).where(User.email == email))
        db.session.remove()
    return value


def test_many_logins_at_once_never_run_more_hashes_than_the_bound(app, monkeypatch):
    from models import db, users
    threads, bound = 12, 2
    emails = [make_customer(app) for _ in range(threads)]
    counting = CountingHasher(users._hasher.hasher, threads)
    monkeypatch.setattr(users, "_hasher", users.BoundedHasher(counting, bound))

    results, start = [None] * threads, threading.Barrier(threads)

    def login(index):
        with app.app_context():
            start.wait()
            user = users.authenticate(emails[index], "password-1")
            results[index] = user is not None
            db.session.remove()
    workers = [threading.Thread(target=login, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)

    assert results == [True] * threads
    assert counting.entered == threads  # every login verified its password inside the bound
    assert counting.peak == bound  # never more than the bound at once, and the bound was reached


def test_the_bound_comes_from_the_setting(app):
    from models import users
    assert users._hasher.concurrency == users.PASSWORD_HASH_CONCURRENCY >= 1
    import pytest
    with pytest.raises(ValueError):
        users.BoundedHasher(PasswordHasher(), 0)


def test_a_hash_with_the_old_parameters_verifies_and_is_rehashed_at_login(app, client):
    legacy = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)  # argon2-cffi's defaults
    email = make_customer(app, legacy.hash("password-1"))
    old = stored_hash(app, email)
    assert extract_parameters(old).memory_cost == 64 * 1024

    # A wrong password is refused and changes nothing.
    assert client.post("/auth/token", json={"email": email, "password": "wrong-password"}).status_code == 401
    assert stored_hash(app, email) == old

    response = client.post("/auth/token", json={"email": email, "password": "password-1"})
    assert response.status_code == 200, response.json
    new = stored_hash(app, email)
    assert new != old
    parameters = extract_parameters(new)
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (
        HASH_PARAMETERS["memory_cost"], HASH_PARAMETERS["time_cost"], HASH_PARAMETERS["parallelism"])
    assert PasswordHasher().verify(new, "password-1")  # the same password, with the new parameters

    # The new hash logs in too, and is left alone from then on.
    assert client.post("/auth/token", json={"email": email, "password": "password-1"}).status_code == 200
    assert stored_hash(app, email) == new
