"""The sync engine proper: what producers publish, how appliers apply it, the rules of SPEC.md."""
