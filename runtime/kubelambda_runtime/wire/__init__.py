"""What the server and its workers share: frames, the board, HTTP/1 answers, error documents,
settings. Free of asyncio, which a worker would otherwise import for nothing."""
