//! The CRA audit summary of a verified pack (docs/audit.md, "The audit summary"): design.md's
//! table of CRA concern → control → evidence filled with the log indices that answer each row,
//! the signing record, eligibility, rollout history and final device states, as JSON and as one
//! self-contained HTML file with two plots (device states over time, failures per stage).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::verified::{Finding, PlanFacts, ReleaseFacts, Verified};

/// Evidence for one CRA row: which log, which entries, what they are.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// `signer` or `relay`.
    pub log: &'static str,
    /// Entry indices as ranges, e.g. `12..16612` or `4`.
    pub entries: Vec<String>,
    /// What the entries are.
    pub what: String,
}

/// One row of design.md's CRA table.
#[derive(Debug, Clone, Serialize)]
pub struct CraRow {
    /// CRA concern.
    pub concern: &'static str,
    /// The control in cairn.
    pub control: &'static str,
    /// What was retained, with its log indices.
    pub evidence: Vec<Evidence>,
}

/// Per-stage rollout figures.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// Stage name.
    pub name: String,
    /// Devices in the stage.
    pub devices: u64,
    /// Gate to the next stage.
    pub gate: &'static str,
    /// Devices whose final state is installed.
    pub installed: u64,
    /// Failure events (install or verification).
    pub failures: u64,
    /// Devices that installed on a retry.
    pub retried: u64,
    /// Devices quarantined.
    pub quarantined: u64,
    /// Devices rolled back.
    pub rolled_back: u64,
}

/// A campaign action in the rollout history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    /// `relay` or `signer`.
    pub log: &'static str,
    /// Log index.
    pub index: u64,
    /// When (unix seconds).
    pub at: u64,
    /// What happened.
    pub what: String,
    /// By whom.
    pub actor: String,
}

/// Device-state counts at one time, for the plot.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the first relay event.
    pub t: u64,
    /// Count per state name.
    pub counts: BTreeMap<&'static str, u64>,
}

/// The audit summary of a campaign.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Campaign.
    pub campaign: String,
    /// Whether every check of the pack passed.
    pub verified: bool,
    /// What failed.
    pub findings: Vec<Finding>,
    /// Root certificate fingerprint, the trust anchor.
    pub root_fingerprint: String,
    /// design.md's CRA table, row by row, with the evidence's log indices.
    pub cra: Vec<CraRow>,
    /// Ceremony custodians and threshold.
    pub custodians: (Vec<String>, u64),
    /// Releases (the campaign's and its rollback target).
    pub releases: Vec<ReleaseFacts>,
    /// The signed plan.
    pub plan: Option<PlanFacts>,
    /// Rejections by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Stages.
    pub stages: Vec<StageSummary>,
    /// Approvals, pauses, resumes, rollbacks, quarantines, in time order.
    pub history: Vec<HistoryItem>,
    /// Retries: deliveries after the first.
    pub retries: u64,
    /// Final device-state distribution (eligible devices by their last event; rejected ones).
    pub final_states: BTreeMap<&'static str, u64>,
    /// End of the support period of the campaign's release.
    pub support_until: Option<u64>,
    /// Retention end of the campaign's release.
    pub retain_until: Option<u64>,
    /// Device states over time.
    pub timeline: Vec<Sample>,
    /// Entries: signer log (checkpoint size, in pack), relay log (checkpoint size, in pack).
    pub logs: [(String, u64, u64); 2],
    /// The signer checkpoint's witness quorum, when verified with a witness policy.
    pub witnesses: Option<super::WitnessFacts>,
    /// The relay checkpoint's witness quorum, when verified with a witness policy.
    pub relay_witnesses: Option<super::WitnessFacts>,
}

impl Summary {
    /// The witness quorums verified: the signer checkpoint's, then the relay checkpoint's.
    pub fn witness_facts(&self) -> impl Iterator<Item = (&'static str, &super::WitnessFacts)> {
        [
            ("signer", &self.witnesses),
            ("relay", &self.relay_witnesses),
        ]
        .into_iter()
        .filter_map(|(which, w)| w.as_ref().map(|w| (which, w)))
    }
}

fn ranges(mut indices: Vec<u64>) -> Vec<String> {
    indices.sort_unstable();
    indices.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end += 1;
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}..{}", end + 1)
        });
        i += 1;
    }
    out
}

const STATES: [&str; 9] = [
    "eligible",
    "pending",
    "delivered",
    "installed",
    "failed",
    "paused",
    "rolled-back",
    "quarantined",
    "rejected",
];

