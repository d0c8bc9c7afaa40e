"""The ways into the gateway, one module each: HTTP Trigger routes (`http`, with the API
Gateway payload 2.0 mapping in `http_payload`), the Lambda Invoke API (`invoke_api`) and S3
bucket notifications (`s3`, with the record normalisation in `s3_records`).

Each is a `Handler` the edge calls with a `Request`; they share only the invocation layer.
"""
