"""Process stage: rules of stages between enrich and batch (multiline, parsing, levels,
filtering, redaction, labels, tenants, rate limits), configured centrally and per pod."""
