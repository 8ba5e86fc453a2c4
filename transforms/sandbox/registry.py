"""The sandbox registry's checks and memory, without HTTP: what a request must prove to be accepted.

Token endpoint: a `client_credentials` request whose `private_key_jwt` assertion is signed by the
registered client key (`kid` included) with `iss` = `sub` = the client, `aud` = this endpoint, a
lifetime of at most 60 s that has not ended, and a `jti` never seen before; with a DPoP proof
(`typ dpop+jwt`, this method and URL, fresh, signed by the key it carries, the server's nonce), or
without one a Bearer token (unless `bearer_tokens = false`).
Message endpoint: a live token used as it was issued: a Bearer token as Bearer, a DPoP-bound token with
a proof that matches the method, URL, token hash (`ath`) and key thumbprint (and, with
`api_dpop_nonce = true`, the API's own nonce, which it hands out in a 401 `use_dpop_nonce`);
an envelope to this registry from a registered HER-id; a payload that decrypts
with the registry's key and whose signature and signer certificate hold (`cms`); a message that is
valid XPR 56 (`get_serializer().validate`), from the municipality the HER-id belongs to, whose
first notification continues that municipality's accepted sequence and GUID chain. A repeated
`MessageId` that was accepted is answered with its first `refId`; a resend (every notification
already accepted, unchanged) is acknowledged without storing it again.

State lives in SQLite (`registry.sqlite`), so a restarted sandbox remembers what it accepted.
Only what the replay needs is stored, never a person's identifier.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry
from lxml import etree

from transforms.sandbox.cms import PayloadRefused, decrypt, verify_signed
from transforms.sandbox.pki import SandboxFiles, sandbox_settings
from transforms.submit.serializers import NIL_GUID, get_serializer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["PS256", "RS256"]
CLOCK_SKEW_S = 5
PROOF_MAX_AGE_S = 60
NS = "{http://www.npr.no/xmlstds/56_0_0_ipl}"



class _ProofRegistry(JWSRegistry):
    """A DPoP proof carries the client's public JWK in its header: more than joserfc's default 512 bytes."""

    max_header_length = 4096


PROOFS = _ProofRegistry(algorithms=ALGORITHMS)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (message_id TEXT PRIMARY KEY, her_id INTEGER, kommune TEXT, ref_id TEXT,
    day TEXT, first_seq INTEGER, last_seq INTEGER, last_guid TEXT, received_at REAL, repeats INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS notifications (kommune TEXT, seq INTEGER, guid TEXT, previous_guid TEXT, status TEXT,
    ref_guid TEXT, event_type TEXT, event_guid TEXT, message_id TEXT, PRIMARY KEY (kommune, seq));
CREATE TABLE IF NOT EXISTS resends (message_id TEXT PRIMARY KEY, kommune TEXT, ref_id TEXT, first_seq INTEGER,
    last_seq INTEGER, received_at REAL);
CREATE TABLE IF NOT EXISTS assertion_jtis (jti TEXT PRIMARY KEY, expires REAL);
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, jkt TEXT, expires REAL, uses INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS proof_jtis (jti TEXT PRIMARY KEY, seen REAL);
CREATE TABLE IF NOT EXISTS server (name TEXT PRIMARY KEY, value TEXT);
"""


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    accepted_new: bool = False  # a message stored by this request (a dropped answer loses nothing)


@functools.lru_cache(maxsize=64)
def _public_key(jwk_json: str) -> RSAKey:
    """A proof's JWK, imported once per key (a client sends the same key with every proof)."""
    return RSAKey.import_key(json.loads(jwk_json))


@functools.lru_cache(maxsize=64)
def _thumbprint(jwk_json: str) -> str:
    return _public_key(jwk_json).thumbprint()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _oauth_error(status: int, error: str, description: str, headers: dict | None = None) -> Reply:
    return Reply(status, {"error": error, "error_description": description}, headers or {})


