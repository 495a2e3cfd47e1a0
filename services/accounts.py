"""Accounts: register a customer (POST /auth/register) or an admin (the CLI), and log in
(POST /auth/token)."""
from __future__ import annotations

from models.users import Role, User, authenticate, register
from services.unit_of_work import UnitOfWork


def register_user(email: str, password: str, name: str, role: str = Role.CUSTOMER, locale: str = "ko") -> User:
    """AlreadyExists if the email is taken. `locale` is the language of the customer's mail."""
    with UnitOfWork() as uow:
        user = register(email, password, name, role=role, locale=locale)
        uow.commit()
    return user


def log_in(email: str, password: str) -> User | None:
    """The user these credentials name, or None. A hash made with old parameters is replaced."""
    with UnitOfWork() as uow:
        user = authenticate(email, password)
        uow.commit()
    return user
