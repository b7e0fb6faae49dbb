"""Defended merging, the stage between probes and merge: Defense-Aware Merging (`guard.defenses.dam`)
and EnchTable safety-vector reinjection (`guard.defenses.enchtable`). Concrete masks are shared
(`guard.defenses.masks`). This stage imports only stages to its left (artifacts, signing, merge)."""