impl Summary {
    /// Summarizes a verified pack.
    #[expect(
        clippy::too_many_lines,
        reason = "the table's rows and the rollout's figures, in the report's order"
    )]
    pub fn of(v: &Verified) -> Self {
        let release = v
            .plan
            .as_ref()
            .and_then(|p| v.releases.iter().find(|r| r.release == p.release));
        // Final state and stage per device, retries, failures.
        let mut last: HashMap<&str, (&'static str, u64, u64)> = HashMap::new();
        let mut failures_by_stage: BTreeMap<u64, u64> = BTreeMap::new();
        let mut retries = 0;
        for e in &v.device_events {
            let slot = last
                .entry(e.device.as_str())
                .or_insert(("eligible", e.stage, 1));
            *slot = (e.state, e.stage, slot.2.max(e.attempt));
            if e.state == "failed" {
                *failures_by_stage.entry(e.stage).or_default() += 1;
            }
            if e.state == "delivered" && e.attempt > 1 {
                retries += 1;
            }
        }
        let mut final_states: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (state, _, _) in last.values() {
            *final_states.entry(state).or_default() += 1;
        }
        if let Some(p) = &v.plan {
            let seen = last.len() as u64;
            if p.eligible > seen {
                *final_states.entry("eligible").or_default() += p.eligible - seen;
            }
            if p.rejected > 0 {
                final_states.insert("rejected", p.rejected);
            }
        }
        let stages = v.plan.as_ref().map_or_else(Vec::new, |p| {
            let mut from = 0;
            p.stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let i = i as u64;
                    let of = |state: &str| {
                        last.values()
                            .filter(|(st, stage, _)| *stage == i && *st == state)
                            .count() as u64
                    };
                    let summary = StageSummary {
                        name: s.name.clone(),
                        devices: s.devices - from,
                        gate: s.gate,
                        installed: of("installed"),
                        failures: failures_by_stage.get(&i).copied().unwrap_or(0),
                        retried: last
                            .values()
                            .filter(|(st, stage, attempt)| {
                                *stage == i && *st == "installed" && *attempt > 1
                            })
                            .count() as u64,
                        quarantined: of("quarantined"),
                        rolled_back: of("rolled-back"),
                    };
                    from = s.devices;
                    summary
                })
                .collect()
        });
        let mut history: Vec<HistoryItem> = v
            .campaign_events
            .iter()
            .map(|e| HistoryItem {
                log: "relay",
                index: e.index,
                at: e.at,
                what: format!(
                    "{} (stage {}{}){}",
                    e.action,
                    e.stage,
                    if e.action == "approval-applied" {
                        format!(", signer log entry {}", e.devices)
                    } else if e.action == "rate-increased" {
                        format!(", now {} things a minute", e.devices)
                    } else if e.devices > 0 {
                        format!(", {} devices", e.devices)
                    } else {
                        String::new()
                    },
                    if e.cause.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", e.cause)
                    }
                ),
                actor: e.actor.clone(),
            })
            .collect();
        for a in &v.approvals {
            history.push(HistoryItem {
                log: "signer",
                index: a.index,
                at: a.at,
                what: format!("gate approval signed: {} stage {}", a.action, a.stage),
                actor: format!("custodians {}", a.custodians.join(", ")),
            });
        }
        history.sort_by_key(|h| (h.at, h.log == "relay", h.index));

        // States over time: 120 samples from the first event to the last.
        let mut timeline = Vec::new();
        if let (Some(first), Some(end)) = (v.device_events.first(), v.device_events.last()) {
            let (t0, t1) = (first.at, end.at.max(first.at + 1));
            let mut state: HashMap<&str, &'static str> = HashMap::new();
            let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
            let eligible = v.plan.as_ref().map_or(0, |p| p.eligible);
            counts.insert("eligible", eligible);
            let mut events = v.device_events.iter().peekable();
            for k in 0..=120u64 {
                let t = t0 + (t1 - t0) * k / 120;
                while let Some(e) = events.next_if(|e| e.at <= t) {
                    let before = state
                        .insert(e.device.as_str(), e.state)
                        .unwrap_or("eligible");
                    if let Some(c) = counts.get_mut(before) {
                        *c = c.saturating_sub(1);
                    }
                    *counts.entry(e.state).or_default() += 1;
                }
                timeline.push(Sample {
                    t: t - t0,
                    counts: counts.clone(),
                });
            }
        }

        let plan_ev = v.plan.as_ref();
        let mut cra = Vec::new();
        let ev = |log, entries: Vec<u64>, what: String| Evidence {
            log,
            entries: ranges(entries),
            what,
        };
        let release_sessions: Vec<u64> = v
            .releases
            .iter()
            .flat_map(|r| [r.index.saturating_sub(1), r.index])
            .collect();
        cra.push(CraRow {
            concern: "Firmware authenticity",
            control: "release signed in the HSM by custodians, bound to the log",
            evidence: vec![
                ev(
                    "signer",
                    release_sessions,
                    "session records and release statements (COSE_Sign1, release key)".into(),
                ),
                ev(
                    "signer",
                    vec![0],
                    "ceremony record: root, release and log key certificates".into(),
                ),
            ],
        });
        let decisions: Vec<u64> =
            plan_ev.map_or_else(Vec::new, |p| (p.decisions[0]..p.decisions[1]).collect());
        cra.push(CraRow {
            concern: "Device eligibility",
            control: "identity, certificate state, lifecycle, version and policy checked per device",
            evidence: vec![ev(
                "signer",
                decisions,
                format!(
                    "per-device decisions: {} eligible (two manifests each), {} rejected with reasons",
                    plan_ev.map_or(0, |p| p.eligible),
                    plan_ev.map_or(0, |p| p.rejected)
                ),
            )],
        });
        let gate_events: Vec<u64> = v.campaign_events.iter().map(|e| e.index).collect();
        cra.push(CraRow {
            concern: "Automatic-update readiness",
            control: "staged rollout, approval gates, pause, retry, rollback",
            evidence: vec![
                ev(
                    "signer",
                    plan_ev.map(|p| vec![p.index]).unwrap_or_default(),
                    "rollout plan (stages, gates, retries, rollback target), release key".into(),
                ),
                ev(
                    "signer",
                    v.approvals.iter().map(|a| a.index).collect(),
                    "gate approvals signed offline".into(),
                ),
                ev(
                    "relay",
                    gate_events,
                    "campaign events: stages, pauses, resumes, rollbacks".into(),
                ),
            ],
        });
        let of_state = |states: &[&str]| -> Vec<u64> {
            v.device_events
                .iter()
                .filter(|e| states.contains(&e.state))
                .map(|e| e.index)
                .collect()
        };
        cra.push(CraRow {
            concern: "Vulnerability handling",
            control: "affected cohort, campaign, quarantine, revocation",
            evidence: vec![
                ev(
                    "signer",
                    release.map(|r| vec![r.index]).unwrap_or_default(),
                    format!(
                        "advisories fixed: {}",
                        release.map_or_else(String::new, |r| r.advisories.join(", "))
                    ),
                ),
                ev(
                    "relay",
                    of_state(&["quarantined"]),
                    "quarantine events".into(),
                ),
                ev(
                    "signer",
                    v.key_statements.iter().map(|k| k.0).collect(),
                    "key rotations and revocations".into(),
                ),
            ],
        });
        let verification: Vec<u64> = v
            .device_events
            .iter()
            .filter(|e| {
                e.actor == "device" && (e.state == "installed" || e.cause.contains("verification"))
            })
            .map(|e| e.index)
            .collect();
        cra.push(CraRow {
            concern: "Data integrity",
            control: "device verifies signature, log inclusion and image digest; rejects tampering",
            evidence: vec![ev(
                "relay",
                verification,
                "verification results reported by devices (installed after the boot check, or verification failed)".into(),
            )],
        });
        cra.push(CraRow {
            concern: "Support period",
            control: "retention for the support period (Art. 13(8)) and 10 years of documentation (Art. 13(13))",
            evidence: vec![ev(
                "signer",
                v.relay_record.map(|i| vec![i]).unwrap_or_default(),
                format!(
                    "relay checkpoint record: the update status of every device; release supported until {}, retained until {}",
                    release.map_or_else(|| "?".into(), |r| date(r.support_until)),
                    release
                        .and_then(|r| r.retain_until)
                        .map_or_else(|| "?".into(), date)
                ),
            )],
        });

        Self {
            campaign: v.campaign.clone(),
            verified: v.findings.is_empty(),
            findings: v.findings.clone(),
            root_fingerprint: v.root_fingerprint.clone(),
            cra,
            custodians: (v.custodians.clone(), v.threshold),
            releases: v.releases.clone(),
            plan: v.plan.clone(),
            rejected_by_reason: v.rejected_by_reason.clone(),
            stages,
            history,
            retries,
            final_states,
            support_until: release.map(|r| r.support_until),
            retain_until: release.and_then(|r| r.retain_until),
            timeline,
            logs: [v.signer_log.clone(), v.relay_log.clone()],
            witnesses: v.witnesses.clone(),
            relay_witnesses: v.relay_witnesses.clone(),
        }
    }

    /// The summary as text, for a terminal.
    #[expect(
        clippy::too_many_lines,
        reason = "the report's sections in order, as in the HTML"
    )]
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "campaign {}: evidence {}",
            self.campaign,
            if self.verified {
                "VERIFIED".to_owned()
            } else {
                format!("FAILED ({} findings)", self.findings.len())
            }
        );
        for f in &self.findings {
            let _ = writeln!(s, "  FAIL {}: {}", f.item, f.problem);
        }
        let _ = writeln!(
            s,
            "trust anchor: root certificate {}",
            self.root_fingerprint
        );
        let _ = writeln!(
            s,
            "signer log {}: checkpoint size {}, {} entries in the pack; relay log {}: size {}, {} entries",
            self.logs[0].0,
            self.logs[0].1,
            self.logs[0].2,
            self.logs[1].0,
            self.logs[1].1,
            self.logs[1].2
        );
        for (which, w) in self.witness_facts() {
            let _ = writeln!(
                s,
                "witnesses of the {which} checkpoint: {} ({})",
                w.summary,
                if w.quorum { "quorum" } else { "NO QUORUM" }
            );
        }
        let _ = writeln!(s, "\nCRA concern -> control -> evidence (log entries)");
        for row in &self.cra {
            let _ = writeln!(s, "  {}: {}", row.concern, row.control);
            for e in &row.evidence {
                let _ = writeln!(
                    s,
                    "      {} log {}: {}",
                    e.log,
                    if e.entries.is_empty() {
                        "(none)".to_owned()
                    } else {
                        abbreviate(&e.entries)
                    },
                    e.what
                );
            }
        }
        let _ = writeln!(
            s,
            "\nsigning: ceremony {}-of-{} ({})",
            self.custodians.1,
            self.custodians.0.len(),
            self.custodians.0.join(", ")
        );
        for r in &self.releases {
            let _ = writeln!(
                s,
                "  {} {} (entry {}) signed {} by {} with {}; supported until {}{}",
                r.release,
                r.version,
                r.index,
                date(r.issued_at),
                r.custodians.join(", "),
                r.key,
                date(r.support_until),
                r.mcuboot_hash
                    .as_ref()
                    .map_or_else(String::new, |h| format!("; MCUboot image, SHA256 TLV {h}"))
            );
        }
        if let Some(p) = &self.plan {
            let _ = writeln!(
                s,
                "eligibility: {} approved, {} rejected (plan at entry {}, signed by {})",
                p.eligible,
                p.rejected,
                p.index,
                p.custodians.join(", ")
            );
            for (reason, n) in &self.rejected_by_reason {
                let _ = writeln!(s, "  {reason:<28}{n:>8}");
            }
            if let Some(j) = &p.jobs_controls {
                let _ = writeln!(s, "AWS IoT Jobs controls (signed with the plan): {j}");
            }
        }
        let _ = writeln!(s, "rollout: {} retries", self.retries);
        for st in &self.stages {
            let _ = writeln!(
                s,
                "  {:<10}{:>7} devices {:>7} installed {:>5} failures {:>5} retried {:>4} quarantined {:>4} rolled back  gate {}",
                st.name,
                st.devices,
                st.installed,
                st.failures,
                st.retried,
                st.quarantined,
                st.rolled_back,
                st.gate
            );
        }
        for h in &self.history {
            let _ = writeln!(
                s,
                "  {} {} log {:>6}  {} [{}]",
                date_time(h.at),
                h.log,
                h.index,
                h.what,
                h.actor
            );
        }
        let states: Vec<String> = self
            .final_states
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(s, "final device states: {}", states.join(", "));
        if let (Some(a), Some(b)) = (self.support_until, self.retain_until) {
            let _ = writeln!(
                s,
                "support period ends {}; evidence retained until {}",
                date(a),
                date(b)
            );
        }
        s
    }
}

fn abbreviate(entries: &[String]) -> String {
    if entries.len() <= 6 {
        entries.join(", ")
    } else {
        format!(
            "{}, … ({} runs) …, {}",
            entries[..3].join(", "),
            entries.len(),
            entries[entries.len() - 2..].join(", ")
        )
    }
}

/// `YYYY-MM-DD` of a unix time (proleptic Gregorian, UTC).
pub fn date(t: u64) -> String {
    let (y, m, d) = civil(t / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn date_time(t: u64) -> String {
    let s = t % 86_400;
    format!(
        "{} {:02}:{:02}:{:02}",
        date(t),
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

pub(super) const STATE_ORDER: [&str; 9] = STATES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ranges() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_651_200), "2026-11-26");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date_time(1_795_651_200 + 3_723), "2026-11-26 01:02:03");
        assert_eq!(ranges(vec![5, 1, 2, 3, 9, 10]), ["1..4", "5", "9..11"]);
        assert!(ranges(vec![]).is_empty());
    }
}
