"""Teacher handoff and signature verification.

    python -m bench.handoff --tasks 1000

1. A node process with one subject teacher holding `--tasks` pending
   signatures (maths in 25 classes of 40 pupils, one page each), seeded through
   the API; then the RecordDeparture call that hands all of them to a
   replacement is timed (median of --runs fresh nodes). Every moved task is a
   log entry in the same transaction.
2. Signatures verified per second for each key type: the raw public-key
   operation, what the node does per signature (the certificate's key parsed
   once and remembered), and with the certificate parsed from DER every time.
Prints a summary on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.harness import NodeProcess, Workdir, emit
from transfer.client import ClientTls, TransferClient
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA
from transfer.domain.signatures import verify_signature
from transfer.v1 import pages_pb2, staff_pb2

YEAR = "2026-2027"


def _handoff_once(tasks: int) -> dict[str, float]:
    with Workdir() as work:
        node = NodeProcess(work, f"sqlite:///{work.path / 'node.db'}")
        try:
            tls = {n: ClientTls.from_pki(work.pki, n) for n in ("province-admin", "school-admin-S1", "school-S1")}
            admin = TransferClient(node.address, tls["province-admin"], timeout=60)
            admin.register_school("S1", "Bench school")
            school_admin = TransferClient(node.address, tls["school-admin-S1"], timeout=60)
            system = TransferClient(node.address, tls["school-S1"], timeout=60)
            ca = SigningCA.load(work.pki)
            ids = []
            for code in ("TOAN", "TOAN2"):
                pem, _ = ca.teacher(code, "ecdsa", write=False)
                ids.append(school_admin.register_teacher(code, code, [pem]).id)
            classes = [f"3A{i}" for i in range(25)]
            for klass in classes:
                school_admin.assign_duty((pages_pb2.SIGNER_ROLE_SUBJECT, YEAR, klass, "toan"), ids[0])
            started = time.perf_counter()
            for i in range(tasks):
                code = uuid.uuid4().hex
                system.register_record(code, f"{i:012d}", 1)
                system.add_page(code, YEAR, 3, classes[i % 25], b"%PDF", [(pages_pb2.SIGNER_ROLE_SUBJECT, "toan")])
            seed_s = time.perf_counter() - started
            today = datetime.now(UTC).astimezone().date().isoformat()
            t0 = time.perf_counter()
            handoff, _ = school_admin.record_departure(
                ids[0], staff_pb2.DEPARTURE_REASON_TRANSFER, today, replacement=ids[1]
            )
            handoff_s = time.perf_counter() - t0
            assert handoff.moved_tasks == tasks, handoff
            for c in (admin, school_admin, system):
                c.close()
        finally:
            node.stop()
    return {"handoff_s": handoff_s, "seed_s": seed_s}


def _verify_rates(seconds: float) -> dict[str, dict[str, float]]:
    out = {}
    with Workdir() as work:
        ca = SigningCA(work.path, not_before=datetime.now(UTC) - timedelta(days=1))
        digest = bytes(range(32))
        for kind in ("rsa", "ecdsa", "ed25519"):
            pem, key = ca.teacher(kind, kind, write=False)
            der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
            sig = sign_digest(key, digest)
            public = x509.load_der_x509_certificate(der)
            assert verify_signature(der, digest, sig)
            rates = {}
            for label, fn in (
                ("raw", lambda public=public, sig=sig: _raw(public, digest, sig)),
                # what the node does per signature: the certificate's key is parsed once and remembered
                ("node", lambda der=der, sig=sig: verify_signature(der, digest, sig)),
                # the certificate parsed from DER for every signature (the node did so before)
                (
                    "with_certificate_load",
                    lambda der=der, sig=sig: _raw(x509.load_der_x509_certificate(der), digest, sig),
                ),
            ):
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    fn()
                    n += 1
                rates[label] = n / (time.perf_counter() - start)
            out[kind] = rates
    return out


def _raw(cert: x509.Certificate, digest: bytes, sig: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, digest, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(sig, digest, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(sig, digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--verify-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(argv)
    runs = [_handoff_once(ns.tasks) for _ in range(ns.runs)]
    times = sorted(r["handoff_s"] for r in runs)
    print(
        f"handoff of {ns.tasks} pending tasks: median {statistics.median(times) * 1000:.0f} ms "
        f"(min {times[0] * 1000:.0f}, max {times[-1] * 1000:.0f}) over {ns.runs} runs",
        file=sys.stderr,
    )
    rates = _verify_rates(ns.verify_seconds)
    for kind, r in rates.items():
        print(
            f"signature verification {kind:<8}: {r['raw']:8,.0f}/s raw, {r['node']:8,.0f}/s as the node does it "
            f"(key remembered), {r['with_certificate_load']:8,.0f}/s parsing the certificate each time",
            file=sys.stderr,
        )
    result: dict[str, Any] = {
        "benchmark": "handoff",
        "tasks": ns.tasks,
        "handoff_s": {"median": statistics.median(times), "min": times[0], "max": times[-1], "runs": times},
        "verify_per_s": rates,
    }
    emit(result, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
