//! A device's page (`GET /dashboard/devices/<campaign>/<device>`): its state now, its states over
//! time and its status reports as the relay log holds them (each with its log index), its two
//! manifests in the mirror, its delivery; and, for a signed-in operator, quarantine and rollback
//! of this device.

use std::fmt::Write as _;

use super::page::{Access, Page, esc, n, shell};
use crate::engine::{ACTOR_DEVICE, DeviceHistory};

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds (the proleptic Gregorian calendar, H. Hinnant's
/// `civil_from_days`).
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Renders one device's page.
pub fn render_device(page: &Page<'_>, h: &DeviceHistory) -> String {
    let d = &h.device;
    let (c, id) = (esc(&h.campaign), esc(&d.id));
    let mut body = format!(
        "<section class=\"device\" data-device=\"{id}\"><div class=\"live\" id=\"live-device\">\
         <h2>{id} <span class=\"state\" data-state=\"{st}\">{st}</span></h2>\
         <p>campaign <a href=\"/dashboard#campaign-{c}\">{c}</a> · stage {} · attempt {} · {} failures{}</p>",
        d.stage,
        d.attempt,
        d.failures,
        if d.rolling_back {
            " · rolling back"
        } else {
            ""
        },
        st = d.state.name(),
    );
    let _ = write!(
        body,
        "<h3>Evidence</h3><ul class=\"evidence\">\
         <li>update manifest: signer-log index {} (mirror, <code>/log/</code>)</li>\
         <li>rollback manifest: signer-log index {}</li>",
        h.update_manifest, h.rollback_manifest
    );
    match &h.delivery {
        Some(dl) => {
            let _ = write!(
                body,
                "<li>delivery of {}: {} bytes, the manifest at leaf {} proven in the checkpoint of size {}</li>",
                esc(&dl.release),
                n(dl.bytes as u64),
                dl.leaf_index,
                dl.checkpoint_size
            );
        }
        None => body.push_str("<li>no delivery built yet (its stage has not opened)</li>"),
    }
    body.push_str(
        "</ul><h3>States over time (relay log)</h3><table class=\"events\"><tr><th>relay log index</th>\
         <th>time (UTC)</th><th>state</th><th>release</th><th>attempt</th><th>actor</th><th>cause</th></tr>",
    );
    for e in &h.events {
        let _ = write!(
            body,
            "<tr data-index=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.index,
            e.index,
            utc(e.at),
            e.state.name(),
            esc(&e.release),
            e.attempt,
            esc(&e.actor),
            esc(&e.cause)
        );
    }
    body.push_str(
        "</table><h3>Status reports</h3><table class=\"events\"><tr><th>relay log index</th>\
         <th>sequence</th><th>release</th><th>recorded as</th><th>what it said</th></tr>",
    );
    for e in h.events.iter().filter(|e| e.actor == ACTOR_DEVICE) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.index,
            e.report,
            esc(&e.release),
            e.state.name(),
            esc(&e.cause)
        );
    }
    if !h.events.iter().any(|e| e.actor == ACTOR_DEVICE) {
        body.push_str("<tr><td colspan=\"5\">no status report yet</td></tr>");
    }
    body.push_str("</table></div>");
    if let Access::Operator { csrf, .. } = page.access {
        body.push_str("<h3>Act on this device</h3><div class=\"actions\">");
        let back = format!("/dashboard/devices/{c}/{id}");
        for (action, title) in [("quarantine", "Quarantine"), ("rollback", "Roll back")] {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/dashboard/campaigns/{c}/{action}\" id=\"{action}-device\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"scope\" value=\"devices\">\
                 <input type=\"hidden\" name=\"devices\" value=\"{id}\"><input type=\"hidden\" name=\"back\" value=\"{back}\">\
                 <label>Reason (recorded as evidence) <input type=\"text\" name=\"cause\" required maxlength=\"128\"></label>\
                 <button type=\"submit\">{title} this device</button></form>",
                esc(csrf)
            );
        }
        body.push_str("</div>");
    }
    body.push_str("</section>");
    shell(
        page,
        &format!("{} · cairn relay", d.id),
        &format!("device <b>{id}</b> of campaign <b>{c}</b>"),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        // The test plans' decision time, and a leap day.
        assert_eq!(utc(1_795_651_200), "2026-11-26 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }
}
