"""Storable: the check every string a request carries into the database must pass.

JSON and URLs allow strings that a column cannot hold, and a write the database
refuses would surface as a 500. `Storable` refuses them with a 422 while the request
is validated instead. PostgreSQL stores the NUL character (U+0000) in neither text
nor JSON, so it is refused on every backend; pydantic itself already refuses a lone
surrogate, which JSON's `\\ud800` can spell but UTF-8 cannot encode.

A column also holds a fixed number of characters, counted as it stores them. Give a
field its column's `max_length`; where the model normalises the value on the way in
(`info={NORMALIZE: ...}`), add `stored_length()` too, because normalising can make a
string longer: `"İ".lower()` is two characters.

Put both after the field's constraints, so that pydantic still applies those to the
string itself and shows them in the OpenAPI document:

    Title = Annotated[str, Field(max_length=200), Storable]
    Email = Annotated[str, Field(max_length=320), Storable, stored_length(320, canonical)]
"""

from collections.abc import Callable

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

__all__ = ["Storable", "stored_length"]


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain the NUL character (U+0000)")
    return value


Storable = AfterValidator(_refuse_nul)


def stored_length(max_length: int, normalize: Callable[[str], str]) -> AfterValidator:
    """A check that `normalize(value)`, the form the column stores, fits in `max_length`."""

    def fits(value: str) -> str:
        stored = len(normalize(value))
        if stored > max_length:
            raise PydanticCustomError(
                "stored_too_long",
                "must be at most {max_length} characters as stored, once normalised; "
                "this value becomes {stored}",
                {"max_length": max_length, "stored": stored},
            )
        return value

    return AfterValidator(fits)
