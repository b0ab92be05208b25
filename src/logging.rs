//! The diagnostic log on stderr: level and format (`text` or `json`) from `[log]`, with
//! `RUST_LOG` taking precedence. The access log (stdout) is separate: see `access_log`.

use std::io::Write;

use log::{Level, Log, Metadata, Record};

use crate::config::{LogFormat, LogSettings};

pub fn init(log: &LogSettings) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log.level);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    if log.format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": crate::access_log::now_rfc3339(),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    let inner = builder.build();
    let max = inner.filter();
    // Tests may initialise twice; the first logger stays.
    if log::set_boxed_logger(Box::new(PingoraCapped(inner))).is_ok() {
        log::set_max_level(max);
    }
}

/// Pingora logs raw request headers — bearer and broker tokens — at debug and trace, so its
/// records are kept at info and above whatever level is asked for.
struct PingoraCapped(env_logger::Logger);

impl PingoraCapped {
    fn allowed(metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Info || !metadata.target().starts_with("pingora")
    }
}

impl Log for PingoraCapped {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::allowed(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if Self::allowed(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_debug_is_dropped_but_ours_is_kept() {
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(!PingoraCapped::allowed(&meta(
            Level::Debug,
            "pingora_proxy::proxy_h1"
        )));
        assert!(!PingoraCapped::allowed(&meta(
            Level::Trace,
            "pingora_core::protocols"
        )));
        assert!(PingoraCapped::allowed(&meta(
            Level::Info,
            "pingora_core::server"
        )));
        assert!(PingoraCapped::allowed(&meta(
            Level::Debug,
            "brokergate::proxy"
        )));
    }
}
