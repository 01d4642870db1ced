"""PAdES signature of a rendered PDF (pyHanko; the optional ``sign`` extra).

``load_identity`` reads the signer's PKCS#12 file and refuses, in one line, anything a bank's
signing certificate must not be: an unreadable file or wrong passphrase, a certificate that is
not yet or no longer valid, one whose key usage does not allow signing (``digitalSignature`` or
``nonRepudiation``), a CA certificate, or a key weaker than RSA-2048 / EC P-256. It needs no
pyHanko: only :func:`sign_pdf` imports it, so the report path loads pyHanko only when a signature
is asked for.

``sign_pdf`` appends the signature as an incremental update after the PDF/A-3 render: every
byte of the render (the context JSON attachment, the XMP metadata, the document information)
is kept as it was, and the signature covers the whole file. The profile is PAdES baseline B-B
(``ETSI.CAdES.detached``, the signing certificate bound by ``signing-certificate-v2``, the
signing time in the signature dictionary): no time-stamp authority can be reached from here; a
bank that keeps packs for years adds one (B-T) and revocation data (B-LT / B-LTA), see
docs/methodology.md §21.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from compliance.errors import InputError, UsageError

PASSPHRASE_ENV = "COMPLIANCE_PDF_PASSPHRASE"
FIELD_NAME = "ComplianceSignature"
LEVEL = "PAdES-B-B"
MIN_RSA_BITS = 2048
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
EXTRA = "pip install 'compliance[sign]'"


@dataclass(frozen=True)
class SigningIdentity:
    """A signer's certificate and key, checked; the secret parts are never printed."""

    path: Path
    subject: str
    issuer: str
    certificate_sha256: str
    not_after: str
    pkcs12: bytes = field(repr=False)
    passphrase: bytes | None = field(repr=False)

    def record(self) -> dict:
        """What the report run records about the signature (no secret)."""
        return {"level": LEVEL, "subject": self.subject, "issuer": self.issuer,
                "certificate_sha256": self.certificate_sha256, "not_after": self.not_after}


def _utc(cert, name: str) -> datetime:
    value = getattr(cert, f"{name}_utc", None)  # cryptography >= 42
    return value if value is not None else getattr(cert, name).replace(tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pyhanko_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyhanko") is not None


def load_identity(path: Path, passphrase: str | None, *, at: datetime) -> SigningIdentity:
    """Read and check a PKCS#12 signing identity (at time ``at``); one clear line on any problem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    if not pyhanko_available():
        raise UsageError(f"--sign-pdf needs pyHanko: {EXTRA}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such certificate file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    secret = passphrase.encode("utf-8") if passphrase else None
    try:
        key, cert, _chain = pkcs12.load_key_and_certificates(data, secret)
    except (ValueError, TypeError):
        raise InputError(f"{path}: not a PKCS#12 file, or wrong passphrase (set {PASSPHRASE_ENV})") from None
    if key is None or cert is None:
        raise InputError(f"{path}: the PKCS#12 file must hold a private key and its certificate")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, pub)
            != cert.public_key().public_bytes(serialization.Encoding.DER, pub)):
        raise InputError(f"{path}: the private key does not belong to the certificate")
    subject = cert.subject.rfc4514_string()
    who = f"{path}: certificate {subject!r}"
    start, end = _utc(cert, "not_valid_before"), _utc(cert, "not_valid_after")
    if at < start:
        raise InputError(f"{who} is not valid before {_iso(start)}")
    if at > end:
        raise InputError(f"{who} expired on {_iso(end)}")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise InputError(f"{who} has no key usage: a signing certificate needs digitalSignature or "
                         "nonRepudiation") from None
    if not (usage.digital_signature or usage.content_commitment):
        raise InputError(f"{who} is not a signing certificate (key usage lacks digitalSignature and nonRepudiation)")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise InputError(f"{who} is a CA certificate: sign with a person's or the organisation's "
                             "signing certificate issued by it")
    except x509.ExtensionNotFound:
        pass
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InputError(f"{who} has an RSA-{key.key_size} key; at least RSA-{MIN_RSA_BITS} is required")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            raise InputError(f"{who} uses curve {key.curve.name}; use one of {', '.join(EC_CURVES)}")
    else:
        raise InputError(f"{who} has a {type(key).__name__.lstrip('_')}; PAdES signing here needs RSA or EC")
    fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return SigningIdentity(path=path, subject=subject, issuer=cert.issuer.rfc4514_string(), certificate_sha256=fp,
                           not_after=_iso(end), pkcs12=data, passphrase=secret)


def _writer_class():
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    class KeepMetadataWriter(IncrementalPdfFileWriter):
        """An incremental update that leaves the document's metadata as rendered.

        pyHanko otherwise appends its name to the information dictionary's Producer but writes only
        its own name into the XMP (and stamps ModDate twice from two clock readings): the two would
        disagree, which PDF/A forbids. The signing time is in the signature dictionary (/M).
        """

        def _update_meta(self):
            return None

    return KeepMetadataWriter


def sign_pdf(pdf: bytes, ident: SigningIdentity, *, reason: str) -> bytes:
    """``pdf`` with a PAdES B-B signature appended (an incremental update over the whole file)."""
    from io import BytesIO

    try:
        from pyhanko.pdf_utils.misc import PdfError
        from pyhanko.sign import fields, signers
        from pyhanko.sign.general import SigningError
    except ImportError:  # pragma: no cover - checked by load_identity
        raise UsageError(f"--sign-pdf needs pyHanko: {EXTRA}") from None
    try:
        signer = signers.SimpleSigner.load_pkcs12_data(ident.pkcs12, other_certs=[], passphrase=ident.passphrase)
        meta = signers.PdfSignatureMetadata(field_name=FIELD_NAME, md_algorithm="sha256", reason=reason,
                                            subfilter=fields.SigSeedSubFilter.PADES)
        # invisible, but printable and not hidden: PDF/A requires the Print flag on every widget
        spec = fields.SigFieldSpec(FIELD_NAME, invis_sig_settings=fields.InvisSigSettings(
            set_print_flag=True, set_hidden_flag=False))
        writer = _writer_class()(BytesIO(pdf))
        out = signers.PdfSigner(meta, signer=signer, new_field_spec=spec).sign_pdf(writer)
        return out.getvalue()
    except (SigningError, PdfError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{ident.path}: signing failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
