"""HelseID machine-to-machine tokens: client credentials with `private_key_jwt`, optionally DPoP-bound.

The client assertion and the DPoP proofs are JWTs signed with the client's private JWK by joserfc
(RFC 7515/7519/7638); the token request goes through the transport's httpx client. A server may
ask for a DPoP nonce (`use_dpop_nonce` with a `DPoP-Nonce` header, RFC 9449 §8-9): the request is
repeated once with it, and the latest nonce of each endpoint is sent with every later proof (per endpoint,
not per host: HelseID and the API each have their own, even behind one origin, as in the sandbox). Tokens
are cached until shortly before they expire and shared by the delivering threads. Neither the key
nor a token is ever logged; errors quote only the server's error code and description.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from transforms.deliver.config import ApiSettings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 60
EXPIRY_MARGIN_S = 30


class TokenError(RuntimeError):
    """The token endpoint refused the client (a configuration problem: nothing is sent until it is fixed)."""


class TokenUnavailable(RuntimeError):
    """The token endpoint could not be reached or failed: transient, retried like a message."""


def htu(url: str) -> str:
    """The `htu` claim: the URL without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class _Token:
    value: str
    kind: str  # "DPoP" or "Bearer"
    expires: float


class TokenClient:
    """Client assertions, DPoP proofs and a cached access token for one HelseID client."""

    def __init__(self, settings: ApiSettings, http: httpx.Client):
        self.settings = settings
        self.http = http
        self.endpoint = f"{settings.authority}/connect/token"
        self.key: RSAKey = settings.jwk
        self.public_jwk = {k: v for k, v in self.key.as_dict(private=False).items() if k in ("kty", "n", "e")}
        self._token: _Token | None = None
        self._nonces: dict[str, str] = {}  # per endpoint (its `htu`): the last DPoP-Nonce it gave
        self._lock = threading.Lock()

    # --- JWTs ------------------------------------------------------------------------------------
    def client_assertion(self) -> str:
        now = int(time.time())
        claims = {"iss": self.settings.client_id, "sub": self.settings.client_id, "aud": self.endpoint,
                  "iat": now, "nbf": now, "exp": now + ASSERTION_LIFETIME_S, "jti": str(uuid.uuid4())}
        header = {"alg": self.settings.algorithm, "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=[self.settings.algorithm])

    def dpop_proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": htu(url), "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = _b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        nonce = self.nonce_for(url)
        if nonce:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self.settings.algorithm, "jwk": self.public_jwk}
        return jwt.encode(header, claims, self.key, algorithms=[self.settings.algorithm])

    def nonce_for(self, url: str) -> str | None:
        """The nonce the endpoint at `url` last gave (sent with its next proof), if any."""
        return self._nonces.get(htu(url))

    def remember_nonce(self, url: str, response: httpx.Response, sent: str | None) -> bool:
        """Keep a `DPoP-Nonce` the endpoint sent; True when it differs from the one the request carried (`sent`),
        so that asking again with it can succeed, also when another thread has already stored it."""
        nonce = response.headers.get("DPoP-Nonce")
        if not nonce:
            return False
        self._nonces[htu(url)] = nonce
        return nonce != sent

    # --- the token -------------------------------------------------------------------------------
    def invalidate(self, value: str | None = None) -> None:
        """Forget the token (after a 401); with `value`, only if it is still that one."""
        with self._lock:
            if self._token is not None and (value is None or self._token.value == value):
                self._token = None

    def token(self) -> tuple[str, str]:
        """(kind, access token), fetched when there is none or it is about to expire."""
        with self._lock:
            if self._token is None or self._token.expires <= time.monotonic():
                self._token = self._fetch()
            return self._token.kind, self._token.value

    def _fetch(self) -> _Token:
        for _ in range(2):  # the second time with the nonce the server asked for
            form = {"grant_type": "client_credentials", "client_id": self.settings.client_id,
                    "scope": self.settings.scope, "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": self.client_assertion()}
            sent = self.nonce_for(self.endpoint)
            headers = {"DPoP": self.dpop_proof("POST", self.endpoint)} if self.settings.dpop else {}
            try:
                response = self.http.post(self.endpoint, data=form, headers=headers)
            except httpx.HTTPError as exc:
                raise TokenUnavailable(f"token endpoint {self.endpoint}: {type(exc).__name__}") from None
            new_nonce = self.remember_nonce(self.endpoint, response, sent)
            error = _error_of(response)
            if response.status_code == 400 and error[0] == "use_dpop_nonce" and new_nonce:
                continue
            if response.status_code >= 500 or response.status_code == 429:
                raise TokenUnavailable(f"token endpoint {self.endpoint}: HTTP {response.status_code} {error[0]}")
            if response.status_code != 200:
                raise TokenError(f"token endpoint {self.endpoint} refused client {self.settings.client_id}: HTTP "
                                 f"{response.status_code} {error[0]}: {error[1]}")
            body = response.json()
            kind = str(body.get("token_type", "Bearer"))
            if self.settings.dpop and kind.lower() != "dpop":
                raise TokenError(f"token endpoint {self.endpoint} issued a {kind} token; dpop = true wants DPoP")
            lifetime = float(body.get("expires_in", 300))
            return _Token(str(body["access_token"]), "DPoP" if self.settings.dpop else "Bearer",
                          time.monotonic() + max(lifetime - EXPIRY_MARGIN_S, lifetime / 2))
        raise TokenError(f"token endpoint {self.endpoint} asked for a DPoP nonce twice")

    def authorization(self, method: str, url: str) -> tuple[dict[str, str], str]:
        """Headers that authorise one API request, and the token they carry (to invalidate it on a 401)."""
        kind, value = self.token()
        headers = {"Authorization": f"{kind} {value}"}
        if kind == "DPoP":
            headers["DPoP"] = self.dpop_proof(method, url, value)
        return headers, value


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error", "")), str(body.get("error_description", ""))[:200]
