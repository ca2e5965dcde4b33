"""The Envoy gateway's configuration, rendered from a few parameters.

One function, `render(...)`, used unchanged by the tests, the local run, compose
and the Kubernetes manifests (samtal_deploy.generate); only the parameters differ:

- one route prefix per service (`/api/<svc>/...` -> that service's api, prefix
  rewritten to `/`); `/api/<svc>/metrics` is never exposed at the edge (an api serves
  its metrics on a port of its own anyway). Paths are normalised before any filter
  or route sees them (RFC 3986: percent-decoding of unreserved characters, dot
  segments, merged slashes); an encoded slash or backslash is refused (400);
- each service's api may have several replicas: round robin over the healthy ones
  (active health checks on /healthz, outlier ejection of failing ones). A request is
  retried on another replica when that is safe: idempotent methods (GET, HEAD,
  OPTIONS, PUT, DELETE) and the writes whose body must carry an idempotency key the
  service deduplicates on (`KEYED_WRITES`: booking a session or a series) on a
  connection failure, a reset or a gateway error; any other write only when it never
  reached a replica (connection refused, reset before the request was sent). The retry
  budget admits a retry for every request in flight: losing one of two replicas cuts
  off half of them at once;
- JWT verification at the edge (`jwt_authn`, RS256, local JWKS, issuer and
  audience; `exp` required, `exp - iat` at most the longest lifetime of any role,
  the services check each role's own). Public routes (catalog browse, health)
  admit a request WITHOUT a token (`allow_missing`) but reject a present-and-invalid
  one; every other route needs a valid token (401). The token is forwarded:
  services verify it again and decide roles and ownership;
- a local rate limit (token bucket per Envoy instance, 429 past it);
- request ids: generated when missing, kept when given, echoed in the response;
- CORS for the frontends' origins; a request-body limit (413); the admin
  interface on loopback only; `GET /healthz` answered by the gateway itself.

Envoy reads YAML, and JSON is YAML: the config is built as data and dumped as
JSON, so no template engine is needed and nothing can be mis-indented.

Command line (writes the files a local compose run mounts; `make up` runs it):
    samtal-deploy gateway local [--out deploy/.local]
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from chassis.auth import generate_keypair
from samtal_deploy.services import SERVICES

MIB = 1024 * 1024

# Routes a visitor may call without signing in: (method or None for any, path prefix).
# A token, when present, must still be valid.
PUBLIC_CATALOG_PREFIXES = ("/api/catalog/therapists", "/api/catalog/methods", "/api/catalog/areas")
# API documents are public: OpenAPI and AsyncAPI of each service.
DOC_PATHS = ("/docs", "/openapi.json", "/asyncapi", "/asyncapi.json", "/asyncapi.yaml")
HEALTH_PATHS = ("/healthz", "/readyz")

_EXT = "type.googleapis.com/envoy.extensions"
_TYPE = f"{_EXT}.filters"


def pem_to_jwk(pem: str) -> dict[str, Any]:
    """One RSA public key (PEM) as a JWK with a stable `kid` (SHA-256 of the key, RFC 7638)."""
    from jwt.algorithms import RSAAlgorithm

    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(_load_public(pem), as_dict=True)
    thumb = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    kid = base64.urlsafe_b64encode(hashlib.sha256(thumb.encode()).digest()).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def pem_to_jwks(*pems: str) -> str:
    """A JWKS (JSON text) listing every given public key: during a rotation, old and new."""
    return json.dumps({"keys": [pem_to_jwk(p) for p in pems]})


def _load_public(pem: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(pem.encode())


Address = tuple[str, int]


def _replicas(where: Address | Sequence[Address]) -> list[Address]:
    """One (host, port) or a list of them: the replicas of one service's api."""
    if len(where) == 2 and isinstance(where[0], str) and isinstance(where[1], int):
        return [(where[0], where[1])]
    return [(str(h), int(p)) for h, p in cast(Sequence[Address], where)]


