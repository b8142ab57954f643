"""The kit's AWS resources and its Lambda's event source, run on this machine (not shipped in the image).

Imports go one way, top to bottom:
- `cloud`: `LocalCloud` (emulator + resources + model + poller) and `run_pipeline`, producer to sinks;
- `collector` reads a run back (output stream, DLQ, on-failure queue); `accounting` turns what it read
  into the run's `PipelineSummary`; `traffic` makes and puts the input records (with poison and KPL);
- `poller` plays Lambda's Kinesis event source mapping; `resources` creates what the CDK stack declares
  from `infra.topology`; `emulator` starts moto's server on 127.0.0.1; `faults` tells an emulator
  that died from other errors; `aws_responses` reads error codes and timestamps the same way everywhere;
- `localstack` installs and runs LocalStack; `runtime_api`, `image_function`, `image_session` run the
  function image behind the Lambda Runtime API.
"""
