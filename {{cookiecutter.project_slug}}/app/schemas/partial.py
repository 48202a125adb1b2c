"""The base of PATCH bodies: fields left out stay as they are, and `null` is refused."""

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["PartialUpdate"]


class PartialUpdate(BaseModel):
    """Declare each field as `X | None = None`; only the fields sent are validated."""

    model_config = ConfigDict(str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        # Defaults are not validated, so this sees only values the client sent.
        if value is None:
            raise ValueError("may be left out to keep it as it is, but not set to null")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, by name."""
        return self.model_dump(exclude_unset=True)
