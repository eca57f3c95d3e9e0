//! The operator dashboard (`GET /dashboard`): one self-contained HTML page, rendered on the
//! server (no script, no external resource), refreshed every 5 seconds. Per campaign: the six
//! workflow gates of design.md with their evidence, the devices per state, the stages, the
//! states over time as an SVG plot, and the latest events. It is read-only.

use std::fmt::Write as _;

use cairn_verifier::campaign::DeviceState;
use cairn_verifier::rollout::Gate;

use crate::engine::{CampaignView, Status, View};

/// What the page shows: the engine's view, and the mirror it runs against.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The signer log's origin.
    pub origin: &'a str,
    /// Entries in the mirror.
    pub mirror_size: u64,
    /// The engine at this moment.
    pub view: &'a View,
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The states the plot draws, with their colours.
const PLOTTED: [(DeviceState, &str); 7] = [
    (DeviceState::Installed, "#2e7d32"),
    (DeviceState::Delivered, "#1565c0"),
    (DeviceState::Pending, "#90a4ae"),
    (DeviceState::Failed, "#c62828"),
    (DeviceState::Quarantined, "#6a1b9a"),
    (DeviceState::RolledBack, "#ef6c00"),
    (DeviceState::Paused, "#795548"),
];

/// A gate: name, whether it is met, and its evidence.
pub struct GateView {
    /// Name, as design.md lists it.
    pub name: &'static str,
    /// Met.
    pub ok: bool,
    /// The evidence, in words, with log indices.
    pub evidence: String,
}

/// The six workflow gates of a campaign, with their evidence.
pub fn gates(page: &Page<'_>, c: &CampaignView) -> Vec<GateView> {
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
                if s.gate == Gate::Approval {
                    "approval"
                } else {
                    "automatic"
                }
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
                 quarantine after {} failures{}",
                ev.plan_index,
                stages.join(", "),
                c.policy.max_attempts,
                c.policy.backoff_secs,
                c.policy.quarantine_after_failures,
                if c.policy.quarantine_on_verification_failure {
                    " or one verification failure"
                } else {
                    ""
                }
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

#[expect(
    clippy::cast_precision_loss,
    clippy::many_single_char_names,
    reason = "pixel coordinates of counts and seconds far below 2^52"
)]
fn plot(c: &CampaignView) -> String {
    let (w, h, left, bottom) = (720.0_f64, 240.0_f64, 56.0_f64, 28.0_f64);
    let mut svg = format!(
        "<svg class=\"plot\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"devices per state over time\">"
    );
    let points = &c.history;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        svg.push_str("<text x=\"60\" y=\"120\">no events yet</text></svg>");
        return svg;
    };
    let t0 = first.0;
    let span = (last.0.saturating_sub(t0)).max(1) as f64;
    let top = points
        .iter()
        .flat_map(|(_, c)| PLOTTED.iter().map(move |(s, _)| c[*s]))
        .max()
        .unwrap_or(1)
        .max(1);
    let max = top as f64;
    let x = |t: u64| left + (t.saturating_sub(t0) as f64) / span * (w - left - 10.0);
    let y = |v: u64| (h - bottom) - (v as f64) / max * (h - bottom - 10.0);
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>\
         <line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{}\" stroke=\"#444\"/>\
         <text x=\"4\" y=\"16\" font-size=\"11\">{}</text><text x=\"4\" y=\"{}\" font-size=\"11\">0</text>\
         <text x=\"{left}\" y=\"{}\" font-size=\"11\">0 s</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{} s</text>",
        h - bottom,
        w - 10.0,
        h - bottom,
        h - bottom,
        n(top),
        h - bottom,
        h - 8.0,
        w - 10.0,
        h - 8.0,
        last.0.saturating_sub(t0)
    );
    for (stage, t) in c.stages.iter().filter_map(|s| Some((s, s.opened_at?))) {
        let name = stage.plan.name.as_str();
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"10\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#bbb\" stroke-dasharray=\"3,3\"/>\
             <text x=\"{2:.1}\" y=\"22\" font-size=\"10\" fill=\"#555\">{3}</text>",
            x(t),
            h - bottom,
            x(t) + 3.0,
            esc(name)
        );
    }
    for (state, colour) in PLOTTED {
        let path: Vec<String> = points
            .iter()
            .map(|(t, counts)| format!("{:.1},{:.1}", x(*t), y(counts[state])))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            path.join(" "),
            state.name()
        );
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (state, colour) in PLOTTED {
        let _ = write!(
            svg,
            "<span><i style=\"background:{colour}\"></i>{}</span> ",
            state.name()
        );
    }
    svg.push_str("</p>");
    svg
}

