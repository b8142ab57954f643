"""Operator jobs against a running pipeline (emulator, LocalStack or AWS alike, through plain boto3).

`resources` finds the queue and streams (explicit names or a stack's outputs), `dlq` reads dead letters,
`redrive` puts them back on the input stream, `predictions` tails the output stream. No Click here: the
commands in `servingkit.cli.dlq` / `servingkit.cli.predictions` only parse options and print.
"""
