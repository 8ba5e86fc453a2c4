"""The sandbox registry can fail the client: each of its checks refuses a request that breaks it."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.delivery_support import setup_sandbox
from transforms.deliver.config import load_delivery_config
from transforms.deliver.envelope import build_envelope, message_id
from transforms.deliver.helseid import TokenClient, htu
from transforms.sandbox.pki import issue
from transforms.sandbox.registry import Registry


class Client:
    """The delivery client's token and proof makers, aimed at an in-process `Registry` (no HTTP)."""

    def __init__(self, root: Path):
        self.config = load_delivery_config(root)
        self.tokens = TokenClient(self.config.api, httpx.Client())
        self.token_url = self.tokens.endpoint
        self.api_url = f"{self.config.api.url}/messages"

    def form(self, assertion: str | None = None) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_id": self.config.api.client_id,
                "scope": self.config.api.scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion or self.tokens.client_assertion()}

    def token(self, registry: Registry) -> str:
        first = registry.token(self.form(), self.tokens.dpop_proof("POST", self.token_url), self.token_url)
        assert first.status == 400 and first.body["error"] == "use_dpop_nonce"  # HelseID asks for a nonce first
        self.tokens.remember_nonce(self.token_url, first, None)
        reply = registry.token(self.form(), self.tokens.dpop_proof("POST", self.token_url), self.token_url)
        assert reply.status == 200, reply.body
        return reply.body["access_token"]


@pytest.fixture()
def world(written_demo, tmp_path):
    root = tmp_path / "data"
    (root / "config").mkdir(parents=True)
    (root / "config" / "kommuner.toml").write_bytes((written_demo / "config" / "kommuner.toml").read_bytes())
    setup_sandbox(root, tmp_path)
    folder = written_demo / "submissions" / "kommune=3301" / "2017"
    messages = [p.read_bytes() for p in sorted(folder.glob("*.xml"))[:2]]
    return root, Registry(root / "sandbox"), Client(root), messages


def _envelope(client: Client, data: bytes, payload=None) -> bytes:
    her_id = 90_000_000 + 3301
    return build_envelope(data, message_id("3301", 1, str(uuid.uuid4())), her_id,
                          payload or client.config.payload).body()


def test_a_correct_client_is_accepted_and_a_repeat_gets_the_first_ref_id(world):
    _, registry, client, messages = world
    client.token(registry)
    body = _envelope(client, messages[0])
    first, again = registry.message(body), registry.message(body)
    assert first.status == 200 and again.status == 200 and first.body["refId"] == again.body["refId"]


def test_a_client_assertion_signed_with_another_key_is_refused(world):
    _, registry, client, _ = world
    other = RSAKey.generate_key(2048, private=True, parameters={"kid": client.tokens.key.kid})
    client.tokens.key = other
    reply = registry.token(client.form(), None, client.token_url)
    assert reply.status == 401 and "signature" in reply.body["error_description"]


def test_an_expired_client_assertion_is_refused(world):
    _, registry, client, _ = world
    now = int(time.time())
    claims = {"iss": client.config.api.client_id, "sub": client.config.api.client_id, "aud": client.token_url,
              "iat": now - 300, "nbf": now - 300, "exp": now - 240, "jti": str(uuid.uuid4())}
    expired = jwt.encode({"alg": "PS256", "kid": client.tokens.key.kid}, claims, client.tokens.key,
                         algorithms=["PS256"])
    reply = registry.token(client.form(expired), None, client.token_url)
    assert reply.status == 401 and "expired" in reply.body["error_description"]


def test_a_replayed_client_assertion_is_refused(world):
    _, registry, client, _ = world
    assertion = client.tokens.client_assertion()
    registry.token(client.form(assertion), client.tokens.dpop_proof("POST", client.token_url), client.token_url)
    reply = registry.token(client.form(assertion), client.tokens.dpop_proof("POST", client.token_url),
                           client.token_url)
    assert reply.status == 401 and "replayed" in reply.body["error_description"]


