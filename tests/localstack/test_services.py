"""S3, Kinesis and SQS behave on LocalStack as the kit needs them, reached the two standard ways:
the SDK's AWS_ENDPOINT_URL variable (S3, as the Lambda code does) and localstack-client's session (the tier's
clients: Kinesis, SQS)."""

from __future__ import annotations

import secrets
from collections import Counter
from urllib.parse import urlsplit

import boto3

from servingkit.localcloud import processes
from servingkit.localcloud.emulator import LOCALHOST


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_s3_versioned_objects_through_the_standard_endpoint_variable(pointed):
    s3 = boto3.client("s3")  # the SDK's own variable, as the Lambda code reaches an emulator
    bucket = _name("models")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="model.skops", Body=b"v1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="model.skops", Body=b"v2")

    # The model store pins the object version it verified; older versions must stay readable.
    assert s3.get_object(Bucket=bucket, Key="model.skops", VersionId=first)["Body"].read() == b"v1"
    assert s3.get_object(Bucket=bucket, Key="model.skops")["Body"].read() == b"v2"


def test_kinesis_multi_shard_round_trip_keeps_every_record_once_and_in_order(aws):
    kinesis = aws.client("kinesis")
    stream = _name("rides")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    sent = [f"ride-{i}".encode() for i in range(300)]
    resp = kinesis.put_records(
        StreamName=stream, Records=[{"Data": d, "PartitionKey": f"key-{i}"} for i, d in enumerate(sent)]
    )
    assert resp["FailedRecordCount"] == 0

    got: list[bytes] = []
    shards_used: Counter[str] = Counter()
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        records = kinesis.get_records(ShardIterator=it, Limit=1000)["Records"]
        sequence = [int(r["SequenceNumber"]) for r in records]
        assert sequence == sorted(sequence)
        got += [r["Data"] for r in records]
        shards_used[shard["ShardId"]] = len(records)

    assert sorted(got) == sorted(sent)
    assert len(shards_used) == 2 and all(shards_used.values())


def test_sqs_through_localstack_client_session(localstack, aws):
    host = urlsplit(localstack.endpoint).netloc
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=_name("dlq"))["QueueUrl"]
    # LOCALSTACK_HOST + path strategy: queue URLs point at 127.0.0.1, usable by any HTTP client.
    assert urlsplit(url).netloc == host and urlsplit(url).path.startswith("/queue/")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])

    bodies: list[str] = []
    while len(bodies) < 10:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert messages, f"only {len(bodies)} of 10 messages came back"
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )
    assert sorted(bodies) == sorted(f"m{i}" for i in range(10))


def test_everything_listens_on_loopback_only(localstack):
    if localstack.instance is None:  # reusing $LOCALSTACK_ENDPOINT: its processes are not ours to inspect
        assert urlsplit(localstack.endpoint).hostname in (LOCALHOST, "localhost")
        return
    listeners = processes.listening_sockets(localstack.instance.pid)
    # The gateway plus kinesis-mock's two ports (plain and TLS), all on 127.0.0.1.
    assert (LOCALHOST, localstack.instance.port) in listeners
    assert len(listeners) >= 3
    assert processes.exposed_listeners(localstack.instance.pid) == []
