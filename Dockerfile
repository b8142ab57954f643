# The Lambda image of both functions (stream scorer and API); CDK overrides CMD per function.
# Base: AWS's Lambda Python 3.13 image on Amazon Linux 2023 (glibc 2.34), pinned to a dated tag (multi-arch:
# arm64 and x86_64). Every pin of requirements.txt has a wheel for it (checked by tests/infra/test_wheels.py).
# To pin the digest too: docker buildx imagetools inspect public.ecr.aws/lambda/python:<tag>, then
# `-c base_image=public.ecr.aws/lambda/python:<tag>@sha256:<digest>` (or --build-arg BASE_IMAGE=...).
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.13.2026.06.05.14
FROM ${BASE_IMAGE}

# Runtime dependencies only (no CDK, MLflow server or test tools), wheels only: nothing is compiled,
# so no compiler or headers are installed or left behind. One layer, no pip cache. requirements.txt is
# the runtime lock (`make lock`): every package pinned, and each wheel checked against its sha256.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --only-binary=:all: --require-hashes --target "${LAMBDA_TASK_ROOT}" \
        -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The function code last, so a code change rebuilds one small layer. Compiled here: at run time the
# root filesystem is read-only, so byte code not written now would be recompiled on every cold start.
COPY lambda_fn/ ${LAMBDA_TASK_ROOT}/lambda_fn/
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/lambda_fn"

CMD ["lambda_fn.handler.stream_handler"]
