"""`flask --app wsgi users create-admin EMAIL [--password PASSWORD]`

The password is read from, in this order: `--password` (convenient in scripts, but it lands in
the shell history and the process list), the environment variable BOXOFFICE_ADMIN_PASSWORD
(for automation: a secret store or an orchestrator sets it), or a hidden prompt that asks twice.
"""
import click
from flask.cli import AppGroup

from models.errors import AlreadyExists
from models.users import Role
from services.accounts import register_user
from web.fields import unstorable_reason

users_cli = AppGroup("users", help="Manage user accounts.")

PASSWORD_ENV = "BOXOFFICE_ADMIN_PASSWORD"


@users_cli.command("create-admin")
@click.argument("email")
@click.option("--password", envvar=PASSWORD_ENV, show_envvar=True, prompt=True, hide_input=True,
              confirmation_prompt=True,
              help="The admin's password (at least 8 characters). Without it: the environment "
                   "variable, else a hidden prompt.")
@click.option("--name", default="Administrator", show_default=True)
def create_admin(email: str, password: str, name: str) -> None:
    """Create an admin account."""
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    for hint, value in (("EMAIL", email), ("--password", password), ("--name", name)):
        reason = unstorable_reason(value)  # e.g. bytes that are not UTF-8 in the shell's arguments
        if reason:
            raise click.BadParameter(reason, param_hint=hint)
    try:
        user = register_user(email, password, name, role=Role.ADMIN)
    except AlreadyExists as error:
        raise click.ClickException(error.message)
    click.echo(f"admin {user.email} created ({user.id})")
