"""Marshmallow fields shared by the blueprints' schemas, and what a stored string may contain."""
import re

from marshmallow import ValidationError, fields

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable_reason(text: str) -> str | None:
    """Why PostgreSQL, the JSON log or a response could not take this string; None if they can.

    A NUL character is refused by PostgreSQL in text; a lone surrogate (`"\\ud800"` in JSON) has no
    UTF-8 encoding at all.
    """
    if "\x00" in text:
        return "must not contain NUL characters"
    if _LONE_SURROGATE.search(text):
        return "must not contain lone surrogates (it is not valid Unicode text)"
    return None


class Text(fields.String):
    """A string PostgreSQL can store: NUL characters and lone surrogates are refused (422), not a
    500 at INSERT. (The request parser, web/parsing.py, refuses them in every JSON body too;
    this field keeps the rule for headers and for schemas loaded from elsewhere.)"""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        reason = unstorable_reason(text)
        if reason:
            raise ValidationError(reason)
        return text
