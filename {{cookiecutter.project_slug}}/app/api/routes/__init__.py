"""The API's routes, one router per module; `app/api/routers.py` lists them in order."""
