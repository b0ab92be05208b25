//! The diagnostic log on stderr: level and format (`text` or `json`) from `[log]`, with
//! `RUST_LOG` taking precedence. The access log (stdout) is separate: see `access_log`.

use std::io::Write;

use crate::config::LogSection;

pub fn init(log: &LogSection) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&log.level);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    if log.format == "json" {
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
    // Tests may initialise twice; the first logger stays.
    let _ = builder.try_init();
    // Pingora's trace level dumps raw request headers (bearer and broker tokens): never go there.
    if log::max_level() > log::LevelFilter::Debug {
        log::set_max_level(log::LevelFilter::Debug);
    }
}