def _invalid(code: str, text: str) -> Reply:
    return Reply(400, {"validationCode": code, "validationMessage": text, "refId": str(uuid.uuid4())})


def _unauthorized(code: str, text: str) -> Reply:
    return Reply(401, {"errorCode": code, "errorMessage": text, "refId": str(uuid.uuid4())},
                 {"WWW-Authenticate": f'DPoP error="{code}"'})


class Registry:
    """The sandbox's receiving side over one sandbox folder."""

    def __init__(self, folder: Path):
        files = SandboxFiles(Path(folder), Path("."))
        settings = sandbox_settings(files)
        self.client_id = settings["client_id"]
        self.scope = settings["scope"]
        self.to_her_id = int(settings["to_her_id"])
        self.token_lifetime = int(settings.get("token_lifetime_s", 300))
        self.bearer_tokens = bool(settings.get("bearer_tokens", True))  # a token request without DPoP: Bearer
        self.api_nonce = bool(settings.get("api_dpop_nonce", False))  # the API asks for its own nonce
        self.register = {int(her): str(nr) for her, nr in settings.get("register", {}).items()}
        self.client_key = RSAKey.import_key(json.loads(files.client_public_jwk.read_text(encoding="utf-8")))
        self.ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        self.senders = [x509.load_pem_x509_certificate(files.sender_cert.read_bytes())]
        self.registry_cert = x509.load_pem_x509_certificate(files.registry_cert.read_bytes())
        self.registry_key = load_pem_private_key(files.registry_key.read_bytes(), password=None)
        # the server's worker processes share this database: what one accepted, the others know
        self.db = sqlite3.connect(files.database, isolation_level=None, check_same_thread=False, timeout=60)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO server VALUES ('dpop_nonce', ?)", (secrets.token_urlsafe(16),))
        self.db.execute("INSERT OR IGNORE INTO server VALUES ('api_dpop_nonce', ?)", (secrets.token_urlsafe(16),))
        self.nonce = self.db.execute("SELECT value FROM server WHERE name = 'dpop_nonce'").fetchone()[0]
        # another server's nonce, as HelseID's and the API's would be: the client keeps one per server
        self.api_nonce_value = self.db.execute("SELECT value FROM server WHERE name = 'api_dpop_nonce'").fetchone()[0]
        self.requests = 0
        self.reject: set[tuple[str, str]] = set()  # (kommune, day) to refuse: a test's invalid message
        self.token_max_uses: int | None = None  # tokens die after so many API requests (expiry mid-run)
        self.serializer = get_serializer()

    # --- DPoP -------------------------------------------------------------------------------------
    def _proof(self, proof: str | None, method: str, url: str, token: str | None = None,
               need_nonce: str | None = None) -> tuple[str | None, str]:
        """(JWK thumbprint, "") of a valid proof, or (None, why not)."""
        if not proof:
            return None, "DPoP proof missing"
        try:
            header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
            if header.get("typ") != "dpop+jwt" or header.get("alg") not in ALGORITHMS:
                return None, "DPoP proof header must have typ dpop+jwt and alg PS256/RS256"
            key = _public_key(json.dumps(header["jwk"], sort_keys=True))
            if key.is_private:
                return None, "DPoP proof carries a private key"
            claims = jwt.decode(proof, key, algorithms=ALGORITHMS, registry=PROOFS).claims
        except (JoseError, ValueError, KeyError, TypeError, IndexError):
            return None, "DPoP proof does not verify with the key it carries"
        now = time.time()
        if claims.get("htm") != method or claims.get("htu") != url:
            return None, f"DPoP proof is for {claims.get('htm')} {claims.get('htu')}, not {method} {url}"
        if abs(now - float(claims.get("iat", 0))) > PROOF_MAX_AGE_S:
            return None, "DPoP proof is not fresh"
        jti = str(claims.get("jti", ""))
        if token is not None and claims.get("ath") != _b64url(hashlib.sha256(token.encode()).digest()):
            return None, "DPoP proof ath is not the hash of the access token"
        if need_nonce is not None and claims.get("nonce") != need_nonce:
            return None, "use_dpop_nonce"
        self.requests += 1
        if self.requests % 1000 == 0:  # a proof older than twice its lifetime is refused anyway
            self.db.execute("DELETE FROM proof_jtis WHERE seen < ?", (now - 2 * PROOF_MAX_AGE_S,))
        try:
            self.db.execute("INSERT INTO proof_jtis VALUES (?, ?)", (jti, now))
        except sqlite3.IntegrityError:
            return None, "DPoP proof jti used before"
        if not jti:
            return None, "DPoP proof jti missing"
        return _thumbprint(json.dumps(header["jwk"], sort_keys=True)), ""

    # --- token endpoint ---------------------------------------------------------------------------
    def token(self, form: dict[str, str], proof: str | None, url: str) -> Reply:
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return _oauth_error(401, "invalid_client", "private_key_jwt client assertion required")
        if form.get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "unknown client")
        if self.scope not in form.get("scope", "").split():
            return _oauth_error(400, "invalid_scope", f"scope {self.scope} required")
        problem = self._assertion(form["client_assertion"], url)
        if problem:
            return _oauth_error(401, "invalid_client", problem)
        if proof is None and self.bearer_tokens:
            jkt = None  # a Bearer token: whoever holds it may use it until it expires
        else:
            jkt, why = self._proof(proof, "POST", url, need_nonce=self.nonce)
            if jkt is None:
                if why == "use_dpop_nonce":
                    return _oauth_error(400, "use_dpop_nonce", "a DPoP nonce is required", {"DPoP-Nonce": self.nonce})
                return _oauth_error(400, "invalid_dpop_proof", why)
        token = secrets.token_urlsafe(32)
        self.db.execute("INSERT INTO tokens (token, jkt, expires) VALUES (?, ?, ?)",
                        (token, jkt, time.time() + self.token_lifetime))
        return Reply(200, {"access_token": token, "token_type": "DPoP" if jkt else "Bearer",
                           "expires_in": self.token_lifetime, "scope": self.scope})

    def _assertion(self, assertion: str, url: str) -> str:
        try:
            token = jwt.decode(assertion, self.client_key, algorithms=ALGORITHMS)
        except (JoseError, ValueError):
            return "client assertion signature does not verify with the registered key"
        claims, now = token.claims, time.time()
        if token.header.get("kid") != self.client_key.kid:
            return "client assertion kid is not the registered key's"
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "client assertion iss and sub must be the client id"
        audience = claims.get("aud")
        if url not in (audience if isinstance(audience, list) else [audience]):
            return "client assertion aud is not this token endpoint"
        exp, iat = float(claims.get("exp", 0)), float(claims.get("iat", 0))
        if exp < now - CLOCK_SKEW_S:
            return "client assertion expired"
        if exp - iat > 60 + CLOCK_SKEW_S or float(claims.get("nbf", iat)) > now + CLOCK_SKEW_S:
            return "client assertion lifetime over 60 s or not yet valid"
        try:
            self.db.execute("INSERT INTO assertion_jtis VALUES (?, ?)", (str(claims.get("jti", "")), exp))
        except sqlite3.IntegrityError:
            return "client assertion jti used before (replayed)"
        return "" if claims.get("jti") else "client assertion jti missing"

    # --- message endpoint -------------------------------------------------------------------------
    def authorize(self, authorization: str | None, proof: str | None, url: str) -> Reply | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme not in ("DPoP", "Bearer") or not token:
            return _unauthorized("invalid_token", "an access token is required (DPoP or Bearer)")
        row = self.db.execute("SELECT jkt, expires, uses FROM tokens WHERE token = ?", (token,)).fetchone()
        if row is None or row[1] < time.time() or (self.token_max_uses is not None and row[2] >= self.token_max_uses):
            return _unauthorized("invalid_token", "the access token is unknown or expired")
        if (scheme == "Bearer") != (row[0] is None):
            return _unauthorized("invalid_token", f"a {'DPoP-bound' if row[0] else 'Bearer'} token used as {scheme}")
        if scheme == "Bearer":
            self.db.execute("UPDATE tokens SET uses = uses + 1 WHERE token = ?", (token,))
            return None
        jkt, why = self._proof(proof, "POST", url, token=token,
                               need_nonce=self.api_nonce_value if self.api_nonce else None)
        if jkt is None:
            if why == "use_dpop_nonce":
                return Reply(401, {"errorCode": "use_dpop_nonce", "errorMessage": "a DPoP nonce is required",
                                   "refId": str(uuid.uuid4())},
                             {"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": self.api_nonce_value})
            return _unauthorized("invalid_dpop_proof", why)
        if jkt != row[0]:
            return _unauthorized("invalid_dpop_proof", "the DPoP proof's key is not the one the token is bound to")
        self.db.execute("UPDATE tokens SET uses = uses + 1 WHERE token = ?", (token,))
        return None

    def message(self, body: bytes) -> Reply:
        try:
            envelope = json.loads(body)
            header = envelope["MessageHeader"]
            message_id, from_her = str(header["MessageId"]), int(header["FromHerId"])
            payload = base64.b64decode(envelope["Payload"], validate=True)
        except (ValueError, KeyError, TypeError):
            return _invalid("envelope", "the body is not a message envelope (MessageHeader, Payload)")
        seen = self.db.execute("SELECT ref_id FROM accepted WHERE message_id = ?", (message_id,)).fetchone() or \
            self.db.execute("SELECT ref_id FROM resends WHERE message_id = ?", (message_id,)).fetchone()
        if seen:
            self.db.execute("UPDATE accepted SET repeats = repeats + 1 WHERE message_id = ?", (message_id,))
            return Reply(200, {"messageId": message_id, "refId": seen[0]})
        if header.get("MessageType") != "IPLOS" or header.get("MessageVersion") != "56.0.0":
            return _invalid("envelope.type", "MessageType IPLOS, MessageVersion 56.0.0 expected")
        if int(header.get("ToHerId", 0)) != self.to_her_id:
            return _invalid("envelope.to", f"ToHerId is not this registry's ({self.to_her_id})")
        if from_her not in self.register:
            return _invalid("envelope.from", f"FromHerId {from_her} is not in the address register")
        try:
            xml = verify_signed(decrypt(payload, self.registry_cert, self.registry_key), self.ca, self.senders)
        except PayloadRefused as exc:
            return _invalid(exc.code, str(exc))
        issues = self.serializer.validate(xml)
        if issues:
            return _invalid("xsd", f"line {issues[0].line}: {issues[0].message}"[:500])
        return self._sequence(message_id, from_her, xml)

    def _sequence(self, message_id: str, her_id: int, xml: bytes) -> Reply:
        root = etree.fromstring(xml)
        kommune = root.find(f"{NS}Kommune").get("kommuneNr")
        if kommune != self.register[her_id]:
            return _invalid("envelope.from", f"kommune {kommune} is not HER-id {her_id}'s ({self.register[her_id]})")
        rows = []
        for n in root.iter(f"{NS}Notifikasjon"):
            event = n[0]
            rows.append((kommune, int(n.get("notifikasjonLopeNr")), n.get("notifikasjonGUID"),
                         n.get("notifikasjonForrigeGUID"), n.get("statusNotifikasjon"), n.get("notifikasjonRef"),
                         etree.QName(event).localname, event.get("hendelseGUID"), message_id))
        day = (root.find(f"{NS}Notifikasjon").get("notifikasjonTid") or "")[:10]
        if (kommune, day) in self.reject:
            return _invalid("sandbox.rejected", f"the sandbox was told to refuse {kommune}'s message of {day}")
        # the check and the insert in one write transaction: another worker may hold a retry of this message
        self.db.execute("BEGIN IMMEDIATE")
        try:
            reply = self._continue(message_id, her_id, kommune, day, rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT" if reply.accepted_new else "ROLLBACK")
        return reply

    def _continue(self, message_id: str, her_id: int, kommune: str, day: str, rows: list[tuple]) -> Reply:
        seen = self.db.execute("SELECT ref_id FROM accepted WHERE message_id = ?", (message_id,)).fetchone()
        if seen:
            return Reply(200, {"messageId": message_id, "refId": seen[0]})
        last = self.db.execute("SELECT max(seq) FROM notifications WHERE kommune = ?", (kommune,)).fetchone()[0] or 0
        if rows[0][1] <= last:
            return self._resend(message_id, kommune, rows)
        last_guid = NIL_GUID if last == 0 else self.db.execute(
            "SELECT guid FROM notifications WHERE kommune = ? AND seq = ?", (kommune, last)).fetchone()[0]
        expected_seq, expected_guid = last + 1, last_guid
        for row in rows:
            if row[1] != expected_seq:
                return _invalid("sequence", f"notifikasjonLopeNr {row[1]} where {expected_seq} was expected")
            if row[3] != expected_guid:
                return _invalid("chain", f"notification {row[1]}: notifikasjonForrigeGUID {row[3]} is not "
                                         f"{expected_guid}, the last accepted notification's GUID")
            expected_seq, expected_guid = row[1] + 1, row[2]
        ref = str(uuid.uuid4())
        self.db.execute("INSERT INTO accepted (message_id, her_id, kommune, ref_id, day, first_seq, last_seq, "
                        "last_guid, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (message_id, her_id, kommune, ref, day, rows[0][1], rows[-1][1], rows[-1][2], time.time()))
        self.db.executemany("INSERT INTO notifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return Reply(200, {"messageId": message_id, "refId": ref}, accepted_new=True)

    def _resend(self, message_id: str, kommune: str, rows: list[tuple]) -> Reply:
        stored = {r[0]: r for r in self.db.execute(
            "SELECT seq, guid, status, event_guid FROM notifications WHERE kommune = ? AND seq BETWEEN ? AND ?",
            (kommune, min(r[1] for r in rows), max(r[1] for r in rows)))}
        for row in rows:
            known = stored.get(row[1])
            if known is None or (known[1], known[2], known[3]) != (row[2], row[4], row[7]):
                return _invalid("sequence", f"notifikasjonLopeNr {row[1]} was accepted before with other content, "
                                            f"or a resend reaches past the last accepted notification")
        ref = str(uuid.uuid4())
        self.db.execute("INSERT INTO resends VALUES (?, ?, ?, ?, ?, ?)",
                        (message_id, kommune, ref, rows[0][1], rows[-1][1], time.time()))
        return Reply(200, {"messageId": message_id, "refId": ref}, accepted_new=True)


def accepted_notifications(folder: Path) -> list[tuple]:
    """(kommune, seq, guid, previous_guid, status, ref_guid, event_type, event_guid) in acceptance order."""
    with sqlite3.connect(SandboxFiles(Path(folder), Path(".")).database) as db:
        return db.execute("SELECT n.kommune, n.seq, n.guid, n.previous_guid, n.status, n.ref_guid, n.event_type, "
                          "n.event_guid FROM notifications n JOIN accepted a USING (message_id) "
                          "ORDER BY a.rowid, n.seq").fetchall()


def accepted_messages(folder: Path) -> list[tuple]:
    """(kommune, day, first_seq, last_seq, message_id, ref_id, repeats) in acceptance order."""
    path = SandboxFiles(Path(folder), Path(".")).database
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute("SELECT kommune, day, first_seq, last_seq, message_id, ref_id, repeats FROM accepted "
                          "ORDER BY rowid").fetchall()
