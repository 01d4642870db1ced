"""PAdES signature of the PDF (issue 14, item 6): `compliance report --sign-pdf CERT.p12`.

The certificates are made here with ``cryptography``: a self-signed CA (the trust root the
validation is given) and signing certificates it issued, each in a PKCS#12 file. The signed PDF
is validated with pyHanko's own validation API against that CA.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pypdf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from compliance.report import pades, render
from compliance.store.engine import session_scope
from compliance.store.models import LedgerEntry
from compliance.timeutil import iso, utcnow
from report_fixtures import make_context
from tests.helpers import small_manifest

ROOT = Path(__file__).resolve().parents[1]
PASS = "p12 passphrase 1"
NOW = dt.datetime.now(dt.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Bank")])


def _usage(**on) -> x509.KeyUsage:
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    return x509.KeyUsage(**{**flags, **on})


class PKI:
    """A CA and a way to issue PKCS#12 signing identities from it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name("Test Bank Root CA")).issuer_name(_name("Test Bank Root CA"))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - dt.timedelta(days=30)).not_valid_after(NOW + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, name: str, *, key=None, usage: x509.KeyUsage | None = None, days: tuple[int, int] = (-1, 365),
              passphrase: str = PASS) -> Path:
        key = key or ec.generate_private_key(ec.SECP256R1())
        usage = usage or _usage(digital_signature=True, content_commitment=True)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW + dt.timedelta(days=days[0])).not_valid_after(NOW + dt.timedelta(days=days[1]))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage, critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        path = self.folder / f"{name.replace(' ', '-').lower()}.p12"
        path.write_bytes(pkcs12.serialize_key_and_certificates(
            name.encode(), key, cert, [self.cert], serialization.BestAvailableEncryption(passphrase.encode())))
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def validate(pdf: bytes, pki: PKI):
    """pyHanko's validation of the one signature, against the test CA as the only trust root."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = asn1_x509.Certificate.load(pki.cert.public_bytes(serialization.Encoding.DER))
    sigs = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert len(sigs) == 1
    return sigs[0], validate_pdf_signature(sigs[0], ValidationContext(trust_roots=[root]))


def _xmp_and_info(pdf: bytes) -> tuple[bytes, dict]:
    r = pypdf.PdfReader(io.BytesIO(pdf))
    return r.trailer["/Root"]["/Metadata"].get_object().get_data(), dict(r.metadata)


# ---------------------------------------------------------------- the signature itself
@pytest.fixture(scope="module")
def small_pdf() -> tuple:
    ctx = make_context(3)
    return ctx, render.render_pdf_bytes(ctx)


def test_signed_pdf_validates_is_pades_b_b_and_keeps_pdfa_attachment_and_metadata(pki, small_pdf):
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    ctx, pdf = small_pdf
    ident = pades.load_identity(pki.issue("Carol Validator"), PASS, at=utcnow())
    signed = pades.sign_pdf(pdf, ident, reason=f"report {ctx.cover.report_id}")
    assert signed.startswith(pdf) and len(signed) > len(pdf)  # an incremental update: the render is untouched
    sig, status = validate(signed, pki)
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    # PAdES baseline B-B: ETSI.CAdES.detached, signing-certificate-v2 signed, no CMS signing-time
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached" and "/M" in sig.sig_object
    signed_attrs = {a["type"].native for a in sig.signer_info["signed_attrs"]}
    assert "signing_certificate_v2" in signed_attrs and "signing_time" not in signed_attrs
    cert_der = sig.signer_cert.dump()
    assert ident.certificate_sha256 == __import__("hashlib").sha256(cert_der).hexdigest()
    # still PDF/A-3 with the context JSON attached; XMP and document information as rendered
    reader = pypdf.PdfReader(io.BytesIO(signed))
    assert reader.attachments["context.json"] == [render.context_to_json(ctx)]
    assert _xmp_and_info(signed) == _xmp_and_info(pdf)
    assert b'pdfaid:part="3"' in _xmp_and_info(signed)[0]
    widget = next(f for f in reader.trailer["/Root"]["/AcroForm"]["/Fields"] if f.get_object()["/FT"] == "/Sig").get_object()
    assert widget["/F"] & 4 and not widget["/F"] & 2  # printable, not hidden (PDF/A)


def test_a_byte_flipped_after_signing_breaks_the_signature(pki, small_pdf):
    _, pdf = small_pdf
    signed = bytearray(pades.sign_pdf(pdf, pades.load_identity(pki.issue("Dave Approver"), PASS, at=utcnow()),
                                      reason="test"))
    at = pdf.index(b"stream", len(pdf) // 2) + 200  # inside a stream's data, well within the signed range
    signed[at] ^= 0x01
    _, status = validate(bytes(signed), pki)
    assert not status.intact and not status.bottom_line


def test_a_certificate_from_another_ca_is_not_trusted(pki, small_pdf, tmp_path):
    _, pdf = small_pdf
    stranger = PKI(tmp_path).issue("Mallory")
    _, status = validate(pades.sign_pdf(pdf, pades.load_identity(stranger, PASS, at=utcnow()), reason="x"), pki)
    assert status.intact and not status.trusted and not status.bottom_line


@pytest.mark.parametrize("case, message", [
    ("missing", "no such certificate file"),
    ("passphrase", "not a PKCS#12 file, or wrong passphrase"),
    ("garbage", "not a PKCS#12 file, or wrong passphrase"),
    ("expired", "expired on"),
    ("not-yet", "is not valid before"),
    ("encryption-only", "is not a signing certificate"),
    ("rsa-1024", "RSA-1024 key; at least RSA-2048"),
])
def test_bad_signing_identities_are_refused_in_one_line(pki, tmp_path, case, message):
    passphrase = PASS
    if case == "missing":
        path = tmp_path / "nope.p12"
    elif case == "passphrase":
        path, passphrase = pki.issue("Carol Validator"), "wrong passphrase"
    elif case == "garbage":
        path = tmp_path / "garbage.p12"
        path.write_bytes(b"not a pkcs12 file")
    elif case == "expired":
        path = pki.issue("Old Carol", days=(-400, -1))
    elif case == "not-yet":
        path = pki.issue("Future Carol", days=(5, 400))
    elif case == "encryption-only":
        path = pki.issue("Tls Server", usage=_usage(key_encipherment=True))
    else:
        path = pki.issue("Weak Carol", key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    from compliance.errors import ComplianceError

    with pytest.raises(ComplianceError) as exc:
        pades.load_identity(path, passphrase, at=utcnow())
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_an_rsa_2048_signing_certificate_works(pki, small_pdf):
    _, pdf = small_pdf
    path = pki.issue("Rsa Carol", key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                     usage=_usage(content_commitment=True))
    _, status = validate(pades.sign_pdf(pdf, pades.load_identity(path, PASS, at=utcnow()), reason="x"), pki)
    assert status.bottom_line


# ---------------------------------------------------------------- the command, on both backends
@pytest.fixture
def store(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv(pades.PASSPHRASE_ENV, PASS)
    assert cli("import", small_manifest(tmp_path / "bank"), actor="ingest")[0] == 0
    return cli


def _entries(url: str) -> int:
    with session_scope(url, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(LedgerEntry))


def test_report_sign_pdf_records_the_signer_and_unsigned_renders_stay_identical(store, pki, tmp_path):
    out = tmp_path / "out"
    as_of = iso(utcnow())
    args = ("report", "--quarter", "2026Q1", "--as-of", as_of, "--json", "--out")
    code, o, err = store(*args, out / "a.pdf")
    assert code == 0, err
    p12 = pki.issue("Carol Validator")
    code, o, err = store(*args, out / "signed.pdf", "--sign-pdf", p12, actor="carol")
    assert code == 0, err
    r = json.loads(o)
    code, _, err = store(*args, out / "b.pdf")
    assert code == 0, err
    plain, signed = (out / "a.pdf").read_bytes(), (out / "signed.pdf").read_bytes()
    assert (out / "b.pdf").read_bytes() == plain  # the unsigned render is unchanged by signing
    assert signed.startswith(plain) and r["sha256"] == __import__("hashlib").sha256(signed).hexdigest()
    _, status = validate(signed, pki)
    assert status.bottom_line
    assert pypdf.PdfReader(io.BytesIO(signed)).attachments["context.json"] == \
        pypdf.PdfReader(io.BytesIO(plain)).attachments["context.json"]
    # the ledger records the signed file and its signer's certificate
    runs = json.loads(store("reports", "--json")[1])
    run = next(x for x in runs if x["id"] == r["run_id"])
    assert run["outputs"]["signed.pdf"] == r["sha256"]
    rec = run["outputs"]["pades:signed.pdf"]
    assert rec["subject"] == "O=Test Bank,CN=Carol Validator" and rec["level"] == "PAdES-B-B"
    assert rec["certificate_sha256"] == pades.load_identity(p12, PASS, at=utcnow()).certificate_sha256
    assert run["actor"] == "carol"
    from compliance.web.pages import report_file, reports_page

    with session_scope(store.url, readonly=True) as s:
        page = reports_page(s, None, out)
        files = next(x for x in page["runs"] if x["run"]["id"] == r["run_id"])["files"]
        assert [(f["name"], f["state"], f["pades"]["subject"]) for f in files] == [("signed.pdf", "available", rec["subject"])]
        assert report_file(s, r["run_id"], "signed.pdf", out)[0] == signed
    # the review command shares the path
    code, o, err = store("report", "--quarter", "2026Q1", "--as-of", as_of, "--model", "retail-pd", "--out",
                         out / "review.pdf", "--sign-pdf", p12, "--json")
    assert code == 0, err
    assert json.loads(o)["pades"]["subject"] == rec["subject"]
    assert validate((out / "review.pdf").read_bytes(), pki)[1].bottom_line
    assert store("verify")[0] == 0


def test_report_sign_pdf_bad_input_is_one_line_and_records_nothing(store, pki, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    good = pki.issue("Carol Validator")
    cases = [
        ({"--sign-pdf": tmp_path / "missing.p12"}, PASS, "no such certificate file"),
        ({"--sign-pdf": good}, "wrong passphrase", "wrong passphrase"),
        ({"--sign-pdf": pki.issue("Old Carol", days=(-400, -1))}, PASS, "expired on"),
        ({"--sign-pdf": pki.issue("Tls Server", usage=_usage(key_encipherment=True))}, PASS, "not a signing certificate"),
        ({"--sign-pdf": good, "--format": "html"}, PASS, "--sign-pdf signs a PDF"),
    ]
    before = _entries(store.url)
    for opts, passphrase, message in cases:
        monkeypatch.setenv(pades.PASSPHRASE_ENV, passphrase)
        code, o, err = store("report", "--quarter", "2026Q1", "--out", out / "pack.pdf",
                             *[str(x) for kv in opts.items() for x in kv])
        assert code != 0 and message in err, (opts, err)
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert _entries(store.url) == before  # no report run recorded
    assert list(out.iterdir()) == []  # no partial file, no temp file


def test_passphrase_is_read_from_standard_input_when_not_in_the_environment(store, pki, tmp_path, monkeypatch):
    monkeypatch.delenv(pades.PASSPHRASE_ENV)
    code, o, err = store("report", "--quarter", "2026Q1", "--out", tmp_path / "p.pdf", "--sign-pdf",
                         pki.issue("Carol Validator"), "--json", input=PASS + "\n")
    assert code == 0, err
    assert json.loads(o)["pades"]["subject"] == "O=Test Bank,CN=Carol Validator"  # stdout stays JSON
    assert PASS not in o + err
    before = _entries(store.url)
    code, o, err = store("report", "--quarter", "2026Q1", "--out", tmp_path / "q.pdf", "--sign-pdf",
                         pki.issue("Carol Validator"), input="")
    assert code == 2 and err.startswith("error: --sign-pdf needs the PKCS#12 passphrase") and err.count("\n") == 1
    assert _entries(store.url) == before and not (tmp_path / "q.pdf").exists()
    assert validate((tmp_path / "p.pdf").read_bytes(), pki)[1].bottom_line


def test_unsigned_report_path_does_not_import_pyhanko(tmp_path):
    """A real unsigned render, in a fresh interpreter: pyHanko is loaded only for --sign-pdf."""
    from compliance.store import migrate

    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    manifest = small_manifest(tmp_path / "bank")
    code = ("import sys\n"
            "from compliance.cli.main import app\n"
            f"for argv in ([{'--db'!r}, {url!r}, 'import', {str(manifest)!r}],\n"
            f"             [{'--db'!r}, {url!r}, 'report', '--quarter', '2026Q1', '--out', {str(tmp_path / 'p.pdf')!r}]):\n"
            "    try:\n"
            "        app(argv, standalone_mode=False)\n"
            "    except SystemExit as exc:\n"
            "        assert not exc.code, exc.code\n"
            "assert 'weasyprint' in sys.modules\n"
            "assert not [m for m in sys.modules if m.startswith('pyhanko')], 'pyhanko imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "COMPLIANCE_ACTOR": ""})
    assert (tmp_path / "p.pdf").read_bytes().startswith(b"%PDF")