def render(
    upstreams: Mapping[str, Address | Sequence[Address]],
    jwks_json: str,
    listen_port: int,
    *,
    listen_host: str = "0.0.0.0",
    admin_port: int = 9901,
    rate_limit_per_s: int = 200,
    rate_limit_burst: int | None = None,
    cors_origins: Sequence[str] = ("http://localhost:3000", "http://localhost:5173"),
    max_body_bytes: int = MIB,
    issuer: str = "samtal",
    audiences: Sequence[str] = ("samtal",),
    jwks_file: str | None = None,
    upstream_timeout_s: float = 15.0,
    max_token_lifetime_s: int = 24 * 3600,
    health_check_interval_s: float = 2.0,
) -> str:
    """Envoy's bootstrap config (YAML, written as JSON).

    upstreams: service name -> (host, port) of its api, or a list of them (replicas).
    max_token_lifetime_s: the longest `exp - iat` of any role's token. jwks_json: the JWKS text
    (see `pem_to_jwks`); ignored when `jwks_file` names a file Envoy reads instead
    (Kubernetes mounts the JWKS from a ConfigMap there). rate_limit_per_s: tokens
    added each second; rate_limit_burst: bucket size (default: one second's worth).
    """
    unknown = set(upstreams) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services: {sorted(unknown)}")
    if rate_limit_per_s < 1:
        raise ValueError("rate_limit_per_s must be at least 1")
    if jwks_file is None:
        keys = json.loads(jwks_json).get("keys")
        if not isinstance(keys, list):
            raise ValueError("jwks_json must be a JWKS: {'keys': [...]}")
    config = {
        "admin": {"address": _socket("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [
                _listener(
                    upstreams,
                    listen_host,
                    listen_port,
                    rate_limit_per_s,
                    rate_limit_burst or rate_limit_per_s,
                    cors_origins,
                    max_body_bytes,
                    issuer,
                    audiences,
                    jwks_json,
                    jwks_file,
                    upstream_timeout_s,
                    max_token_lifetime_s,
                )
            ],
            "clusters": [
                _cluster(name, _replicas(where), health_check_interval_s)
                for name, where in upstreams.items()
            ],
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        # an edge proxy bounds its downstream connections
                        "overload": {"global_downstream_max_connections": 50000},
                    },
                }
            ]
        },
    }
    return json.dumps(config, indent=2) + "\n"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


# Retried on another replica: requests that may run twice without harm...
SAFE_RETRY = {
    "retry_on": "connect-failure,refused-stream,reset,gateway-error",
    "num_retries": 3,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": f"{_EXT}.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": 5,
    "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
}
# Writes a service deduplicates by the idempotency key their body must carry: a retry is
# the same request, so it is answered from the first. Only booking's are; a header alone
# proves nothing (a service that ignores it would write twice).
KEYED_WRITES = {"booking": r"/api/booking/courses/[^/]+/(sessions|series)"}
# ...and any other write only when no replica ever saw it.
UNSENT_RETRY = {**SAFE_RETRY, "retry_on": "connect-failure,refused-stream,reset-before-request"}
IDEMPOTENT_METHODS = "GET|HEAD|OPTIONS|PUT|DELETE"


