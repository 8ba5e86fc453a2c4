"""The registry's side of the payload: decrypt the EnvelopedData, verify the SignedData inside it.

`cryptography` decrypts (`pkcs7_decrypt_der`) but has no CMS signature verification, so the
SignedData is parsed with asn1crypto and each step is checked with `cryptography`: the signer's
certificate is among those included, was issued by the sandbox's CA, is valid today and is the one
the address register holds for the sender; the `messageDigest` attribute is the SHA-256 of the
content; the signature over the signed attributes verifies with the certificate's key.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7


class PayloadRefused(ValueError):
    """The payload cannot be opened or trusted; `code` is the validationCode the registry answers with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def decrypt(payload: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    try:
        return pkcs7.pkcs7_decrypt_der(payload, certificate, key, [])
    except ValueError as exc:
        raise PayloadRefused("payload.decrypt", f"the payload cannot be decrypted with the registry's key "
                                                f"(encrypted to another certificate?): {exc}") from None


@functools.lru_cache(maxsize=64)
def _certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=64)
def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signer_certificate(signed: acms.SignedData, signer: acms.SignerInfo) -> x509.Certificate:
    sid = signer["sid"]
    for choice in signed["certificates"] or []:
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            match = (cert.serial_number == sid.chosen["serial_number"].native
                     and cert.issuer.dump() == sid.chosen["issuer"].dump())  # DER: Name.__eq__ is slow
        else:
            match = cert.key_identifier == sid.chosen.native
        if match:
            return _certificate(cert.dump())
    raise PayloadRefused("signature.no_certificate", "the signer's certificate is not included in the SignedData")


def verify_signed(data: bytes, ca: x509.Certificate, registered: list[x509.Certificate],
                  now: dt.datetime | None = None) -> bytes:
    """The signed content, if the signature and the signer's certificate hold; else PayloadRefused."""
    try:
        info = acms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise PayloadRefused("signature.missing", "the decrypted payload is not CMS SignedData")
        signed = info["content"]
        content = signed["encap_content_info"]["content"].native
        signers = list(signed["signer_infos"])
    except (ValueError, TypeError, KeyError) as exc:
        raise PayloadRefused("signature.malformed", f"the SignedData cannot be read: {exc}") from None
    if not signers or content is None:
        raise PayloadRefused("signature.missing", "the SignedData has no signer or no content")
    signer = signers[0]
    cert = _signer_certificate(signed, signer)
    now = now or dt.datetime.now(dt.UTC)
    if not _issued_by(cert, ca):
        raise PayloadRefused("certificate.chain", "the signer's certificate was not issued by a trusted CA "
                                                  f"({cert.issuer.rfc4514_string()})")
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise PayloadRefused("certificate.expired", "the signer's certificate is not valid today")
    if all(cert != known for known in registered):
        raise PayloadRefused("certificate.unregistered", "the signer's certificate is not the sender's entry in "
                                                         "the address register")
    attributes = signer["signed_attrs"]
    if not attributes:
        raise PayloadRefused("signature.attributes", "the SignedData has no signed attributes")
    digest = next((a["values"][0].native for a in attributes if a["type"].native == "message_digest"), None)
    if signer["digest_algorithm"]["algorithm"].native != "sha256" or digest != hashlib.sha256(content).digest():
        raise PayloadRefused("signature.digest", "the message digest does not match the content (SHA-256)")
    signed_bytes = b"\x31" + attributes.dump()[1:]  # signed over as a SET, not the [0] it is tagged with
    algorithm = signer["signature_algorithm"].signature_algo
    scheme = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO) if algorithm == "rsassa_pss" \
        else padding.PKCS1v15()
    try:
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signer["signature"].native, signed_bytes, scheme, hashes.SHA256())
    except InvalidSignature:
        raise PayloadRefused("signature.invalid", "the signature does not verify with the signer's "
                                                  "certificate") from None
    return content
