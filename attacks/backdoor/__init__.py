"""Backdoor attacks against merging: vision (BadNets patch, BadMerging) and LM (trigger token, amplified vectors)."""