fn campaign_html(page: &Page<'_>, c: &CampaignView) -> String {
    let mut h = String::new();
    let status = c.status;
    let class = match status {
        Status::Running => "running",
        Status::WaitingApproval => "waiting",
        Status::Paused { .. } => "paused",
        Status::Completed => "completed",
    };
    let stage_name = c.stages.get(c.stage).map_or("", |s| s.plan.name.as_str());
    let _ = write!(
        h,
        "<section class=\"campaign\" id=\"campaign-{id}\" data-campaign=\"{id}\" data-status=\"{st}\">\
         <h2>{id} <span class=\"status {class}\">{st}</span></h2>\
         <p>release <b>{rel}</b> · rollback target <b>{rb}</b> · stage <b>{stage}</b> ({sn}) of {stages}</p>",
        id = esc(&c.id),
        st = status.name(),
        rel = esc(&c.release_id),
        rb = esc(&c.rollback_id),
        stage = c.stage,
        sn = esc(stage_name),
        stages = c.stages.len()
    );
    h.push_str("<h3>Workflow gates</h3><ol class=\"gates\">");
    for g in gates(page, c) {
        let _ = write!(
            h,
            "<li class=\"gate {}\" data-gate=\"{}\"><b>{}</b> <span class=\"mark\">{}</span><br><small>{}</small></li>",
            if g.ok { "ok" } else { "pending" },
            esc(g.name),
            esc(g.name),
            if g.ok { "✔" } else { "…" },
            esc(&g.evidence)
        );
    }
    h.push_str("</ol><h3>Devices per state</h3><table class=\"counts\"><tr>");
    for s in DeviceState::ALL {
        let _ = write!(h, "<th>{}</th>", s.name());
    }
    h.push_str("</tr><tr>");
    for (s, count) in c.totals.iter() {
        let _ = write!(h, "<td data-state=\"{}\">{}</td>", s.name(), n(count));
    }
    h.push_str("</tr></table><h3>Stages</h3><table class=\"stages\"><tr><th>stage</th><th>devices</th><th>installed</th><th>failed</th><th>quarantined</th><th>rolled back</th><th>thresholds</th><th>gate</th><th>opened</th><th>succeeded</th></tr>");
    for stage in &c.stages {
        let (s, counts) = (&stage.plan, stage.counts);
        let opened = stage.opened_at.map_or("–".to_owned(), |t| {
            format!("+{} s", t.saturating_sub(c.started_at.unwrap_or(t)))
        });
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>≥{}‰ / >{}‰</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            n(stage.devices),
            n(counts.installed),
            n(counts.failed),
            n(counts.quarantined),
            n(counts.rolled_back),
            s.success_permille,
            s.failure_permille,
            if s.gate == Gate::Approval {
                "approval"
            } else {
                "automatic"
            },
            opened,
            if stage.succeeded { "yes" } else { "no" }
        );
    }
    h.push_str("</table><h3>Progress over time</h3>");
    h.push_str(&plot(c));
    h.push_str("<h3>Recent events</h3><ul class=\"events\">");
    for (t, e) in c.recent.iter().take(20) {
        let _ = write!(
            h,
            "<li><small>+{} s</small> {}</li>",
            t.saturating_sub(c.started_at.unwrap_or(*t)),
            esc(e)
        );
    }
    h.push_str("</ul></section>");
    h
}

/// Renders the whole page.
pub fn render(page: &Page<'_>) -> String {
    let view = page.view;
    let mut body = String::new();
    if view.campaigns.is_empty() {
        body.push_str("<p class=\"empty\">No campaign yet: import a transfer bundle with a signed rollout plan (POST /api/v1/bundles).</p>");
    }
    for c in &view.campaigns {
        body.push_str(&campaign_html(page, c));
    }
    for p in &view.problems {
        let _ = write!(body, "<p class=\"problem\">{}</p>", esc(p));
    }
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>cairn relay</title><style>{STYLE}</style></head>\
         <body><header><h1>cairn relay</h1><p>mirror of <b>{}</b>: {} entries · relay log <b>{}</b>: {} entries</p></header>{body}</body></html>",
        esc(page.origin),
        n(page.mirror_size),
        esc(&view.log_origin),
        n(view.log_size),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}\
h1{margin:0}header p{color:#555}section.campaign{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}\
.status{font-size:.6em;padding:.2em .6em;border-radius:1em;color:#fff;vertical-align:middle}\
.running{background:#1565c0}.waiting{background:#f9a825}.paused{background:#c62828}.completed{background:#2e7d32}\
ol.gates{display:grid;grid-template-columns:repeat(3,1fr);gap:.6em;padding:0;list-style:none}\
li.gate{border:1px solid #ddd;border-left:6px solid #f9a825;padding:.5em;border-radius:4px}\
li.gate.ok{border-left-color:#2e7d32}.mark{float:right}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}\
.legend span{margin-right:1em;font-size:.85em}.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}\
ul.events{font-size:.9em}.problem{color:#c62828}";
