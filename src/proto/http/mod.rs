//! Minimal HTTP/1.1: request parsing (httparse + limits), path normalisation, responses (STUB).
