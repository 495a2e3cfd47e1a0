"""`flask --app wsgi users create-admin EMAIL [--password PASSWORD]`
`flask --app wsgi users create-staff EMAIL [--password PASSWORD]` (door staff, SPEC §10)
`flask --app wsgi shows rotate-checkin-key SHOW_ID` (SPEC §10; also POST /shows/{id}/checkin-key/rotate)

The password is read from, in this order: `--password` (convenient in scripts, but it lands in
the shell history and the process list), the environment variable BOXOFFICE_ADMIN_PASSWORD
(BOXOFFICE_STAFF_PASSWORD for staff; for automation: a secret store or an orchestrator sets it),
or a hidden prompt that asks twice.
"""
import click
from flask.cli import AppGroup

from models.errors import AlreadyExists, NotFound
from models.users import Role
from services.accounts import register_user
from services.checkin_keys import rotate_key
from web.fields import unstorable_reason

users_cli = AppGroup("users", help="Manage user accounts.")
shows_cli = AppGroup("shows", help="Manage shows.")

PASSWORD_ENV = "BOXOFFICE_ADMIN_PASSWORD"
STAFF_PASSWORD_ENV = "BOXOFFICE_STAFF_PASSWORD"


def _password_option(envvar: str, who: str):
    return click.option("--password", envvar=envvar, show_envvar=True, prompt=True, hide_input=True,
                        confirmation_prompt=True,
                        help=f"The {who}'s password (at least 8 characters). Without it: the environment "
                             "variable, else a hidden prompt.")


def _create(role: Role, email: str, password: str, name: str) -> None:
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    for hint, value in (("EMAIL", email), ("--password", password), ("--name", name)):
        reason = unstorable_reason(value)  # e.g. bytes that are not UTF-8 in the shell's arguments
        if reason:
            raise click.BadParameter(reason, param_hint=hint)
    try:
        user = register_user(email, password, name, role=role)
    except AlreadyExists as error:
        raise click.ClickException(error.message)
    click.echo(f"{role} {user.email} created ({user.id})")


@users_cli.command("create-admin")
@click.argument("email")
@_password_option(PASSWORD_ENV, "admin")
@click.option("--name", default="Administrator", show_default=True)
def create_admin(email: str, password: str, name: str) -> None:
    """Create an admin account."""
    _create(Role.ADMIN, email, password, name)


@users_cli.command("create-staff")
@click.argument("email")
@_password_option(STAFF_PASSWORD_ENV, "door staff member")
@click.option("--name", default="Door staff", show_default=True)
def create_staff(email: str, password: str, name: str) -> None:
    """Create a door staff account: it may check tickets in, nothing else."""
    _create(Role.STAFF, email, password, name)


@shows_cli.command("rotate-checkin-key")
@click.argument("show_id")
def rotate_checkin_key(show_id: str) -> None:
    """Retire the show's ticket signing key for a new one (tickets issued before still verify)."""
    try:
        document = rotate_key(show_id)
    except NotFound as error:
        raise click.ClickException(error.message)
    click.echo(f"show {show_id}: new signing key {document['jwk']['kid']}; "
               f"{len(document['keys'])} keys verify its tickets")
