//! The operator dashboard and console (docs/relay.md, "The dashboard and the operator console"):
//! HTML rendered on the server from the engine's view, no external resource. Anyone may read it;
//! an operator who signed in with their token also gets the forms that act on a campaign
//! (`console.rs`) and per-device pages (`device.rs`). Parts marked `live` are refreshed in place
//! every 5 seconds by a small script (`LIVE_JS`); without JavaScript everything works, refreshed
//! by reloading.

mod console;
mod device;
mod gates;
mod plot;

use std::fmt::Write as _;

use cairn_verifier::campaign::DeviceState;

use crate::engine::{CampaignView, Status, View};

pub use console::Filter;
pub use device::render_device;
use gates::gates;
use plot::plot;

/// Who is looking, and what they may do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// A page written to a file (the demo): no form.
    ReadOnly,
    /// Not signed in: the sign-in form, with its CSRF value (also in a cookie).
    SignIn {
        /// The sign-in form's CSRF value.
        csrf: &'a str,
    },
    /// A signed-in operator: the action forms.
    Operator {
        /// The operator's name.
        name: &'a str,
        /// The session's CSRF value, carried by every form.
        csrf: &'a str,
        /// What the last action did.
        flash: Option<&'a str>,
    },
}

/// What the page shows: the engine's view, and the mirror it runs against.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The signer log's origin.
    pub origin: &'a str,
    /// Entries in the mirror.
    pub mirror_size: u64,
    /// The engine at this moment.
    pub view: &'a View,
    /// Who is looking.
    pub access: Access<'a>,
    /// Which devices the device tables list.
    pub filter: &'a Filter,
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
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

pub(crate) fn n(v: u64) -> String {
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

/// Renders the dashboard.
pub fn render(page: &Page<'_>) -> String {
    let view = page.view;
    let mut body = String::new();
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

/// The page around `body`: the head, the header with the sign-in form or the operator's name,
/// the last action's message.
fn shell(page: &Page<'_>, title: &str, summary: &str, body: &str) -> String {
    let (who, flash, reload) = match page.access {
        Access::ReadOnly => (String::new(), String::new(), ""),
        Access::SignIn { csrf } => (
            console::sign_in_form(csrf),
            String::new(),
            // Without the script, a reader's page reloads itself; an operator's does not (it
            // would lose what they type).
            "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>",
        ),
        Access::Operator { name, csrf, flash } => (
            console::signed_in(name, csrf),
            flash.map_or_else(String::new, |f| {
                format!("<p class=\"flash\" role=\"status\">{}</p>", esc(f))
            }),
            "",
        ),
    };
    let script = if matches!(page.access, Access::ReadOnly) {
        ""
    } else {
        "<script src=\"/dashboard/live.js\" defer></script>"
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{reload}\
         <title>{title}</title><style>{STYLE}</style>{script}</head>\
         <body><header><h1><a href=\"/dashboard\">cairn relay</a></h1>{who}\
         <p class=\"live\" id=\"live-summary\">{summary} · <a href=\"\">refresh</a></p></header>{flash}{body}</body></html>",
        title = esc(title),
    )
}

/// Refreshes every element of class `live` with an id in place, every 5 seconds, from the same
/// URL: no full reload, forms and what is typed in them untouched.
pub const LIVE_JS: &str = r#"(function () {
  "use strict";
  async function refresh() {
    try {
      const r = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      for (const fresh of doc.querySelectorAll(".live[id]")) {
        const old = document.getElementById(fresh.id);
        if (old && old.outerHTML !== fresh.outerHTML) old.replaceWith(document.importNode(fresh, true));
      }
      document.documentElement.dataset.refreshed = String(Date.now());
    } catch (e) { /* the next round tries again */ }
  }
  setInterval(refresh, 5000);
})();
"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}\
h1{margin:0}header p{color:#555}section.campaign{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}\
.status{font-size:.6em;padding:.2em .6em;border-radius:1em;color:#fff;vertical-align:middle}\
.running{background:#1565c0}.waiting{background:#f9a825}.paused{background:#c62828}.completed{background:#2e7d32}\
ol.gates{display:grid;grid-template-columns:repeat(3,1fr);gap:.6em;padding:0;list-style:none}\
li.gate{border:1px solid #ddd;border-left:6px solid #f9a825;padding:.5em;border-radius:4px}\
li.gate.ok{border-left-color:#2e7d32}.mark{float:right}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}\
.legend span{margin-right:1em;font-size:.85em}.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}\
ul.events{font-size:.9em}.problem{color:#c62828}\
h1 a{color:inherit;text-decoration:none}header form{display:inline}.flash{background:#e8f5e9;border:1px solid #2e7d32;padding:.5em}\
.actions{display:grid;grid-template-columns:repeat(2,1fr);gap:.6em}.actions form{border:1px solid #ddd;padding:.5em;border-radius:4px}\
.actions label,.filter label{display:block;margin:.2em 0}.actions input[type=text],.actions textarea{width:95%}\
table.devices td,table.events td,table.events th{text-align:left}.note{color:#555;font-size:.85em}";
