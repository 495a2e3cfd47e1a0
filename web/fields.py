"""Marshmallow fields shared by the blueprints' schemas."""
from marshmallow import ValidationError, fields


class Text(fields.String):
    """A string PostgreSQL can store: NUL characters are refused (422), not a 500 at INSERT."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("must not contain NUL characters")
        return text
