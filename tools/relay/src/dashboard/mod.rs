//! The operator dashboard and console (docs/relay.md, "The dashboard and the operator console"):
//! HTML rendered on the server from the engine's view, no external resource. Anyone may read it;
//! an operator who signed in with their token also gets the forms that act on a campaign
//! (`console.rs`) and per-device pages (`device.rs`). Parts marked `live` are refreshed in place
//! every 5 seconds by a small script (`LIVE_JS`); without JavaScript everything works, refreshed
//! by reloading.

mod console;
mod device;
mod gates;
mod page;
mod plot;

use std::fmt::Write as _;

use cairn_verifier::campaign::DeviceState;

use crate::engine::{CampaignView, Status};

pub use device::render_device;
use gates::gates;
use page::shell;
pub use page::{Access, Filter, LIVE_JS, Page, sign_in_page};
pub(crate) use page::{esc, n};
use plot::plot;

/// A campaign's state: status, gates, counts, stages, plot, latest events (a live part).
fn campaign_state(page: &Page<'_>, c: &CampaignView) -> String {
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
        "<div class=\"live\" id=\"live-{id}-state\" data-status=\"{st}\">\
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
            s.gate_name(),
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
    h.push_str("</ul></div>");
    h
}

/// The witnesses: whether deliveries wait for cosignatures, and each witness's standing (a live
/// part).
fn witnesses(w: &crate::witness::WitnessView) -> String {
    let (id, title) = match w.log {
        crate::witness::WitnessedLog::Signer => ("witnesses", "Witnesses"),
        crate::witness::WitnessedLog::Relay => {
            ("relay-log-witnesses", "Witnesses of the relay log")
        }
    };
    let mut h = format!(
        "<section class=\"witnesses\" id=\"{id}\"><div class=\"live\" id=\"live-{id}\" \
         data-waiting=\"{}\"><h2>{title} ({} of {} needed)</h2><p class=\"{}\">{}</p>\
         <table class=\"witnesses\"><tr><th>witness</th><th>last cosigned size</th>\
         <th>last cosigned</th><th>last asked</th><th>failures</th><th>last error</th></tr>",
        w.waiting(),
        w.threshold,
        w.witnesses.len(),
        if w.troubled() { "problem" } else { "ok" },
        esc(&w.summary())
    );
    let time = |t: Option<u64>| t.map_or_else(|| "–".to_owned(), |t| format!("{t} (Unix s)"));
    for s in &w.witnesses {
        let _ = write!(
            h,
            "<tr data-witness=\"{name}\"><td>{name}{url}</td><td>{size}</td><td>{at}</td>\
             <td>{asked}</td><td>{failures}</td><td>{error}</td></tr>",
            name = esc(&s.name),
            url = s.url.as_deref().map_or_else(
                || " <small>(no URL: offline)</small>".to_owned(),
                |u| { format!(" <small>{}</small>", esc(u)) }
            ),
            size = n(s.cosigned),
            at = time(s.last_cosigned_at),
            asked = time(s.last_attempt),
            failures = s.failures,
            error = esc(s.last_error.as_deref().unwrap_or("–")),
        );
    }
    h.push_str("</table></div></section>");
    h
}

/// Renders the dashboard.
pub fn render(page: &Page<'_>) -> String {
    let view = page.view;
    let mut body = String::new();
    for w in page.witnesses {
        body.push_str(&witnesses(w));
    }
    if view.campaigns.is_empty() {
        body.push_str("<p class=\"empty\">No campaign yet: import a transfer bundle with a signed rollout plan (POST /api/v1/bundles).</p>");
    }
    for c in &view.campaigns {
        let _ = write!(
            body,
            "<section class=\"campaign\" id=\"campaign-{id}\" data-campaign=\"{id}\">",
            id = esc(&c.id)
        );
        body.push_str(&campaign_state(page, c));
        body.push_str(&console::actions(page, c));
        body.push_str(&console::devices(page, c));
        body.push_str("</section>");
    }
    for p in &view.problems {
        let _ = write!(body, "<p class=\"problem\">{}</p>", esc(p));
    }
    let summary = format!(
        "mirror of <b>{}</b>: {} entries · relay log <b>{}</b>: {} entries",
        esc(page.origin),
        n(page.mirror_size),
        esc(&view.log_origin),
        n(view.log_size),
    );
    shell(page, "cairn relay", &summary, &body)
}
