#!/bin/sh
# The base image's entrypoint contract: the handler is the one argument (the image's CMD); with no Runtime
# API in the environment the real image starts its Runtime Interface Emulator, which this stand-in lacks.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  if [ -x /usr/local/bin/aws-lambda-rie ]; then
    exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
  fi
  echo "AWS_LAMBDA_RUNTIME_API is not set and this stand-in base has no runtime interface emulator" 1>&2
  exit 142
fi
exec /var/runtime/bootstrap
