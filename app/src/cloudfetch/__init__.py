"""cloudfetch: a put.io-style 'fetch it for me' storage service."""
