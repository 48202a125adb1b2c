"""The base of PATCH bodies: fields left out stay as they are, and `null` is refused."""

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["PartialUpdate"]


def _without_null(schema: dict[str, Any]) -> None:
    """The body's JSON schema as the API takes it: each field may be left out, but is
    never null, so neither `null` nor a default of null is offered."""
    for field in schema.get("properties", {}).values():
        field.pop("default", None)
        options = [option for option in field.pop("anyOf", []) if option != {"type": "null"}]
        if len(options) == 1:
            field.update(options[0])
        elif options:
            field["anyOf"] = options


class PartialUpdate(BaseModel):
    """Declare each field as `X | None = None`; only the fields sent are validated."""

    model_config = ConfigDict(str_strip_whitespace=True, json_schema_extra=_without_null)

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
