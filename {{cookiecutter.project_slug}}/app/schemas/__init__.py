"""The API's request and response bodies, as pydantic models; one module per resource."""
