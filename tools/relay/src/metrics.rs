//! The relay's counters and their Prometheus text (`GET /metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Engine;
use crate::mqtt::LinkCounters;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Transfer bundles imported.
    pub bundles_imported: AtomicU64,
    /// Deliveries the transport acknowledged.
    pub deliveries_published: AtomicU64,
    /// Transfer bundles refused.
    pub bundles_refused: AtomicU64,
    /// Log entries imported.
    pub entries_imported: AtomicU64,
    /// Operator requests refused for lack of a valid token (or session and CSRF value).
    pub unauthorized: AtomicU64,
    /// The MQTT link's errors, oversized packets and dropped QoS 0 messages.
    pub mqtt: LinkCounters,
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text (format 0.0.4) for a mirror of `mirror_size` entries and `engine`.
    pub fn render(&self, mirror_size: u64, engine: &Engine) -> String {
        let mut body = format!(
            "# HELP cairn_relay_log_size Entries in the relay's mirror of the signer's log.\n\
             # TYPE cairn_relay_log_size gauge\ncairn_relay_log_size {}\n\
             # HELP cairn_relay_bundles_imported_total Transfer bundles imported.\n\
             # TYPE cairn_relay_bundles_imported_total counter\ncairn_relay_bundles_imported_total {}\n\
             # HELP cairn_relay_bundles_refused_total Transfer bundles refused.\n\
             # TYPE cairn_relay_bundles_refused_total counter\ncairn_relay_bundles_refused_total {}\n\
             # HELP cairn_relay_deliveries_published_total Deliveries the broker acknowledged.\n\
             # TYPE cairn_relay_deliveries_published_total counter\ncairn_relay_deliveries_published_total {}\n\
             # HELP cairn_relay_entries_imported_total Log entries imported.\n\
             # TYPE cairn_relay_entries_imported_total counter\ncairn_relay_entries_imported_total {}\n\
             # HELP cairn_relay_unauthorized_total Operator API requests refused for lack of a valid token.\n\
             # TYPE cairn_relay_unauthorized_total counter\ncairn_relay_unauthorized_total {}\n",
            mirror_size,
            load(&self.bundles_imported),
            load(&self.bundles_refused),
            load(&self.deliveries_published),
            load(&self.entries_imported),
            load(&self.unauthorized),
        );
        let st = engine.stats();
        let _ = write!(
            body,
            "# HELP cairn_relay_state_log_size Entries in the relay's device-state log.\n\
             # TYPE cairn_relay_state_log_size gauge\ncairn_relay_state_log_size {}\n\
             # HELP cairn_relay_status_reports_total Device status messages, by outcome of their intake.\n\
             # TYPE cairn_relay_status_reports_total counter\n\
             cairn_relay_status_reports_total{{result=\"applied\"}} {}\n\
             cairn_relay_status_reports_total{{result=\"malformed\"}} {}\n\
             cairn_relay_status_reports_total{{result=\"refused\"}} {}\n\
             cairn_relay_status_reports_total{{result=\"replayed\"}} {}\n\
             # HELP cairn_relay_deliveries_handed_total Deliveries handed to the MQTT link.\n\
             # TYPE cairn_relay_deliveries_handed_total counter\ncairn_relay_deliveries_handed_total {}\n\
             # HELP cairn_relay_deliveries_queued Deliveries waiting for the rate limit or the link.\n\
             # TYPE cairn_relay_deliveries_queued gauge\ncairn_relay_deliveries_queued {}\n\
             # HELP cairn_relay_approvals_refused_total Gate approvals that did not verify or were for another plan.\n\
             # TYPE cairn_relay_approvals_refused_total counter\ncairn_relay_approvals_refused_total {}\n\
             # HELP cairn_relay_mqtt_errors_total MQTT connection errors (each followed by a reconnect).\n\
             # TYPE cairn_relay_mqtt_errors_total counter\ncairn_relay_mqtt_errors_total {}\n\
             # HELP cairn_relay_mqtt_oversized_total MQTT packets above the relay's limit (each ends a session).\n\
             # TYPE cairn_relay_mqtt_oversized_total counter\ncairn_relay_mqtt_oversized_total {}\n\
             # HELP cairn_relay_status_dropped_total QoS 0 status messages dropped: the intake queue was full.\n\
             # TYPE cairn_relay_status_dropped_total counter\ncairn_relay_status_dropped_total {}\n\
             # HELP cairn_relay_campaign_devices Devices per campaign and state.\n\
             # TYPE cairn_relay_campaign_devices gauge\n",
            engine.log().vault().size(),
            st.reports,
            st.malformed,
            st.refused,
            st.replayed,
            st.handed,
            engine.queued(),
            st.approvals_refused,
            load(&self.mqtt.errors),
            load(&self.mqtt.oversized),
            load(&self.mqtt.dropped),
        );
        for (id, c) in engine.campaigns() {
            for (state, n) in c.totals().iter() {
                let _ = writeln!(
                    body,
                    "cairn_relay_campaign_devices{{campaign=\"{id}\",state=\"{}\"}} {n}",
                    state.name(),
                );
            }
        }
        body
    }
}

/// A gauge with a line per witness: its name, help text and value.
type PerWitness = (
    &'static str,
    &'static str,
    fn(&crate::witness::WitnessStatus) -> u64,
);

/// The witnesses' lines of `/metrics` (with `[witnesses]`): the signer log's as
/// `cairn_relay_witness…`, the relay log's (`relay_log`) as `cairn_relay_log_witness…`.
pub fn witnesses(w: &crate::witness::WitnessView) -> String {
    // A witness name is a note key name: no whitespace or `+`, but it may hold `"` or `\`.
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let (prefix, what, waits) = match w.log {
        crate::witness::WitnessedLog::Signer => {
            ("cairn_relay_witness", "mirror", "deliveries use it")
        }
        crate::witness::WitnessedLog::Relay => (
            "cairn_relay_log_witness",
            "relay log",
            "the device-state bundle ends there",
        ),
    };
    let mut body = format!(
        "# HELP {prefix}ed_size The {what}'s latest checkpoint with a witness quorum ({waits}).\n\
         # TYPE {prefix}ed_size gauge\n{prefix}ed_size {}\n\
         # HELP {prefix}_waiting 1 while the {what}'s latest checkpoint waits for cosignatures.\n\
         # TYPE {prefix}_waiting gauge\n{prefix}_waiting {}\n",
        w.witnessed,
        u8::from(w.waiting()),
    );
    let per_witness: [PerWitness; 2] = [
        (
            "_cosigned_size",
            "The largest checkpoint each witness cosigned.",
            |s| s.cosigned,
        ),
        (
            "_failures",
            "Requests to each witness failed in a row.",
            |s| u64::from(s.failures),
        ),
    ];
    for (metric, help, value) in per_witness {
        let _ = writeln!(
            body,
            "# HELP {prefix}{metric} {help}\n# TYPE {prefix}{metric} gauge"
        );
        for s in &w.witnesses {
            let _ = writeln!(
                body,
                "{prefix}{metric}{{witness=\"{}\"}} {}",
                label(&s.name),
                value(s)
            );
        }
    }
    body
}
