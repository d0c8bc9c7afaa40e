"""Audits receipts as S3 notifies them, and runs a nightly check (EventBridge's Scheduled Event)."""

import json


def handler(event, context):
    if event.get("detail-type") == "Scheduled Event":
        print(json.dumps({"audit": "nightly", "time": event["time"]}))
        return {"audited": "nightly"}
    keys = [record["s3"]["object"]["key"] for record in event.get("Records", [])]
    print(json.dumps({"audit": "receipts", "keys": keys}))
    return {"audited": keys}
