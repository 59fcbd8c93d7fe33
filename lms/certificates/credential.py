"""Open Badges 3.0: each issued certificate as a W3C Verifiable Credential secured as a JWT.

The JWT follows Open Badges 3.0 §8.2 (VC-JWT): the payload is the
``OpenBadgeCredential`` itself plus the registered claims ``iss`` (the
issuer's id), ``jti`` (the credential's id), ``nbf`` (``validFrom``) and
``sub`` when the subject has an id; the header carries ``alg: EdDSA``,
``kid`` and the public ``jwk``. The public key is also published as a JWK
Set at ``/.well-known/jwks.json``, so anyone can check a credential with
any JOSE library and no call to us; whether it was revoked since is what
``GET /api/v1/certificates/verify/{number}`` (the credential's ``id``) says.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lms.config import ConfigError, Settings
from lms.db import Row

CONTEXT = [
    "https://www.w3.org/ns/credentials/v2",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
]
JWKS_PATH = "/.well-known/jwks.json"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public_jwk: dict[str, str]
    kid: str

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> SigningKey:
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = _b64url(raw)
        # RFC 7638 thumbprint: members in lexicographic order, no spaces.
        thumbprint = _b64url(hashlib.sha256(json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x},
                                                       separators=(",", ":")).encode()).digest())  # fmt: skip
        return cls(private, {"kty": "OKP", "crv": "Ed25519", "x": x}, thumbprint)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.public_jwk, "kid": self.kid, "use": "sig", "alg": "EdDSA"}]}


def load_signing_key(config: Settings) -> SigningKey:
    """``certificates.signing_key`` (PEM or a base64url seed); outside production, derived from the secret key."""
    secret = config.certificates.signing_key
    if secret is None:
        if config.is_production:
            raise ConfigError("LMS_CERTIFICATES_SIGNING_KEY: production needs the Ed25519 key that signs credentials")
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lms certificate signing key").derive(
            config.secret_key.encode()
        )
        return SigningKey.from_private(Ed25519PrivateKey.from_private_bytes(seed))
    text = secret.get_secret_value().strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"LMS_CERTIFICATES_SIGNING_KEY: not an Ed25519 private key ({err})") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("LMS_CERTIFICATES_SIGNING_KEY: the key must be Ed25519")
    return SigningKey.from_private(key)


def _iso(value: Any) -> str:
    text: str = value.isoformat().replace("+00:00", "Z")
    return text


def open_badge_credential(certificate: Row, *, base_url: str, app_name: str) -> dict[str, Any]:
    """The OpenBadgeCredential of an issued certificate (no proof; the JWT is the proof)."""
    base = base_url.rstrip("/")
    salt = hashlib.sha256(str(certificate["id"]).encode()).hexdigest()[:16]
    email_hash = hashlib.sha256((certificate["student_email"] + salt).encode()).hexdigest()
    return {
        "@context": CONTEXT,
        "id": f"{base}/api/v1/certificates/verify/{certificate['certificate_number']}",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "issuer": {"id": f"{base}/api/v1/certificates/issuer", "type": ["Profile"], "name": app_name, "url": base},
        "validFrom": _iso(certificate["issued_at"]),
        "name": f"{certificate['course_title']}: certificate of completion",
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "activityEndDate": _iso(certificate["completion_date"]),
            "identifier": [
                {"type": "IdentityObject", "identityType": "name", "hashed": False,
                 "identityHash": certificate["student_name"]},
                {"type": "IdentityObject", "identityType": "emailAddress", "hashed": True,
                 "identityHash": f"sha256${email_hash}", "salt": salt},
            ],
            "achievement": {
                "id": f"{base}/api/v1/courses/{certificate['course_id']}",
                "type": ["Achievement"],
                "achievementType": "Course",
                "name": certificate["course_title"],
                "description": f"Completion of the course {certificate['course_title']}.",
                "criteria": {"narrative": "Completed every published lesson of the course."},
                "creator": {"id": f"{base}/api/v1/certificates/issuer", "type": ["Profile"], "name": app_name},
            },
        },
        "credentialSchema": [{
            "id": "https://purl.imsglobal.org/spec/ob/v3p0/schema/json/ob_v3p0_achievementcredential_schema.json",
            "type": "1EdTechJsonSchemaValidator2019",
        }],
    }  # fmt: skip


def issuer_profile(*, base_url: str, app_name: str, key: SigningKey) -> dict[str, Any]:
    base = base_url.rstrip("/")
    return {
        "@context": CONTEXT,
        "id": f"{base}/api/v1/certificates/issuer",
        "type": ["Profile"],
        "name": app_name,
        "url": base,
        "jwks_uri": f"{base}{JWKS_PATH}",
        "publicKey": {**key.public_jwk, "kid": key.kid},
    }


def sign_credential(credential: dict[str, Any], key: SigningKey) -> str:
    claims = {
        **credential,
        "iss": credential["issuer"]["id"],
        "jti": credential["id"],
        "nbf": int(_parse_time(credential["validFrom"])),
    }
    headers = {"kid": key.kid, "typ": "JWT", "jwk": key.public_jwk}
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers=headers)


def _parse_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