def test_a_dpop_proof_for_another_url_is_refused(world):
    _, registry, client, _ = world
    token = client.token(registry)
    proof = client.tokens.dpop_proof("POST", client.api_url.replace("/messages", "/other"), token)
    refused = registry.authorize(f"DPoP {token}", proof, htu(client.api_url))
    assert refused is not None and refused.status == 401 and "not POST" in refused.body["errorMessage"]
    # the same token with a proof for the right URL passes, and a Bearer use of it does not
    assert registry.authorize(f"DPoP {token}", client.tokens.dpop_proof("POST", client.api_url, token),
                              client.api_url) is None
    assert registry.authorize(f"Bearer {token}", None, client.api_url).status == 401


def test_a_payload_encrypted_to_another_certificate_is_refused(world):
    _, registry, client, messages = world
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = issue("another registry", key, None, key)
    reply = registry.message(_envelope(client, messages[0], replace(client.config.payload,
                                                                    recipient_certificate=stranger)))
    assert reply.status == 400 and reply.body["validationCode"] == "payload.decrypt"


def test_a_signature_from_outside_the_sandbox_ca_is_refused(world):
    _, registry, client, messages = world
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = issue("Virksomhet from another CA", key, None, key)
    payload = replace(client.config.payload, signing_certificate=stranger, signing_key=key)
    reply = registry.message(_envelope(client, messages[0], payload))
    assert reply.status == 400 and reply.body["validationCode"] == "certificate.chain"


def test_a_broken_guid_chain_and_a_gap_in_numbering_are_refused(world):
    _, registry, client, messages = world
    # the second message before the first: its numbering does not continue what was accepted (nothing)
    assert registry.message(_envelope(client, messages[1])).body["validationCode"] == "sequence"
    assert registry.message(_envelope(client, messages[0])).status == 200
    first_prev = messages[1].split(b'notifikasjonForrigeGUID="', 1)[1][:36]
    broken = messages[1].replace(first_prev, str(uuid.uuid4()).encode(), 1)
    reply = registry.message(_envelope(client, broken))
    assert reply.status == 400 and reply.body["validationCode"] == "chain"
    assert registry.message(_envelope(client, messages[1])).status == 200


def test_a_message_that_breaks_the_schema_is_refused(world):
    _, registry, client, messages = world
    broken = messages[0].replace(b'versjon="56.0.0"', b'versjon="55.0.0"', 1)
    reply = registry.message(_envelope(client, broken))
    assert reply.status == 400 and reply.body["validationCode"] == "xsd"


def test_a_token_request_without_dpop_gets_a_bearer_token_used_only_as_bearer(world):
    _, registry, client, _ = world
    reply = registry.token(client.form(), None, client.token_url)
    assert reply.status == 200 and reply.body["token_type"] == "Bearer"
    token = reply.body["access_token"]
    assert registry.authorize(f"Bearer {token}", None, client.api_url) is None
    as_dpop = registry.authorize(f"DPoP {token}", client.tokens.dpop_proof("POST", client.api_url, token),
                                 client.api_url)
    assert as_dpop is not None and as_dpop.status == 401 and "Bearer token used as DPoP" in as_dpop.body["errorMessage"]


def test_a_registry_that_wants_dpop_refuses_a_token_request_without_a_proof(world):
    _, registry, client, _ = world
    registry.bearer_tokens = False
    reply = registry.token(client.form(), None, client.token_url)
    assert reply.status == 400 and reply.body["error"] == "invalid_dpop_proof"


def test_an_api_that_wants_its_own_nonce_asks_for_it_and_accepts_it(world):
    _, registry, client, _ = world
    registry.api_nonce = True
    token = client.token(registry)  # the client now holds the token endpoint's nonce, not the API's
    asked = registry.authorize(f"DPoP {token}", client.tokens.dpop_proof("POST", client.api_url, token),
                               client.api_url)
    assert asked is not None and asked.status == 401 and 'error="use_dpop_nonce"' in asked.headers["WWW-Authenticate"]
    assert asked.headers["DPoP-Nonce"] == registry.api_nonce_value != registry.nonce
    client.tokens._nonces[htu(client.api_url)] = asked.headers["DPoP-Nonce"]
    assert registry.authorize(f"DPoP {token}", client.tokens.dpop_proof("POST", client.api_url, token),
                              client.api_url) is None
