"""Bucket notifications: MinIO and AWS bodies normalised to AWS records, and Trigger matching."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubelambda.gateway.sources.s3_records import NotificationError, decoded_key, matches, normalise


def minio_body(key: str = "photos%2F2024%2Fmy+cat.jpg", **record: Any) -> dict[str, Any]:
    """A webhook body as MinIO posts it, extra fields and all."""
    body: dict[str, Any] = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": "images/photos/2024/my cat.jpg",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": "2024-05-18T07:34:32.123456789Z",
                "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": "minioadmin"},
                "requestParameters": {
                    "principalId": "minioadmin",
                    "region": "",
                    "sourceIPAddress": "172.18.0.1",
                },
                "responseElements": {
                    "content-length": "0",
                    "x-amz-request-id": "17D0E5F8A3B2C1D0",
                    "x-minio-deployment-id": "cd7a0eb7-a1f9-48d9-b21a-56366d75cfdd",
                    "x-minio-origin-endpoint": "http://172.18.0.6:9000",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {
                        "name": "images",
                        "ownerIdentity": {"principalId": "minioadmin"},
                        "arn": "arn:aws:s3:::images",
                    },
                    "object": {
                        "key": key,
                        "size": 629648,
                        "eTag": "b7ce786cd89b182bfd5ae765557bbc37",
                        "contentType": "image/jpeg",
                        "userMetadata": {"content-type": "image/jpeg"},
                        "sequencer": "17D0E5F8A3B2C1D0",
                    },
                },
                "source": {"host": "172.18.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
            }
        ],
    }
    body["Records"][0].update(record)
    return body


EXPECTED_FROM_MINIO: dict[str, Any] = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "eu-west-1",
    "eventTime": "2024-05-18T07:34:32.123Z",
    "eventName": "ObjectCreated:Put",
    "userIdentity": {"principalId": "minioadmin"},
    "requestParameters": {"sourceIPAddress": "172.18.0.1"},
    "responseElements": {"x-amz-request-id": "17D0E5F8A3B2C1D0", "x-amz-id-2": ""},
    "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "Config",
        "bucket": {
            "name": "images",
            "ownerIdentity": {"principalId": "minioadmin"},
            "arn": "arn:aws:s3:::images",
        },
        "object": {
            "key": "photos/2024/my+cat.jpg",
            "size": 629648,
            "eTag": "b7ce786cd89b182bfd5ae765557bbc37",
            "sequencer": "17D0E5F8A3B2C1D0",
        },
    },
}

# AWS's documented sample record (a 2.1 Put), as S3 itself would post it.
AWS_RECORD: dict[str, Any] = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "us-east-1",
    "eventTime": "2019-09-03T19:37:27.192Z",
    "eventName": "ObjectCreated:Put",
    "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
    "requestParameters": {"sourceIPAddress": "205.255.255.255"},
    "responseElements": {
        "x-amz-request-id": "D82B88E5F771F645",
        "x-amz-id-2": "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0",
    },
    "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "828aa6fc-f7b5-4305-8584-487c791949c1",
        "bucket": {
            "name": "DOC-EXAMPLE-BUCKET",
            "ownerIdentity": {"principalId": "A3I5XTEXAMAI3E"},
            "arn": "arn:aws:s3:::lambda-artifacts-deafc19498e3f2df",
        },
        "object": {
            "key": "b21b84d653bb07b05b1e6b33684dc11b",
            "size": 1305107,
            "eTag": "b21b84d653bb07b05b1e6b33684dc11b",
            "sequencer": "0C0F6F405D6ED209E1",
        },
    },
}


def test_minio_webhook_body_becomes_aws_record() -> None:
    assert normalise(minio_body(), region="eu-west-1") == [EXPECTED_FROM_MINIO]


def test_aws_body_passes_through_except_the_bucket_arn() -> None:
    record = copy.deepcopy(AWS_RECORD)
    record["glacierEventData"] = {"restoreEventData": {"lifecycleRestoreStorageClass": "x"}}
    (got,) = normalise({"Records": [record]}, region="eu-west-1")
    expected = copy.deepcopy(record)
    # The ARN is derived from the bucket name, never trusted from the sender.
    expected["s3"]["bucket"]["arn"] = "arn:aws:s3:::DOC-EXAMPLE-BUCKET"
    assert got == expected
    got["glacierEventData"]["restoreEventData"]["lifecycleRestoreStorageClass"] = "changed"
    assert record["glacierEventData"]["restoreEventData"]["lifecycleRestoreStorageClass"] == "x"


def test_aws_record_keeps_its_own_event_version() -> None:
    record = dict(AWS_RECORD, eventVersion="2.2", eventName="Replication:OperationFailed")
    (got,) = normalise({"Records": [record]}, region="x")
    assert got["eventVersion"] == "2.2"


def test_input_is_not_modified_and_output_is_json() -> None:
    body = minio_body()
    before = copy.deepcopy(body)
    got = normalise(body, region="r")
    assert body == before
    assert json.loads(json.dumps(got)) == got


@pytest.mark.parametrize(
    ("minio_key", "aws_key", "decoded"),
    [
        ("plain.txt", "plain.txt", "plain.txt"),
        ("a%2Fb%2Fc.txt", "a/b/c.txt", "a/b/c.txt"),
        ("red+flower.jpg", "red+flower.jpg", "red flower.jpg"),
        ("c%2B%2B.tar.gz", "c%2B%2B.tar.gz", "c++.tar.gz"),
        ("dt%3D2024-05-04%2F_SUCCESS", "dt%3D2024-05-04/_SUCCESS", "dt=2024-05-04/_SUCCESS"),
        ("10%3A47%3A07.log", "10%3A47%3A07.log", "10:47:07.log"),
        ("%281%29+copy.pdf", "%281%29+copy.pdf", "(1) copy.pdf"),
        ("caf%C3%A9.txt", "caf%C3%A9.txt", "caf\u00e9.txt"),
        ("100%25.txt", "100%25.txt", "100%.txt"),
    ],
)
def test_keys_are_encoded_as_aws_does(minio_key: str, aws_key: str, decoded: str) -> None:
    (record,) = normalise(minio_body(key=minio_key), region="r")
    assert record["s3"]["object"]["key"] == aws_key
    assert decoded_key(record) == decoded


def test_aws_keys_are_kept_verbatim() -> None:
    record = copy.deepcopy(AWS_RECORD)
    # Re-encoding would turn "%7E" into "~": an AWS key is already in AWS's form.
    record["s3"]["object"]["key"] = "a/%7Eb+c"
    (got,) = normalise({"Records": [record]}, region="r")
    assert got["s3"]["object"]["key"] == "a/%7Eb+c"


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"awsRegion": "us-west-2"}, "awsRegion", "us-west-2"),
        ({"awsRegion": ""}, "awsRegion", "eu-west-1"),
        ({"awsRegion": None}, "awsRegion", "eu-west-1"),
        ({"eventName": "s3:ObjectRemoved:Delete"}, "eventName", "ObjectRemoved:Delete"),
        ({"eventName": "ObjectCreated:Copy"}, "eventName", "ObjectCreated:Copy"),
        ({"eventTime": "2024-05-18T07:34:32Z"}, "eventTime", "2024-05-18T07:34:32.000Z"),
        ({"eventTime": "2024-05-18T09:34:32.5+02:00"}, "eventTime", "2024-05-18T07:34:32.500Z"),
        ({"eventTime": "yesterday"}, "eventTime", "yesterday"),
        ({"eventSource": "ceph:s3", "eventVersion": "2.2"}, "eventVersion", "2.1"),
        ({"userIdentity": None}, "userIdentity", {"principalId": ""}),
        ({"requestParameters": {}}, "requestParameters", {"sourceIPAddress": ""}),
    ],
)
def test_record_fields(overrides: dict[str, Any], field: str, value: Any) -> None:
    (record,) = normalise(minio_body(**overrides), region="eu-west-1")
    assert record[field] == value


def object_of(**fields: Any) -> dict[str, Any]:
    return {"key": "k", "sequencer": "01", **fields}


@pytest.mark.parametrize(
    ("event_name", "given", "expected"),
    [
        (
            "s3:ObjectCreated:Put",
            object_of(size=5, eTag="e", versionId="v1"),
            {"key": "k", "size": 5, "eTag": "e", "versionId": "v1", "sequencer": "01"},
        ),
        # MinIO leaves out a zero size; AWS always reports one on creation.
        (
            "s3:ObjectCreated:Put",
            object_of(eTag="e"),
            {"key": "k", "size": 0, "eTag": "e", "sequencer": "01"},
        ),
        ("s3:ObjectCreated:Put", object_of(size=0), {"key": "k", "size": 0, "sequencer": "01"}),
        # Deletes carry neither size nor eTag on AWS.
        ("s3:ObjectRemoved:Delete", object_of(), {"key": "k", "sequencer": "01"}),
        ("s3:ObjectRemoved:Delete", object_of(versionId=""), {"key": "k", "sequencer": "01"}),
        ("s3:ObjectRemoved:Delete", {"key": "k"}, {"key": "k", "sequencer": ""}),
    ],
)
def test_object_fields(event_name: str, given: dict[str, Any], expected: dict[str, Any]) -> None:
    body = minio_body(eventName=event_name)
    body["Records"][0]["s3"]["object"] = given
    (record,) = normalise(body, region="r")
    assert record["s3"]["object"] == expected


def test_several_records_keep_their_order() -> None:
    first = copy.deepcopy(AWS_RECORD)
    second = copy.deepcopy(AWS_RECORD)
    second["s3"]["object"]["key"] = "second"
    got = normalise({"Records": [first, second]}, region="r")
    assert [r["s3"]["object"]["key"] for r in got] == [first["s3"]["object"]["key"], "second"]


def broken(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = minio_body()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not a JSON object"),
        ("Records", "not a JSON object"),
        (None, "not a JSON object"),
        ({}, "no Records"),
        ({"Service": "Amazon S3", "Event": "s3:TestEvent"}, "no Records"),
        ({"Records": {}}, "Records is not a list"),
        ({"Records": []}, "Records is empty"),
        ({"Records": ["x"]}, r"Records\[0\] is not an object"),
        ({"Records": [AWS_RECORD, 1]}, r"Records\[1\] is not an object"),
        (broken(("Records", 0, "s3"), KeyError), "no s3.bucket.name"),
        (broken(("Records", 0, "s3"), "x"), r"Records\[0\].s3 is not an object"),
        (broken(("Records", 0, "s3", "bucket"), []), "s3.bucket is not an object"),
        (broken(("Records", 0, "s3", "bucket", "name"), KeyError), "no s3.bucket.name"),
        (broken(("Records", 0, "s3", "bucket", "name"), ""), "no s3.bucket.name"),
        (broken(("Records", 0, "s3", "bucket", "name"), 7), "no s3.bucket.name"),
        (broken(("Records", 0, "s3", "object"), KeyError), "no s3.object.key"),
        (broken(("Records", 0, "s3", "object", "key"), KeyError), "no s3.object.key"),
        (broken(("Records", 0, "s3", "object", "key"), ""), "no s3.object.key"),
        (broken(("Records", 0, "eventName"), KeyError), "no eventName"),
        (broken(("Records", 0, "userIdentity"), "x"), "userIdentity is not an object"),
    ],
)
def test_bad_bodies_name_the_problem(body: Any, message: str) -> None:
    with pytest.raises(NotificationError, match=message):
        normalise(body, region="r")


def test_notification_error_is_a_value_error() -> None:
    assert issubclass(NotificationError, ValueError)


def record_for(key: str, event_name: str = "s3:ObjectCreated:Put") -> dict[str, Any]:
    (record,) = normalise(minio_body(key=key, eventName=event_name), region="r")
    return record


@pytest.mark.parametrize(
    ("event_name", "events", "expected"),
    [
        ("s3:ObjectCreated:Put", ["s3:ObjectCreated:*"], True),
        ("s3:ObjectCreated:Put", ["ObjectCreated:*"], True),
        ("s3:ObjectCreated:Put", ["s3:ObjectCreated:Put"], True),
        ("s3:ObjectCreated:Put", ["ObjectCreated:Put"], True),
        ("s3:ObjectCreated:CompleteMultipartUpload", ["s3:ObjectCreated:*"], True),
        ("s3:ObjectCreated:Put", ["s3:ObjectCreated:Post"], False),
        ("s3:ObjectCreated:Put", ["s3:ObjectRemoved:*"], False),
        ("s3:ObjectRemoved:Delete", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], True),
        ("s3:ObjectRemoved:DeleteMarkerCreated", ["s3:ObjectRemoved:Delete"], False),
        ("s3:ObjectRemoved:DeleteMarkerCreated", ["s3:ObjectRemoved:*"], True),
        ("s3:ObjectCreated:Put", ["s3:ObjectCreated"], False),
        # A wildcard covers one event type, not every type whose name starts alike.
        ("s3:ObjectCreatedLater:Put", ["s3:ObjectCreated:*"], False),
        ("s3:ObjectCreated:Put", [], False),
    ],
)
def test_event_patterns(event_name: str, events: list[str], expected: bool) -> None:
    record = record_for("k", event_name)
    assert matches(record, bucket="images", events=events, prefix="", suffix="") is expected


@pytest.mark.parametrize(
    ("key", "bucket", "prefix", "suffix", "expected"),
    [
        ("photos%2Fmy+cat.jpg", "images", "photos/", ".jpg", True),
        ("photos%2Fmy+cat.jpg", "images", "photos/my cat", "", True),
        ("photos%2Fmy+cat.jpg", "images", "photos/my+cat", "", False),
        ("photos%2Fmy+cat.jpg", "images", "", "cat.jpg", True),
        ("photos%2Fmy+cat.jpg", "images", "video/", "", False),
        ("photos%2Fmy+cat.jpg", "images", "", ".png", False),
        ("photos%2Fmy+cat.jpg", "other", "", "", False),
        ("a%3Db.csv", "images", "a=", ".csv", True),
        ("c%2B%2B.tgz", "images", "c++", "", True),
    ],
)
def test_bucket_prefix_and_suffix(
    key: str, bucket: str, prefix: str, suffix: str, expected: bool
) -> None:
    record = record_for(key)
    got = matches(
        record, bucket=bucket, events=["s3:ObjectCreated:*"], prefix=prefix, suffix=suffix
    )
    assert got is expected
