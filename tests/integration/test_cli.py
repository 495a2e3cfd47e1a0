"""The admin CLI: the password from --password, from BOXOFFICE_ADMIN_PASSWORD, or from a hidden
prompt that asks twice; never echoed, never required on the command line."""
import os
import secrets
import subprocess

import pytest

from tests.processes import BIN, ROOT
PASSWORD_ENV = "BOXOFFICE_ADMIN_PASSWORD"  # the documented name (README), not imported: it is the interface


def _email() -> str:
    return f"cli-{secrets.token_hex(5)}@example.com"


def _token_role(app, email: str, password: str):
    from flask_jwt_extended import decode_token
    response = app.test_client().post("/auth/token", json={"email": email, "password": password})
    if response.status_code != 200:
        return None
    with app.app_context():
        return decode_token(response.json["access_token"])["role"]


@pytest.fixture
def cli(app):
    return app.test_cli_runner()


def test_the_password_is_read_from_a_hidden_prompt_asked_twice(app, cli):
    email, password = _email(), "prompted-password"
    result = cli.invoke(args=["users", "create-admin", email], input=f"{password}\n{password}\n")
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert password not in result.output
    assert _token_role(app, email, password) == "admin"


def test_a_prompt_whose_two_answers_differ_creates_nothing(app, cli):
    email = _email()
    result = cli.invoke(args=["users", "create-admin", email], input="first-password\nother-password\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert _token_role(app, email, "first-password") is None


def test_the_password_is_read_from_the_environment(app, cli):
    email, password = _email(), "env-password-1"
    result = cli.invoke(args=["users", "create-admin", email], env={PASSWORD_ENV: password})
    assert result.exit_code == 0, result.output
    assert "Password:" not in result.output
    assert _token_role(app, email, password) == "admin"


def test_the_password_option_still_wins(app, cli):
    email = _email()
    result = cli.invoke(args=["users", "create-admin", email, "--password", "option-password"],
                        env={PASSWORD_ENV: "env-password-2"})
    assert result.exit_code == 0, result.output
    assert _token_role(app, email, "option-password") == "admin"
    assert _token_role(app, email, "env-password-2") is None


@pytest.mark.parametrize("password, reason, source", [
    ("short", "at least 8", "env"),
    ("pass\udcffword", "surrogate", "env"),  # a byte that is not UTF-8, as the OS hands it over
    ("pass\x00word", "NUL", "prompt"),  # the environment cannot carry a NUL; a prompt can
])
def test_an_unusable_password_is_refused_and_creates_nothing(app, cli, password, reason, source):
    email = _email()
    given = {"env": {PASSWORD_ENV: password}} if source == "env" else {"input": f"{password}\n{password}\n"}
    result = cli.invoke(args=["users", "create-admin", email], **given)
    assert result.exit_code == 2 and reason in result.output, result.output
    from models import db
    from models.users import User
    with app.app_context():
        assert db.session.query(User).filter_by(email=email).count() == 0
        db.session.rollback()


def test_the_real_command_reads_the_environment_variable(app):
    """`flask --app wsgi users create-admin EMAIL` as an operator runs it, no password in argv."""
    email, password = _email(), "subprocess-password"
    env = {**os.environ, "PYTHONPATH": str(ROOT), PASSWORD_ENV: password}
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "users", "create-admin", email],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert password not in result.stdout + result.stderr
    assert _token_role(app, email, password) == "admin"


def test_create_staff_makes_a_door_staff_account_from_the_option_or_its_own_environment_variable(app, cli):
    email = _email()
    result = cli.invoke(args=["users", "create-staff", email, "--password", "gate-password"])
    assert result.exit_code == 0, result.output
    assert _token_role(app, email, "gate-password") == "staff"
    email = _email()
    result = cli.invoke(args=["users", "create-staff", email], env={"BOXOFFICE_STAFF_PASSWORD": "gate-password-2",
                                                                   PASSWORD_ENV: "not-this-one"})
    assert result.exit_code == 0, result.output
    assert _token_role(app, email, "gate-password-2") == "staff"
    short = cli.invoke(args=["users", "create-staff", _email(), "--password", "short"])
    assert short.exit_code != 0 and "at least 8" in short.output
