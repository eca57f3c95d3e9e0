//! The six workflow gates of design.md, each with its evidence and log indices.

use super::page::{Page, n};
use crate::engine::CampaignView;

/// A gate: name, whether it is met, and its evidence.
pub(super) struct GateView {
    /// Name, as design.md lists it.
    pub(super) name: &'static str,
    /// Met.
    pub(super) ok: bool,
    /// The evidence, in words, with log indices.
    pub(super) evidence: String,
}

/// The six workflow gates of a campaign, with their evidence.
#[expect(
    clippy::too_many_lines,
    reason = "the Jobs rollout gate made it 102 lines: to split"
)]
pub(super) fn gates(page: &Page<'_>, c: &CampaignView) -> Vec<GateView> {
    let ev = &c.evidence;
    let state_size = page.view.log_size;
    let mirror_size = page.mirror_size;
    let stages: Vec<String> = c
        .stages
        .iter()
        .map(|s| &s.plan)
        .map(|s| {
            format!(
                "{} ({} devices, soak {} s, success {}‰, failure {}‰, {} gate)",
                s.name,
                s.end,
                s.soak_secs,
                s.success_permille,
                s.failure_permille,
                s.gate_name()
            )
        })
        .collect();
    let eligible = ev.update_manifests;
    vec![
        GateView {
            name: "Signed artifact",
            ok: true,
            evidence: format!(
                "release {} at signer-log index {}: COSE_Sign1 verified with the pinned release key; \
                 the plan names its digest",
                c.release_id, ev.release_index
            ),
        },
        GateView {
            name: "Eligibility checked",
            ok: true,
            evidence: format!(
                "{} approved, {} rejected: the {} decisions at indices {}..{} hash to the plan's \
                 decisions digest",
                n(eligible),
                n(c.totals.rejected),
                n(ev.decisions.end - ev.decisions.start),
                ev.decisions.start,
                ev.decisions.end
            ),
        },
        GateView {
            name: "Rollout configured",
            ok: true,
            evidence: format!(
                "plan at index {} signed by the release key: {}; {} attempts per device, backoff {} s, \
                 quarantine after {} failures{}{}",
                ev.plan_index,
                stages.join(", "),
                c.policy.max_attempts,
                c.policy.backoff_secs,
                c.policy.quarantine_after_failures,
                if c.policy.quarantine_on_verification_failure {
                    " or one verification failure"
                } else {
                    ""
                },
                c.policy.jobs.map_or_else(String::new, |j| format!(
                    "; AWS IoT Jobs controls (docs/jobs.md): {j}{}",
                    c.rate_per_minute.map_or_else(String::new, |r| format!(
                        "; rate now {r} a minute after {} ramp steps",
                        c.rate_increases
                    ))
                ))
            ),
        },
        GateView {
            name: "Verification tracked",
            ok: c.reports > 0,
            evidence: format!(
                "{} device status reports taken ({} verification failures); every state change is \
                 an event in the relay log",
                n(c.reports),
                n(c.verification_failures)
            ),
        },
        GateView {
            name: "Fallback path set",
            ok: ev.rollback_manifests == eligible,
            evidence: format!(
                "rollback target {} at index {}: {} pre-signed rollback manifests, one per \
                 eligible device",
                c.rollback_id,
                ev.rollback_index,
                n(ev.rollback_manifests)
            ),
        },
        GateView {
            name: "Evidence retention enabled",
            ok: state_size > 0,
            evidence: format!(
                "relay log {} holds {} entries, checkpoints signed by the relay key (/state/checkpoint); \
                 mirror of the signer log holds {} entries (/log/checkpoint); device-state bundles \
                 go back to the air gap from /api/v1/state-bundle",
                page.view.log_origin,
                n(state_size),
                n(mirror_size)
            ),
        },
    ]
}
