"""Safety attacks on the LM family: the safety-stripping fine-tune, and the safety pair built with it."""

from attacks.safety.stripping import SafetyPair, build_harmful_copy, build_safety_pair, stripping_data

__all__ = ["SafetyPair", "build_harmful_copy", "build_safety_pair", "stripping_data"]
