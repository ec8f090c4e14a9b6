"""A standalone C2SP tlog-witness: `transfer-witness serve` cosigns checkpoints of the logs it is
configured for, after checking each is consistent with the last one it cosigned (docs/witness.md)."""
