"""`flask --app wsgi users create-admin EMAIL --password PASSWORD`"""
import click
from flask.cli import AppGroup

from models import db
from models.errors import AlreadyExists
from models.users import Role, register

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create-admin")
@click.argument("email")
@click.option("--password", required=True, help="The admin's password (at least 8 characters).")
@click.option("--name", default="Administrator", show_default=True)
def create_admin(email: str, password: str, name: str) -> None:
    """Create an admin account."""
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    try:
        user = register(email, password, name, role=Role.ADMIN)
    except AlreadyExists as error:
        raise click.ClickException(error.message)
    db.session.commit()
    click.echo(f"admin {user.email} created ({user.id})")
