"""`make demo` end to end (transfer/demo.py as a process): it finishes, and its witnessing step shows each
node's checkpoint cosigned by the other node's witness and the standalone witness, verified with their keys; a
receipt's bundle verified offline against that witness policy; and transfer-audit passing over both nodes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def test_the_demo_shows_checkpoints_witnessed_by_the_peer_and_the_standalone_witness() -> None:
    """The demo exits 0 with "Demo finished."; step 12 prints node 01's checkpoint with its log signature and the
    two cosignature lines (79's witness, the standalone one), check_witnessed's 2 of 2 at quorum 2 naming the
    pinned key files, and node 79's checkpoint cosigned by 01's witness and the standalone one; step 13's bundle is WITNESSED 2 of 2;
    step 14's audit passes with offers checked."""
    done = subprocess.run(
        [sys.executable, "-m", "transfer.demo"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert out.rstrip().endswith("Demo finished.")
    step = out[out.index("12. Witnesses:") : out.index("13. ")]
    signers = re.findall(r"^   \| \u2014 (\S+) ", step, re.M)
    assert signers == ["hocba.invalid/province/01/log", "hocba.invalid/province/79/witness", "hocba.invalid/witness"]
    assert "verifies with the log key pki01/log.vkey" in step
    assert "2 of 2 cosignatures verifying (quorum 2):" in step
    assert "hocba.invalid/province/79/witness with pki79/witness.vkey" in step
    assert "hocba.invalid/witness with witness/witness.vkey" in step
    assert re.search(
        r"node 79's latest checkpoint \(\d+ entries\) likewise, 2 of 2 cosignatures verifying \(quorum 2\): "
        r"hocba.invalid/province/01/witness and hocba.invalid/witness",
        step,
    )
    bundle = out[out.index("13. ") : out.index("14. ")]
    assert "WITNESSED: 2 of 2 needed cosignatures verify" in bundle
    audit = out[out.index("14. ") : out.index("15. Both nodes stopped")]
    assert "RESULT: PASSED" in audit and re.search(r"offers acknowledged +[1-9]", audit)
    assert re.search(r"^   01: log verified: ", out, re.M) and re.search(r"^   79: log verified: ", out, re.M)
