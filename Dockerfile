# The Lambda image of both functions (stream scorer and API); CDK overrides CMD per function.
# Base: AWS's Lambda Python 3.11 image, pinned to a dated tag (multi-arch: arm64 and x86_64).
# To pin the digest too: docker buildx imagetools inspect public.ecr.aws/lambda/python:<tag>
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11.2026.02.28.00
FROM ${BASE_IMAGE}

# Runtime dependencies only (no CDK, MLflow server or test tools), wheels only: nothing is compiled,
# so no compiler or headers are installed or left behind. One layer, no pip cache.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --only-binary=:all: --target "${LAMBDA_TASK_ROOT}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The function code last, so a code change rebuilds one small layer.
COPY lambda_fn/ ${LAMBDA_TASK_ROOT}/lambda_fn/

CMD ["lambda_fn.handler.stream_handler"]
