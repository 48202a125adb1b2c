"""The HTTP plumbing under the routes: one error shape for every failure, body limits,
and streams that end when their client does.

- `errors`: the service's errors, their handlers, and the middleware that answers 500;
- `error_body`: the error body as the OpenAPI document declares it, for routes to list;
- `body_limit`: a 413 for a request body over the limit, before it is read in full;
- `streaming`: a streamed response that ends when its client leaves or stops reading.
"""
