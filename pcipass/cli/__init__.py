"""The command-line interface (typer). Everything here is presentation: the library never prints."""
