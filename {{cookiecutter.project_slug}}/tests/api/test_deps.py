"""`require_admin`: the SECRET_KEY guard that any route can add, in every variant."""

import httpx
import pytest
from fastapi import Depends, FastAPI

from app.api.deps import require_admin
from app.settings import Settings


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    @app.get("/probe/admin", dependencies=[Depends(require_admin)])
    async def guarded() -> dict[str, str]:
        return {"status": "let in"}

    return app


async def test_the_secret_key_as_a_bearer_token_lets_the_request_in(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    secret = settings.secret_key.get_secret_value()

    response = await client.get("/probe/admin", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 200
    assert response.json() == {"status": "let in"}


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-key", "Basic dGVzdA=="])
async def test_anything_else_is_a_401_that_names_the_header(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get("/probe/admin", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == {
        "code": "unauthorized",
        "message": "Send the service's SECRET_KEY as `Authorization: Bearer <SECRET_KEY>`.",
        "request_id": response.headers["X-Request-ID"],
    }
