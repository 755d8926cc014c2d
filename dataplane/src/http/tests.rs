//! Long tests of the HTTP/1.1 codec: byte fixtures and property tests.
