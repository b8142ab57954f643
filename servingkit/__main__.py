"""`python -m servingkit`: the `servingkit` command."""

from servingkit.cli import main

if __name__ == "__main__":
    main(prog_name="servingkit")