def _routes(upstreams: Iterable[str], timeout_s: float) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {
            "name": "gateway-health",
            "match": {"path": "/healthz"},
            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        }
    ]
    for svc in upstreams:
        routes.append(
            {
                "name": f"{svc}-metrics-hidden",
                "match": {"prefix": f"/api/{svc}/metrics"},
                "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
            }
        )
        to = {"cluster": svc, "prefix_rewrite": "/", "timeout": f"{timeout_s:g}s"}
        method = {"name": ":method", "string_match": {"safe_regex": {"regex": IDEMPOTENT_METHODS}}}
        routes.append(
            {
                "name": f"{svc}-idempotent",
                "match": {"prefix": f"/api/{svc}/", "headers": [method]},
                "route": {**to, "retry_policy": SAFE_RETRY},
            }
        )
        if svc in KEYED_WRITES:
            routes.append(
                {
                    "name": f"{svc}-keyed-write",
                    "match": {
                        "safe_regex": {"regex": KEYED_WRITES[svc]},
                        "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
                    },
                    "route": {
                        **{k: v for k, v in to.items() if k != "prefix_rewrite"},
                        "regex_rewrite": {
                            "pattern": {"regex": f"^/api/{svc}/"},
                            "substitution": "/",
                        },
                        "retry_policy": SAFE_RETRY,
                    },
                }
            )
        routes += [
            {
                "name": svc,
                "match": {"prefix": f"/api/{svc}/"},
                "route": {**to, "retry_policy": UNSENT_RETRY},
            },
        ]
    return routes


def _jwt_filter(
    upstreams: Iterable[str],
    issuer: str,
    audiences: Sequence[str],
    jwks_json: str,
    jwks_file: str | None,
    max_token_lifetime_s: int,
) -> dict[str, Any]:
    jwks = {"filename": jwks_file} if jwks_file else {"inline_string": jwks_json}
    required = {"provider_name": "samtal"}
    optional = {
        "requires_any": {"requirements": [{"provider_name": "samtal"}, {"allow_missing": {}}]}
    }
    get = [{"name": ":method", "string_match": {"exact": "GET"}}]
    rules: list[dict[str, Any]] = [{"match": {"path": "/healthz"}}]  # the gateway's own
    rules += [
        {"match": {"path_separated_prefix": p, "headers": get}, "requires": optional}
        for p in PUBLIC_CATALOG_PREFIXES
        if "catalog" in upstreams
    ]
    rules += [
        {"match": {"path": f"/api/{svc}{h}"}, "requires": optional}
        for svc in upstreams
        for h in HEALTH_PATHS + DOC_PATHS
    ]
    rules.append({"match": {"prefix": "/"}, "requires": required})
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": f"{_TYPE}.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "samtal": {
                    "issuer": issuer,
                    "audiences": list(audiences),
                    "local_jwks": jwks,
                    "forward": True,  # services verify the token again
                    "clock_skew_seconds": 30,
                    "require_expiration": True,
                    "max_lifetime": f"{max_token_lifetime_s}s",
                }
            },
            "rules": rules,
        },
    }


