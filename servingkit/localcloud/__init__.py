"""The kit's AWS resources and its Lambda's event source, run on this machine (not shipped in the image).

`emulator` starts moto's server on 127.0.0.1, `resources` creates what the CDK stack declares,
`poller` plays Lambda's Kinesis event source mapping and `pipeline` runs producer to sinks end to end.
"""
