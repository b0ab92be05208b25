//! The access log: one JSON object per request, one per line, on stdout (and nothing else goes
//! to stdout). Never headers, tokens or credentials: only the fields below.

use std::io::Write;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub request_id: Option<&'a str>,
    pub method: &'a str,
    /// Route template, never the raw path.
    pub route: &'static str,
    pub status: u16,
    pub duration_seconds: f64,
    pub bytes_sent: usize,
    pub broker: Option<&'a str>,
    pub broker_status: Option<u16>,
    pub broker_duration_seconds: Option<f64>,
    pub user_id: Option<&'a str>,
    /// `allowed`, `denied` or `unavailable` once the request's authorization was asked; null
    /// before (or without) it.
    pub authorization: Option<&'static str>,
    pub error: Option<&'a str>,
}

/// Now, as the `ts` field wants it.
pub fn now_rfc3339() -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// Writes one line. The stdout lock makes each line a single uninterrupted write.
pub fn write(line: &AccessLine<'_>) {
    let Ok(mut bytes) = serde_json::to_vec(line) else {
        return;
    };
    bytes.push(b'\n');
    let mut out = std::io::stdout().lock();
    if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
        // stdout is gone (closed pipe): nothing useful to do, and never worth failing a request.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_and_nulls_where_unknown() {
        let line = AccessLine {
            ts: now_rfc3339(),
            request_id: Some("r"),
            method: "POST",
            route: "/v2/service_instances",
            status: 201,
            duration_seconds: 0.01,
            bytes_sent: 10,
            broker: None,
            broker_status: None,
            broker_duration_seconds: None,
            user_id: Some("u"),
            authorization: Some("allowed"),
            error: None,
        };
        let v: serde_json::Value = serde_json::to_value(&line).unwrap();
        for key in [
            "ts",
            "request_id",
            "method",
            "route",
            "status",
            "duration_seconds",
            "bytes_sent",
            "broker",
            "broker_status",
            "broker_duration_seconds",
            "user_id",
            "authorization",
            "error",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["broker"], serde_json::Value::Null);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
}
