"""`python -m fixtureweb ...` runs the `fixtures` command group."""

from fixtureweb.cli import fixtures_cli

if __name__ == "__main__":
    fixtures_cli(prog_name="python -m fixtureweb")
