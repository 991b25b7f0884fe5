"""The baseline of the cold-start benchmark: a bare typer hello-world (run with the same venv's python)."""

import typer

app = typer.Typer()


@app.command()
def main(name: str = "world") -> None:
    print(f"hello {name}")


if __name__ == "__main__":
    app()
