//! The console's parts of the page: the action forms of a campaign (each with a reason field and
//! the session's CSRF value), and the device table with its filters. Every form
//! is a plain HTML form: it works without JavaScript.

use std::fmt::Write as _;

use cairn_verifier::campaign::DeviceState;

use super::page::{Access, Page, esc, n};
use crate::engine::{CampaignView, Status};

/// One action form: `fields` between the CSRF value and the reason.
fn form(campaign: &str, action: &str, csrf: &str, title: &str, fields: &str, note: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/dashboard/campaigns/{c}/{action}\" id=\"{action}-{c}\">\
         <b>{title}</b><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{fields}\
         <label>Reason (recorded as evidence, in your words) \
         <input type=\"text\" name=\"cause\" required maxlength=\"128\"></label>\
         <button type=\"submit\">{title}</button><p class=\"note\">{note}</p></form>",
        c = esc(campaign),
        csrf = esc(csrf),
    )
}

/// Which devices a quarantine or a rollback covers: listed ids, the failing ones, or a stage.
fn selection(c: &CampaignView, failing_what: &str) -> String {
    let mut stages = String::new();
    for (i, s) in c.stages.iter().enumerate() {
        let _ = write!(
            stages,
            "<option value=\"stage:{i}\">every device of stage {} ({i})</option>",
            esc(&s.plan.name)
        );
    }
    format!(
        "<label>Devices <select name=\"scope\"><option value=\"devices\">the devices listed below</option>\
         <option value=\"failed\">{failing_what} ({} now)</option>{stages}</select></label>\
         <label>Device ids (space, comma or line separated) <textarea name=\"devices\" rows=\"2\"></textarea></label>",
        n(c.totals.failed)
    )
}

/// The action forms of a campaign, for a signed-in operator (nothing otherwise).
pub(super) fn actions(page: &Page<'_>, c: &CampaignView) -> String {
    let Access::Operator { csrf, .. } = page.access else {
        return String::new();
    };
    let mut h = String::from("<h3>Act</h3><div class=\"actions\">");
    match c.status {
        Status::Running | Status::WaitingApproval => h.push_str(&form(
            &c.id,
            "pause",
            csrf,
            "Pause",
            "",
            "Nothing more is delivered and no retry starts; rollbacks by rule go on.",
        )),
        Status::Paused { by_rule: false } => h.push_str(&form(
            &c.id,
            "resume",
            csrf,
            "Resume",
            "",
            "Lifts a pause by an operator: the devices it held are delivered.",
        )),
        Status::Paused { by_rule: true } => {
            h.push_str(
                "<p class=\"note\">Paused by the failure threshold: only a resume approval the \
                 custodians sign offline lifts it (cairn rollout approve --resume).</p>",
            );
        }
        Status::Completed => {}
    }
    h.push_str(&form(
        &c.id,
        "quarantine",
        csrf,
        "Quarantine",
        &selection(c, "the failing cohort: every device that failed"),
        "Nothing more is delivered to them; lifting a quarantine takes a new signed plan.",
    ));
    h.push_str(&form(
        &c.id,
        "rollback",
        csrf,
        "Roll back",
        &selection(c, "every failed device"),
        &format!(
            "Delivers the pre-signed rollback target {} to delivered, installed or failed devices.",
            esc(&c.rollback_id)
        ),
    ));
    h.push_str("</div>");
    h
}

/// The filter form and the table of the devices it selects (the table is a live part).
pub(super) fn devices(page: &Page<'_>, c: &CampaignView) -> String {
    if matches!(page.access, Access::ReadOnly) {
        return String::new();
    }
    let (in_state, of_stage) = (page.filter.state(), page.filter.stage());
    let mut h = String::from(
        "<h3>Devices</h3><form class=\"filter\" method=\"get\" action=\"/dashboard\">\
         <label>State <select name=\"state\"><option value=\"\">any</option>",
    );
    for s in DeviceState::ALL {
        let _ = write!(
            h,
            "<option value=\"{0}\"{1}>{0}</option>",
            s.name(),
            if in_state == Some(*s) {
                " selected"
            } else {
                ""
            }
        );
    }
    h.push_str(
        "</select></label><label>Stage <select name=\"stage\"><option value=\"\">any</option>",
    );
    for (i, s) in c.stages.iter().enumerate() {
        let _ = write!(
            h,
            "<option value=\"{i}\"{}>{i}: {}</option>",
            if of_stage == Some(i) { " selected" } else { "" },
            esc(&s.plan.name)
        );
    }
    h.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    let _ = write!(
        h,
        "<div class=\"live\" id=\"live-{id}-devices\"><p>{} devices match{}</p>\
         <table class=\"devices\"><tr><th>device</th><th>stage</th><th>state</th><th>attempt</th><th>failures</th></tr>",
        n(c.matching),
        if c.matching > c.devices.len() as u64 {
            format!(" (the first {} shown: narrow the filter)", c.devices.len())
        } else {
            String::new()
        },
        id = esc(&c.id)
    );
    for d in &c.devices {
        let _ = write!(
            h,
            "<tr data-device=\"{id}\" data-state=\"{st}\"><td><a href=\"/dashboard/devices/{c}/{id}\">{id}</a></td>\
             <td>{}</td><td>{st}{}</td><td>{}</td><td>{}</td></tr>",
            d.stage,
            if d.rolling_back { " (rollback)" } else { "" },
            d.attempt,
            d.failures,
            id = esc(&d.id),
            c = esc(&c.id),
            st = d.state.name(),
        );
    }
    h.push_str("</table></div>");
    h
}