def _listener(
    upstreams: Mapping[str, Any],
    host: str,
    port: int,
    rate: int,
    burst: int,
    cors_origins: Sequence[str],
    max_body: int,
    issuer: str,
    audiences: Sequence[str],
    jwks_json: str,
    jwks_file: str | None,
    timeout_s: float,
    max_token_lifetime_s: int,
) -> dict[str, Any]:
    cors = {
        "@type": f"{_TYPE}.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": o} for o in cors_origins],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-request-id, x-correlation-id",
        "expose_headers": "x-request-id, x-correlation-id",
        "max_age": "600",
    }
    percent100 = {"numerator": 100, "denominator": "HUNDRED"}
    http_filters = [
        {
            "name": "envoy.filters.http.cors",
            "typed_config": {"@type": f"{_TYPE}.http.cors.v3.Cors"},
        },
        {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": f"{_TYPE}.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "edge_rate_limit",
                "token_bucket": {
                    "max_tokens": burst,
                    "tokens_per_fill": rate,
                    "fill_interval": "1s",
                },
                "filter_enabled": {
                    "runtime_key": "edge_rate_limit_enabled",
                    "default_value": percent100,
                },
                "filter_enforced": {
                    "runtime_key": "edge_rate_limit_enforced",
                    "default_value": percent100,
                },
                "response_headers_to_add": [
                    {
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        "header": {"key": "x-rate-limited", "value": "1"},
                    }
                ],
            },
        },
        {
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": f"{_TYPE}.http.buffer.v3.Buffer",
                "max_request_bytes": max_body,
            },
        },
        _jwt_filter(upstreams, issuer, audiences, jwks_json, jwks_file, max_token_lifetime_s),
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": f"{_TYPE}.http.router.v3.Router"},
        },
    ]
    hcm = {
        "@type": f"{_TYPE}.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        "use_remote_address": True,
        # One spelling of a path before JWT rules and routes look at it: %6d is m,
        # /a/../b is /b, //a is /a; %2F and %5C (an encoded slash) are refused (400).
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "generate_request_id": True,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        # Keep a given id byte for byte (by default Envoy rewrites one UUID digit of it
        # to carry its trace-sampling decision).
        "request_id_extension": {
            "typed_config": {
                "@type": f"{_EXT}.request_id.uuid.v3.UuidRequestIdConfig",
                "pack_trace_reason": False,
            }
        },
        "request_timeout": "30s",
        "stream_idle_timeout": "60s",
        "common_http_protocol_options": {
            "idle_timeout": "300s",
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": f"{_EXT}.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": {
                        "json_format": {
                            "time": "%START_TIME%",
                            "method": "%REQ(:METHOD)%",
                            "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                            "status": "%RESPONSE_CODE%",
                            "flags": "%RESPONSE_FLAGS%",
                            "duration_ms": "%DURATION%",
                            "upstream": "%UPSTREAM_CLUSTER%",
                            "request_id": "%REQ(X-REQUEST-ID)%",
                        }
                    },
                },
            }
        ],
        "route_config": {
            "name": "samtal",
            "virtual_hosts": [
                {
                    "name": "samtal",
                    "domains": ["*"],
                    "routes": _routes(upstreams, timeout_s),
                    "typed_per_filter_config": {"envoy.filters.http.cors": cors},
                }
            ],
        },
        "http_filters": http_filters,
    }
    return {
        "name": "edge",
        "address": _socket(host, port),
        "per_connection_buffer_limit_bytes": 65536,
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def _cluster(name: str, replicas: Sequence[Address], interval_s: float) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "2s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket(host, port)}} for host, port in replicas
                    ]
                }
            ],
        },
        # Closed by us before the api's keep-alive (75 s) closes it under a request.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_EXT}.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "30s"},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": f"{interval_s:g}s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "http_health_check": {"path": "/healthz"},
            }
        ],
        # A replica that fails in a row is ejected for a while; one always stays.
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 2,
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 2,
            "interval": "2s",
            "base_ejection_time": "10s",
            "max_ejection_percent": 50,
        },
        "circuit_breakers": {
            "thresholds": [
                # Every request in flight may need its retry at once: killing one of two
                # replicas cuts off half of them (a fifth answered 503s to the cut-off ones).
                {"retry_budget": {"budget_percent": {"value": 100.0}, "min_retry_concurrency": 16}}
            ]
        },
    }


def write_local(out: Path, *, api_port: int = 8000, listen_port: int = 8080) -> Path:
    """Compose's local files: a key pair (kept when present), the JWKS, envoy.yaml and
    samtal.env (each service's JWT_PUBLIC_KEYS). Returns envoy.yaml's path."""
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / "private.pem", out / "public.pem"
    if not (private.exists() and public.exists()):
        priv, pub = generate_keypair()
        private.write_text(priv)
        private.chmod(0o600)
        public.write_text(pub)
    jwks = pem_to_jwks(public.read_text())
    (out / "jwks.json").write_text(jwks + "\n")
    upstreams = {svc: (f"{svc}-api", api_port) for svc in SERVICES}
    envoy = out / "envoy.yaml"
    envoy.write_text(render(upstreams, jwks, listen_port))
    keys = json.dumps([public.read_text()])
    (out / "samtal.env").write_text(
        "".join(f"SAMTAL_{svc.upper()}_JWT_PUBLIC_KEYS={keys}\n" for svc in SERVICES)
    )
    return envoy
