//! One outbound HTTP client (filled in by the outbound work).
