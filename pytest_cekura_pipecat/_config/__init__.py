"""Config and cases: what the user declared, validated into typed values.

Enters: ini keys and flags, ``cekura.toml`` documents, ``@pytest.mark.cekura`` kwargs, CI
variables (the shard). Leaves: ``Settings`` and ``Case`` values (with thresholds and rooms),
or one ``ConfigError`` line naming the file, case and field.
May import: ``_api`` and the boundary modules. No I/O beyond reading files and the
environment.
"""
