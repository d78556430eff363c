"""Certificate toolkit: keys, CSRs, parsing, bundles and policy checks as pure functions over cryptography."""
