//! The `--metrics ADDR` endpoint: kvmsched's figures in the Prometheus text
//! format, served over HTTP.
//!
//! The daemon's thread keeps a [`Metrics`] value and, after each interval,
//! copies it into a [`Shared`] slot. [`MetricsServer::spawn`] starts a
//! metrics thread that answers `GET /metrics` with the last published
//! figures, so a scrape is answered even while the daemon's thread is
//! blocked inside a libvirt call. The libvirt call in progress ([`Live`])
//! is read at the time of the scrape, not published: a daemon thread stuck
//! in a call publishes nothing, and the scrape still shows the call and its
//! age.
//!
//! - [`exposition`]: the figures and their text rendering;
//! - [`http`]: the listener and the metrics thread.
//!
//! The tests check every rendered or scraped page with the lab's
//! Prometheus-text checker (`lab/kvmlab/prometheus.py`), run through
//! `tests/common/prometheus.rs`.
//!
//! Exposed families (all prefixed `kvmsched_`):
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `build_info` | gauge | `version` |
//! | `connected` | gauge | |
//! | `dry_run` | gauge | |
//! | `pcpu_load_ratio` | gauge | `cpu` |
//! | `pcpu_load_stddev_ratio` | gauge | |
//! | `pins_total` | counter | |
//! | `pin_failures_total` | counter | |
//! | `intervals_total` | counter | `loop` (`vcpu`, `memory`) |
//! | `interval_duration_seconds` | gauge | `loop` |
//! | `interval_last_completed_timestamp_seconds` | gauge | `loop` |
//! | `domain_memory_actual_bytes` | gauge | `domain` |
//! | `domain_memory_free_bytes` | gauge | `domain` |
//! | `memory_granted_bytes_total` | counter | |
//! | `memory_released_bytes_total` | counter | |
//! | `libvirt_calls_total` | counter | |
//! | `libvirt_errors_total` | counter | |
//! | `libvirt_call_in_progress` | gauge | `call` |
//! | `libvirt_call_in_progress_seconds` | gauge | |
//! | `reconnects_total` | counter | |

pub mod exposition;
pub mod http;
#[cfg(test)]
#[path = "../../tests/common/prometheus.rs"]
mod promcheck;

pub use exposition::{escape_label_value, render, DomainMetrics, Live, LoopMetrics, Metrics};
pub use http::{parse_addr, MetricsServer};

/// The figures the daemon publishes for the metrics thread.
pub type Shared = std::sync::Arc<std::sync::Mutex<Metrics>>;
