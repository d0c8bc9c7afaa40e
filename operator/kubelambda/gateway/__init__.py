"""The event gateway: routes HTTP requests, Lambda Invoke API calls and bucket events to functions."""
