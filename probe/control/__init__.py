"""The uncensored side: a DoH client, a test-helper client, and the helper server itself."""
