"""The one error hierarchy of sovrouter.

Every error the control plane raises on purpose derives from :class:`SovrouterError`. Each class carries the
HTTP status, the OpenAI-style ``type`` and a stable ``code``; the gateway boundary maps them to
``{"error": {"message", "type", "param", "code"}}`` and nothing else. Messages are written for clients: they
never contain prompt text, personal data, API keys or stack traces.

    SovrouterError                      500 server_error
    ├── InvalidRequestError             400 invalid_request_error
    │   ├── UnsupportedModalityError    400 (no configured deployment serves the modality)
    │   ├── ToolsNotSupportedError      400 (the request uses tools, and no deployment the key may use declares them)
    │   ├── RequestTooLargeError        413
    │   └── ConflictError               409 (the object is in use: a file an unfinished batch reads)
    ├── AuthenticationError             401 authentication_error
    ├── NotFoundError                   404 not_found_error (unknown model, unknown id)
    ├── PolicyRefusalError              403 policy_refusal (no deployment the tenant's policy allows)
    │   └── StoreNotAllowedError        403 (the tenant's data may not be kept in a shared store)
    ├── ConfigError                     500 (configuration or artifact is invalid; raised at start-up)
    ├── DetectionError                  500 (personal-data detection failed; the pipeline fails closed)
    │   └── DetectionTimeoutError       500 (detection exceeded its time budget)
    ├── PolicyEngineError               500 (policy evaluation failed; the pipeline fails closed: refusal)
    ├── ReplayError                     500 (replay could not produce a valid decision for an event)
    ├── TooManyRequestsError            429 rate_limit_error (the tenant has its most requests in flight here, or
    │                                       on every instance together with ``shared_in_flight``)
    ├── StoreUnavailableError           503 (the batch store's database cannot be reached; try again)
    ├── RequestCancelledError           503 (cancelled before it finished: the gateway shutting down; recorded)
    └── UpstreamError                   502 upstream_error (a model call failed)
        ├── UpstreamUnavailableError    502 (connect refused/reset, upstream 429/5xx: transient, retryable)
        ├── UpstreamNotConfiguredError  502 (a catalog deployment with no upstream configured: falls back)
        ├── UpstreamRejectedError       502 (upstream refused the call with another 4xx: not retryable)
        ├── UpstreamProtocolError       502 (malformed body, stream ended without completing)
        ├── UpstreamTimeoutError        504
        ├── CircuitOpenError            503 (breaker open / replica ejected)
        ├── RetryBudgetExhaustedError   503
        ├── PolicyGuardError            403 (a call to a deployment outside the allowed set was refused)
        └── AllCandidatesFailedError    502 (every step of the fallback chain failed)
            └── AllCandidatesRejectedError  400 invalid_request_error (every step refused the request itself:
                                                a prompt past every context; the client's to fix, not to retry)
"""

from __future__ import annotations

from typing import Any, ClassVar


class SovrouterError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_openai(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequestError(SovrouterError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class UnsupportedModalityError(InvalidRequestError):
    code = "unsupported_modality"


class ToolsNotSupportedError(InvalidRequestError):
    code = "tools_not_supported"


class RequestTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class ConflictError(InvalidRequestError):
    status = 409
    code = "conflict"


class AuthenticationError(SovrouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(SovrouterError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class PolicyRefusalError(SovrouterError):
    status = 403
    type = "policy_refusal"
    code = "no_allowed_deployment"


class StoreNotAllowedError(PolicyRefusalError):
    """The tenant is not listed for a shared store (its policy does not allow the store's location): nothing of
    the request is stored."""

    code = "store_not_allowed"


class ConfigError(SovrouterError):
    code = "config_error"


class DetectionError(SovrouterError):
    """Never reaches a client: ``FailClosedDetector`` turns it into ``Detection(failed=True)``."""

    code = "detection_failed"


class DetectionTimeoutError(DetectionError):
    code = "detection_timeout"


class PolicyEngineError(SovrouterError):
    """The policy engine could not evaluate; the sovereignty policy then allows nothing (a refusal)."""

    code = "policy_engine_failed"


class ReplayError(SovrouterError):
    """The replay harness could not produce a valid decision for an event (one of its invariants broke)."""

    code = "replay_error"


class TooManyRequestsError(SovrouterError):
    """The tenant already has ``max_in_flight_per_tenant`` requests in flight on this instance (with
    ``shared_in_flight``: on every gateway instance together): one tenant's burst never takes every other tenant's
    share of the gateway. Answered with ``retry-after``."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class StoreUnavailableError(SovrouterError):
    """The database behind ``/v1/files`` and ``/v1/batches`` cannot be reached (live chat is unaffected)."""

    status = 503
    code = "store_unavailable"


class RequestCancelledError(SovrouterError):
    """The request was cancelled before it finished (the gateway draining past its grace period). It is the
    ``error_code`` of the request's record; the client, if still there, is answered by the server."""

    status = 503
    code = "request_cancelled"


class UpstreamError(SovrouterError):
    status = 502
    type = "upstream_error"
    code = "upstream_failed"


class UpstreamUnavailableError(UpstreamError):
    """Connection refused or reset, or the upstream answered 429 / 5xx: transient, worth a (budgeted) retry."""

    code = "upstream_unavailable"


class UpstreamNotConfiguredError(UpstreamError):
    """The route names a catalog deployment the configuration gives no upstream (``upstreams``): it fails at once,
    without a network call, and the request falls back to the next deployment of its plan; the attempt is in the
    record, so a fallback says why."""

    code = "upstream_not_configured"


class UpstreamRejectedError(UpstreamError):
    """The upstream refused the call with a 4xx other than 429: retrying the same call will not help.
    ``upstream_status`` is the upstream's HTTP status (it tells a refused request from a misconfigured replica)."""

    code = "upstream_rejected"

    def __init__(self, message: str, *, param: str | None = None, upstream_status: int | None = None) -> None:
        super().__init__(message, param=param)
        self.upstream_status = upstream_status

    @property
    def request_specific(self) -> bool:
        """The request itself was refused (400, 413, 422: too long for the context, a bad parameter), so the
        replica is healthy; 401, 403, 404... say the replica is misconfigured (a key, a model name)."""
        return self.upstream_status in (400, 413, 422)


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something that is not a valid completion (malformed body, truncated stream)."""

    code = "upstream_bad_response"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"


class CircuitOpenError(UpstreamError):
    status = 503
    code = "circuit_open"


class RetryBudgetExhaustedError(UpstreamError):
    status = 503
    code = "retry_budget_exhausted"


class PolicyGuardError(UpstreamError):
    """A call to a deployment outside the request's allowed set was attempted and refused before it left."""

    status = 403
    type = "policy_refusal"
    code = "policy_guard"


class AllCandidatesFailedError(UpstreamError):
    code = "all_candidates_failed"


class AllCandidatesRejectedError(AllCandidatesFailedError):
    """Every deployment tried refused the request itself (HTTP 400/413/422: a prompt longer than every context, a
    value a model does not take). A 400, not a 502: OpenAI's clients retry every 5xx, which turned one request
    the client has to change into three times the plan's calls."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"
