"""The message as the registry receives it: signed, then encrypted, in a JSON envelope (delivery.md).

The payload is CMS SignedData (SHA-256, the sender's certificate included) of the message bytes,
wrapped in CMS EnvelopedData to the registry's certificate, both built by `cryptography`'s PKCS#7
builders (its EnvelopedData offers AES-128-CBC and AES-256-CBC; AES-256-CBC is the default and the
setting `content_encryption` chooses). `MessageId` is deterministic, so a retry after a lost
answer carries the same bytes and the same id and the registry can recognise it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from transforms.deliver.config import CONTENT_ENCRYPTION, PayloadSettings
from transforms.submit.ledger import NAMESPACE

MESSAGE_TYPE = "IPLOS"
MESSAGE_VERSION = "56.0.0"


def message_id(kommune: str, first_seq: int, sha256: str) -> str:
    """UUID5 of municipality, first sequence number and the SHA-256 of the message bytes."""
    return str(uuid.uuid5(NAMESPACE, f"message|{kommune}|{first_seq}|{sha256}"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signed_then_encrypted(data: bytes, payload: PayloadSettings) -> bytes:
    """DER CMS EnvelopedData (to the registry) of the DER CMS SignedData (by the sender) of `data`."""
    signed = (pkcs7.PKCS7SignatureBuilder().set_data(data)
              .add_signer(payload.signing_certificate, payload.signing_key, hashes.SHA256())
              .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    return (pkcs7.PKCS7EnvelopeBuilder().set_data(signed).add_recipient(payload.recipient_certificate)
            .set_content_encryption_algorithm(CONTENT_ENCRYPTION[payload.content_encryption])
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))


@dataclass(frozen=True)
class Envelope:
    message_id: str
    from_her_id: int
    to_her_id: int
    payload: bytes  # DER CMS

    def body(self) -> bytes:
        """The JSON the API receives and the directory route writes."""
        return json.dumps({
            "MessageHeader": {"FromHerId": self.from_her_id, "ToHerId": self.to_her_id,
                              "MessageType": MESSAGE_TYPE, "MessageVersion": MESSAGE_VERSION,
                              "MessageId": self.message_id},
            "Payload": base64.b64encode(self.payload).decode("ascii"),
        }).encode("utf-8")


def build_envelope(data: bytes, msg_id: str, from_her_id: int, payload: PayloadSettings) -> Envelope:
    return Envelope(msg_id, from_her_id, payload.to_her_id, signed_then_encrypted(data, payload))
