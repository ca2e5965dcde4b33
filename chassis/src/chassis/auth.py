"""JWT verification as a FastAPI dependency, and minting tokens for local use.

Tokens are RS256 JWTs with `sub` (the person's id), `role`, `iss`, `aud`, `iat` and
`exp`, living at most `jwt_max_lifetime_s[role]` (exp - iat); a token issued in the
future (beyond a little clock skew) is refused too. The gateway verifies them at the
edge (with the longest lifetime of any role); every service verifies them again.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import jwt
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chassis.settings import ServiceSettings

Role = Literal["client", "therapist", "clinician", "admin"]
ROLES: tuple[str, ...] = get_args(Role)

_bearer = HTTPBearer(auto_error=False)
# Seconds two clocks may disagree (the gateway allows the same).
CLOCK_SKEW_S = 30


@dataclass(frozen=True)
class Principal:
    subject: uuid.UUID
    role: Role

    @property
    def id(self) -> str:
        return str(self.subject)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


@functools.lru_cache(maxsize=16)
def _public_key(pem: str) -> Any:
    """A configured key, parsed once (PyJWT parses a PEM string on every decode: ~13 µs of
    a request's ~60 µs verification). A key that is no PEM goes to PyJWT as it is."""
    try:
        return load_pem_public_key(pem.encode())
    except ValueError:
        return pem


def verify(token: str, settings: ServiceSettings) -> Principal:
    if not settings.jwt_public_keys:
        raise _unauthorized("This service has no token verification keys configured")
    last_error = "Invalid token"
    for key in settings.jwt_public_keys:  # several keys during a rotation
        try:
            claims = jwt.decode(
                token,
                _public_key(key),
                algorithms=settings.jwt_algorithms,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized("Your session has expired: sign in again") from exc
        except jwt.InvalidSignatureError:
            last_error = "Token signature is not valid"
            continue
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"Invalid token: {exc}") from exc
        role = claims.get("role")
        if role not in ROLES:
            raise _unauthorized("Token carries no known role")
        _check_lifetime(claims, settings.jwt_max_lifetime_s.get(role, 0))
        try:
            subject = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise _unauthorized("Token subject is not a person id") from exc
        return Principal(subject, role)
    raise _unauthorized(last_error)


def _check_lifetime(claims: dict[str, Any], max_lifetime_s: int) -> None:
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int | float) or not isinstance(expires, int | float):
        raise _unauthorized("Invalid token: iat and exp must be numbers")
    if issued > time.time() + CLOCK_SKEW_S:
        raise _unauthorized("Invalid token: issued in the future")
    if expires - issued > max_lifetime_s:
        raise _unauthorized(
            f"Invalid token: it lives longer than a {claims['role']} token may "
            f"({max_lifetime_s // 60} minutes): sign in again"
        )


def settings_of(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


# The dependencies are coroutines: FastAPI runs a plain `def` dependency in its thread
# pool, two hand-offs per request for a few microseconds of work (a signature check).
async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("Sign in to continue: a bearer token is required")
    principal = verify(credentials.credentials, settings_of(request))
    request.state.principal = principal
    return principal


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only the given roles (401 without a valid token, 403 otherwise)."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"This needs the role {' or '.join(roles)}; you are signed in as "
                f"{principal.role}",
            )
        return principal

    return dependency


@functools.lru_cache(maxsize=16)
def _private_key(pem: str) -> Any:
    """A signing key, parsed once: parsing a PEM private key checks the RSA key (~35 ms),
    and PyJWT parsed it again for every token it signed."""
    return load_pem_private_key(pem.encode(), password=None)


def mint(
    private_key: str,
    subject: uuid.UUID | str,
    role: Role,
    *,
    issuer: str = "samtal",
    audience: str = "samtal",
    ttl: timedelta = timedelta(hours=8),
    now: datetime | None = None,
    key_id: str | None = None,
) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(subject),
        "role": role,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(claims, _private_key(private_key), algorithm="RS256", headers=headers)


def generate_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) for local runs and tests."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
