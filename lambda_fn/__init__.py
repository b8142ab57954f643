"""The code inside the Lambda image: model store, record decoding, scoring, sinks and thin handlers."""
