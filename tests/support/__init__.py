"""What the tests build on: fake hosts (fakehost.py) and a fake kernel reacting to binding writes
(fakekernel.py), the hosts each family of tests shares (*_hosts.py), the CLI run in-process (cli.py), golden
files (golden.py) and the emitters' schemas (emit_schemas.py)."""
